"""``neuron_mask``: switch off the hidden units that respond most to the forget class(es).

Paper §III.A.1 (Table I, Fig. 2: VGG16 on CIFAR-10 forgetting "airplane"): capture each neuron's
activation, average it, and mask the neurons "with high activation or which contribute most to
the plane class" above "a certain threshold". Made concrete here:

1. **Units.** A unit is one channel (conv) or one feature (linear) of a tensor that goes straight
   into an ``nn.ReLU`` module. Its producer is the module that computed that tensor: a
   ``BatchNorm`` (conv → BN → ReLU), or a ``Conv2d``/``Linear`` with no norm in between. The
   producers are found by one traced forward pass, so the method works on any net built from
   these modules (VGG, ResNets, ``small_cnn``); the classifier's logits and a ResNet's
   ``bn2`` (added to the shortcut before its ReLU) feed no ReLU and are never units.
   ``activations`` may add ``nn.GELU`` (e.g. the airbench net): GELU(0) = 0 like ReLU(0), so
   the masking of step 5 silences a GELU unit exactly as well.
2. **Activation** a_u(x): the post-ReLU (post-GELU) value, averaged over spatial positions for a
   channel.
3. **Score** s_u from the means μ_f, μ_r and standard deviations σ_f, σ_r of a_u over (a random
   subset of) the forget set D_f and (a random subset of) the retain set D_r — ``score``:

   * ``"standardized"`` (default): (μ_f − μ_r) / sqrt((σ_f² + σ_r²)/2), a per-unit effect
     size; comparable across layers, so one global ranking works on nets whose layers have
     very different activation scales;
   * ``"difference"``: μ_f − μ_r; ``"ratio"``: μ_f / μ_r;
   * ``"forget_mean"``: μ_f alone — the paper's literal "neurons with high activation" reading
     (it also hits units that fire for every class and so damages the retained classes).

   Only units that respond more to D_f than to D_r (μ_f > μ_r) are ever masked.
4. **Selection**: ``threshold`` τ (mask every unit with s_u > τ, the paper's wording) if set,
   else ``top_k`` units, else a ``fraction`` of the units (default 3 %), ranked over all units
   at once or within each layer (``scope``). Why these defaults: on a CIFAR-10 VGG16-BN
   (width 0.25, 78 % test accuracy) forgetting airplane, standardized / 3 % / global took
   airplane test accuracy from 0.80 to 0.03 with the other classes unchanged (0.78), the
   paper's Fig. 2 effect; per-layer ranking, the plain difference and the forget mean cost the
   other classes more at the same forgetting (the ratio was on par).
5. **Masking** zeroes the parameters that produce the unit — a BN channel's weight γ and bias
   β, or a conv filter / linear row and its bias — so the unit's pre-ReLU value, and hence its
   activation, is exactly 0 for every input. The mask is part of the weights: the architecture
   and state-dict keys are unchanged and it survives ``save_checkpoint``/``load_checkpoint``.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import nn

from .base import MethodResult, Range, UnlearnContext, UnlearnData, VisionConfig, VisionMethod, param, register_method

SCORES = ("standardized", "difference", "ratio", "forget_mean")
# Activation modules that may close a unit: each maps 0 to 0, so zeroing the producer silences it.
ACTIVATIONS: dict[str, type[nn.Module]] = {"ReLU": nn.ReLU, "GELU": nn.GELU}
_PRODUCERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.Conv2d, nn.Linear)
_EPS = 1e-8


@dataclass(frozen=True, kw_only=True)
class NeuronMaskConfig(VisionConfig):
    score: Literal["standardized", "difference", "ratio", "forget_mean"] = param(
        "standardized", "unit score s_u from forget/retain activation statistics (see module docstring)", "s_u"
    )
    fraction: float | None = param(
        0.03,
        "mask this share of the units, ranked by score within `scope` (used when top_k and threshold are None)",
        tune=Range(0.005, 0.2, log=True),
    )
    top_k: int | None = param(None, "mask this many units within `scope` (overrides fraction)", "k")
    threshold: float | None = param(
        None,
        "mask every unit whose score exceeds τ, the paper's 'above a certain threshold' (overrides top_k and fraction)",
        "τ",
    )
    scope: Literal["global", "layer"] = param(
        "global", "rank all units together ('global') or each layer separately ('layer')"
    )
    layers: tuple[str, ...] = param(
        ("*",), "which units to consider: 'conv', 'linear', or shell patterns on producer module names"
    )
    retain_samples: int | None = param(
        5000, "retain samples used for the statistics (a seeded random subset); None = all"
    )
    batch_size: int = param(256, "batch size of the activation passes")
    forget_samples: int | None = param(
        None, "forget samples used for the statistics (a seeded random subset); None = all"
    )
    activations: tuple[str, ...] = param(
        ("ReLU",),
        f"activation modules whose input tensor defines a unit, from {tuple(ACTIVATIONS)} "
        "('GELU' for nets such as airbench; both map 0 to 0)",
    )

    def validate(self) -> None:
        self._require(self.score in SCORES, "score", f"one of {SCORES}")
        self._require(
            self.fraction is None or (math.isfinite(self.fraction) and 0 < self.fraction <= 1),
            "fraction",
            "in (0, 1] or None",
        )
        self._require(self.top_k is None or self.top_k >= 1, "top_k", ">= 1 or None")
        self._require(self.threshold is None or math.isfinite(self.threshold), "threshold", "a finite number or None")
        self._require(
            self.fraction is not None or self.top_k is not None or self.threshold is not None,
            "fraction",
            "set when top_k and threshold are both None",
        )
        self._require(self.scope in ("global", "layer"), "scope", "'global' or 'layer'")
        self._require(
            isinstance(self.layers, (tuple, list))
            and len(self.layers) > 0
            and all(isinstance(p, str) and p for p in self.layers),
            "layers",
            "a non-empty tuple of 'conv', 'linear' or module-name patterns",
        )
        self._require(self.retain_samples is None or self.retain_samples >= 1, "retain_samples", ">= 1 or None")
        self._require(self.batch_size >= 1, "batch_size", ">= 1")
        self._require(self.forget_samples is None or self.forget_samples >= 1, "forget_samples", ">= 1 or None")
        self._require(
            isinstance(self.activations, (tuple, list))
            and len(self.activations) > 0
            and all(a in ACTIVATIONS for a in self.activations),
            "activations",
            f"a non-empty tuple of {tuple(ACTIVATIONS)}",
        )


@dataclass
class _Stats:
    """Running per-unit sums of a_u and a_u² over one split (float64)."""

    count: int = 0
    total: torch.Tensor | None = None
    squares: torch.Tensor | None = None

    def add(self, a: torch.Tensor) -> None:
        a = a.detach().double()
        s, q = a.sum(0), (a * a).sum(0)
        self.total = s if self.total is None else self.total + s
        self.squares = q if self.squares is None else self.squares + q
        self.count += a.shape[0]

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.total is None or self.squares is None:
            raise RuntimeError("no activations were recorded for this unit (empty split?)")
        mean = self.total / self.count
        var = (self.squares / self.count - mean * mean).clamp_min(0.0)
        return mean, var.sqrt()


def relu_units(
    model: nn.Module, example: torch.Tensor, activations: tuple[type[nn.Module], ...] = (nn.ReLU,)
) -> dict[str, nn.Module]:
    """Producers whose output tensor is passed straight into an ``nn.ReLU`` (one forward pass).

    Returns ``{module name: module}`` in forward order. A producer whose output also feeds
    other ops (it is read by the ReLU) still counts; one whose output is first added to a
    shortcut does not. ``activations`` widens what counts as the ReLU (e.g. ``nn.GELU``).
    """
    return {name: producer for name, (producer, _act) in activation_units(model, example, activations).items()}


def activation_units(
    model: nn.Module, example: torch.Tensor, activations: tuple[type[nn.Module], ...] = (nn.ReLU,)
) -> dict[str, tuple[nn.Module, nn.Module]]:
    """Like :func:`relu_units`, with the activation module that reads each producer's output:
    ``{producer name: (producer, activation)}``."""
    names = {m: n for n, m in model.named_modules()}
    last_output: dict[int, tuple[str, torch.Tensor]] = {}
    found: dict[str, tuple[nn.Module, nn.Module]] = {}
    handles = []

    def on_output(module: nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            last_output[id(out)] = (names[module], out)  # keeps `out` alive: ids stay unique

    def on_activation(act: nn.Module, inp: tuple[Any, ...]) -> None:
        hit = last_output.get(id(inp[0])) if inp else None
        if hit is not None and hit[1] is inp[0] and hit[0] not in found:
            found[hit[0]] = (model.get_submodule(hit[0]), act)

    for m in model.modules():
        if isinstance(m, _PRODUCERS):
            handles.append(m.register_forward_hook(on_output))
        elif isinstance(m, activations):
            handles.append(m.register_forward_pre_hook(on_activation))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return found


def _maskable(module: nn.Module) -> bool:
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return module.affine
    return True


def _is_conv_unit(module: nn.Module) -> bool:
    return isinstance(module, (nn.BatchNorm2d, nn.Conv2d))


def _select_layers(units: dict[str, nn.Module], patterns: tuple[str, ...]) -> dict[str, nn.Module]:
    chosen = {}
    for name, module in units.items():
        for p in patterns:
            kind_hit = (p == "conv" and _is_conv_unit(module)) or (p == "linear" and not _is_conv_unit(module))
            if kind_hit or fnmatch.fnmatchcase(name, p):
                chosen[name] = module
                break
    return chosen


def unit_activation(module: nn.Module, out: torch.Tensor, activation: nn.Module | None = None) -> torch.Tensor:
    """a_u(x) for every unit of ``module``'s output: (B, units), post-ReLU (or post-``activation``),
    spatially averaged."""
    a = torch.relu(out.float()) if activation is None else activation(out.float())
    if _is_conv_unit(module):
        return a.flatten(2).mean(2) if a.ndim > 2 else a
    # linear: features are the last dim; average any sequence dims in between
    return a.reshape(a.shape[0], -1, a.shape[-1]).mean(1)


def activation_stats(
    model: nn.Module,
    layers: dict[str, nn.Module],
    loader: Any,
    device: torch.device,
    activations: dict[str, nn.Module] | None = None,
) -> dict[str, _Stats]:
    """Accumulate a_u over every batch of ``loader`` for the units of ``layers`` (post-ReLU, or
    post ``activations[name]`` where given)."""
    stats = {name: _Stats() for name in layers}
    acts = activations or {}
    handles = []
    for name, module in layers.items():

        def hook(mod: nn.Module, _inp: Any, out: torch.Tensor, _name: str = name) -> None:
            stats[_name].add(unit_activation(mod, out, acts.get(_name)))

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            for batch in loader:
                model(batch["image"].to(device))
    finally:
        for h in handles:
            h.remove()
    return stats


def unit_scores(forget: _Stats, retain: _Stats, score: str) -> torch.Tensor:
    """s_u for one layer; units that do not respond more to D_f than to D_r get −inf."""
    mf, sf = forget.mean_std()
    mr, sr = retain.mean_std()
    if score == "standardized":
        s = (mf - mr) / ((sf * sf + sr * sr) / 2 + _EPS).sqrt()
    elif score == "difference":
        s = mf - mr
    elif score == "ratio":
        s = mf / (mr + _EPS)
    else:  # forget_mean
        s = mf.clone()
    return torch.where(mf > mr, s, torch.full_like(s, -math.inf))


def _choose(scores: torch.Tensor, cfg: NeuronMaskConfig) -> torch.Tensor:
    """Boolean mask over a flat score vector: threshold, else top_k, else fraction."""
    eligible = torch.isfinite(scores)
    if cfg.threshold is not None:
        return eligible & (scores > cfg.threshold)
    if cfg.top_k is not None:
        k = cfg.top_k
    else:
        assert cfg.fraction is not None  # validate() requires it when top_k and threshold are None
        k = round(cfg.fraction * scores.numel())
    k = min(k, int(eligible.sum()))
    chosen = torch.zeros_like(eligible)
    if k > 0:
        # stable order: ties broken by position, so the choice is deterministic
        order = torch.sort(scores, descending=True, stable=True).indices[:k]
        chosen[order] = True
    return chosen


@torch.no_grad()
def mask_units(module: nn.Module, units: torch.Tensor) -> None:
    """Zero the parameters producing ``units`` of ``module`` so their output is exactly 0.

    Row ``u`` of the weight is a BN channel's γ, a conv filter or a linear unit's weights; with
    its bias (β) zeroed too the unit's output is 0 whatever the input.
    """
    weight = cast(torch.Tensor, module.weight)  # nn.Module types its attributes Tensor | Module
    bias: torch.Tensor | None = getattr(module, "bias", None)
    idx = units.to(weight.device)
    weight[idx] = 0.0
    if bias is not None:
        bias[idx] = 0.0


@register_method("neuron_mask")
class NeuronMask(VisionMethod[NeuronMaskConfig]):
    """Mask the hidden units most selective for the forget class(es) (paper §III.A.1)."""

    Config = NeuronMaskConfig
    uses = frozenset({"forget", "retain"})
    smoke = {"retain_samples": 300}
    reference = (
        "paper §III.A.1, Table I and Fig. 2 (neuron masking of VGG16 on CIFAR-10 'plane'); "
        "unit scoring and selection as documented in obliviate.methods.neuron_mask"
    )

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        model.to(ctx.device).eval()
        forget = data.forget
        forget_rows = ctx.subset(len(forget), cfg.forget_samples, offset=1)
        forget_loader = forget.loader(cfg.batch_size, shuffle=False, rows=forget_rows)
        retain = data.retain
        rows = ctx.subset(len(retain), cfg.retain_samples)
        retain_loader = retain.loader(cfg.batch_size, shuffle=False, rows=rows)

        example = next(iter(forget_loader))["image"][:2].to(ctx.device)
        traced = activation_units(model, example, tuple(ACTIVATIONS[a] for a in cfg.activations))
        found = {n: producer for n, (producer, _act) in traced.items()}
        layers = _select_layers({n: m for n, m in found.items() if _maskable(m)}, tuple(cfg.layers))
        if not layers:
            kinds = "/".join(cfg.activations)
            raise ValueError(
                f"neuron_mask found no units matching layers={list(cfg.layers)}; units feeding a {kinds} in this "
                f"model: {list(found) or f'none (it has no {kinds} modules; see the activations field)'}"
            )
        acts = {n: traced[n][1] for n in layers}
        f_stats = activation_stats(model, layers, forget_loader, ctx.device, acts)
        r_stats = activation_stats(model, layers, retain_loader, ctx.device, acts)
        scores = {n: unit_scores(f_stats[n], r_stats[n], cfg.score) for n in layers}

        if cfg.scope == "global":
            flat = _choose(torch.cat(list(scores.values())), cfg)
            chosen, start = {}, 0
            for n, s in scores.items():
                chosen[n] = flat[start : start + s.numel()]
                start += s.numel()
        else:
            chosen = {n: _choose(s, cfg) for n, s in scores.items()}

        per_layer: dict[str, dict[str, Any]] = {}
        for n, module in layers.items():
            idx = chosen[n].nonzero().flatten()
            if idx.numel():
                mask_units(module, idx)
            per_layer[n] = {"masked": int(idx.numel()), "units": int(chosen[n].numel()), "indices": idx.tolist()}
        total = sum(v["units"] for v in per_layer.values())
        masked = sum(v["masked"] for v in per_layer.values())
        info = {
            "masked_units": masked,
            "candidate_units": total,
            "layers": per_layer,
            "forget_samples": f_stats[next(iter(layers))].count,
            "retain_samples": r_stats[next(iter(layers))].count,
        }
        return MethodResult(model=model, steps=0, info=info)
