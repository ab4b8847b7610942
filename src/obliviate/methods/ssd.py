"""``ssd``: Selective Synaptic Dampening (Foster, Schoepf & Brintrup, AAAI 2024, arXiv:2308.07707).

A single, training-free edit of the original model. Parameter importances are the diagonal of the
empirical Fisher information, ``[]_D = E[(∂L/∂θ)²]``, once over the full training data ``D``
(forget ∪ retain) and once over the forget set ``D_f``. Parameters that matter much more to the
forget set than to the data as a whole are shrunk towards zero::

    select θ_i   where   []_{D_f,i} > α · []_{D,i}
    θ_i ← β_i θ_i,        β_i = min(λ · []_{D,i} / []_{D_f,i}, 1)

Everything else (including batch-norm running statistics, which are buffers) is left untouched.
Defaults α = 10, λ = 1, batch size 64 are the authors' (``forget_full_class_main.py``:
``selection_weighting = 10 * model_size_scaler`` with scaler 1 for ResNet18,
``dampening_constant = 1``, ``-b`` default 64).

How importances are computed, following the authors' code (``src/ssd.py``,
``ParameterPerturber.calc_importance``; ``forget_full_class_main.py`` for the loaders):

* the model is in ``eval()`` mode and images are not augmented (``transform_unlearning``);
* each importance is the **batch-mean gradient, squared**, averaged over batches: for every
  mini-batch ``b`` the gradient ``g_b`` of the mean cross-entropy of ``b`` is taken and
  ``Σ_b g_b² / #batches`` is kept. It is *not* the per-sample squared gradient, so the batch size
  and which rows share a batch are part of the definition;
* batches come from non-shuffled loaders. In the class-forgetting scripts the retain rows are
  grouped by class (``build_retain_forget_sets``), so nearly every batch of ``D`` holds one class,
  like the batches of a forgotten class. ``batch_order="class"`` (default) reproduces that by
  ordering rows by (label, row); ``"row"`` keeps dataset order. Mixed-class batches average
  per-class gradients away and make ``[]_D`` small relative to ``[]_{D_f}``: on the tiny digits
  problem ``"row"`` dampens three to four times as many weights at the same α.
* The order is canonical — a function of the split alone — and squared gradients are summed in
  float64, so the importances do not depend on the order rows or batches are presented (tested).

The authors' ``D`` loader is ``ConcatDataset(retain, forget)``: retain batches, then forget
batches. Here the two parts are batched separately, so the forget batches of ``D`` are exactly the
batches of ``D_f`` and their squared gradients are reused: ``[]_D = (N_r·mean_r + N_f·mean_f) /
(N_r + N_f)`` with ``N_r, N_f`` the batch counts and ``mean_r, mean_f`` the per-part means of
``g_b²`` (the reference differs by the one batch that straddles the boundary).

Because ``D ⊇ D_f``, ``[]_D ≥ N_f/(N_r + N_f) · []_{D_f}``: no weight can be selected unless
``α < (N_r + N_f)/N_f`` (reported as ``info["selection_ceiling"]``). α = 10 suits the paper's
settings (a CIFAR-100 class is 1 % of the data, a CIFAR-20 class 5 %, 100 random CIFAR-10 images);
forgetting a whole CIFAR-10 class or a digits class (about 10 %) needs a smaller α.

``[]_D`` is the cost driver (one backward pass per batch of the whole training set).
``retain_samples`` estimates ``mean_r`` from a seeded, evenly spaced sample of the retain batches;
``forget_samples`` likewise estimates ``mean_f`` (and so ``[]_{D_f}``) from a sample of the forget
batches, which matters when the forget set is a whole class. ``N_r`` and ``N_f`` stay the batch
counts of the full splits, so the estimates are of the same quantities as the full computation.
The importances over ``D`` are a property of the original model and its training set, not of the
request: a runner serving many requests could compute them once, over a fixed partition of all
training rows, and cache them; this method recomputes them on every call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..core import ConfigError
from ..data import BatchLoader
from ..utils import autocast_context
from .base import (
    MethodResult,
    Range,
    SplitView,
    UnlearnContext,
    UnlearnData,
    VisionConfig,
    VisionMethod,
    param,
    register_method,
)


@dataclass(frozen=True, kw_only=True)
class SSDConfig(VisionConfig):
    alpha: float = param(
        10.0, "selection weight: dampen θ_i where imp_forget > α·imp_train", "α", tune=Range(1.0, 50.0, log=True)
    )
    lambda_: float = param(
        1.0, "dampening constant: θ_i *= min(λ·imp_train/imp_forget, 1)", "λ", tune=Range(0.1, 10.0, log=True)
    )
    batch_size: int = param(64, "batch size of the importance passes (batch-mean gradients, squared)")
    batch_order: Literal["class", "row"] = param(
        "class", "batch rows grouped by label ('class', like the reference's class-forgetting loaders) or by row"
    )
    retain_samples: int | None = param(
        None, "retain samples (seeded, whole batches) estimating the importance over D; None = all, as the paper"
    )
    forget_samples: int | None = param(
        None, "forget samples (seeded, whole batches) estimating the importance over D_f; None = all, as the paper"
    )
    alpha_rule: Literal["fixed", "forget_zero"] = param(
        "fixed",
        "fixed: use alpha; forget_zero (class requests): the largest α on a grid below the selection "
        "ceiling that drives the forget sample's accuracy to target_forget_acc — no retrained model needed",
    )
    target_forget_acc: float = param(
        0.01, "forget-sample accuracy forget_zero aims at (a model retrained without the class never predicts it)"
    )
    alpha_steps: int = param(12, "grid points of forget_zero, geometric from 0.95 × the ceiling down to 1")
    alpha_refine: int = param(
        4,
        "bisections (in log α) of forget_zero between the last grid α that missed the "
        "target and the first that reached it",
    )

    def validate(self) -> None:
        self._require(self.alpha > 0, "alpha", "> 0")
        self._require(self.lambda_ > 0, "lambda_", "> 0")
        self._require(self.batch_size >= 1, "batch_size", ">= 1")
        self._require(self.batch_order in ("class", "row"), "batch_order", "'class' or 'row'")
        self._require(self.retain_samples is None or self.retain_samples >= 1, "retain_samples", ">= 1 or None")
        self._require(self.forget_samples is None or self.forget_samples >= 1, "forget_samples", ">= 1 or None")
        self._require(0.0 <= self.target_forget_acc < 1.0, "target_forget_acc", "in [0, 1)")
        self._require(self.alpha_steps >= 2, "alpha_steps", ">= 2")
        self._require(self.alpha_refine >= 0, "alpha_refine", ">= 0")


def squared_gradient_sums(
    model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], device: torch.device
) -> tuple[dict[str, torch.Tensor], int]:
    """``Σ_b (∂ mean-CE(b) / ∂θ)²`` per parameter in float64, and the number of batches.

    The model is put in ``eval()`` mode, so batch statistics never change and each batch's
    gradient does not depend on which batches came before it.
    """
    model.eval()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    sums = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in named}
    loss_fn = nn.CrossEntropyLoss()
    count = 0
    for batch in batches:
        model.zero_grad(set_to_none=True)
        x, y = batch["image"].to(device), batch["label"].to(device)
        loss_fn(model(x), y).backward()
        for n, p in named:
            if p.grad is not None:
                sums[n] += p.grad.detach().to(torch.float64).square()
        count += 1
    model.zero_grad(set_to_none=True)
    return sums, count


def canonical_batches(
    view: SplitView,
    batch_size: int,
    by_class: bool = True,
    keep: int | None = None,
    generator: torch.Generator | None = None,
) -> BatchLoader:
    """Un-augmented batches of ``view`` in a canonical order — by (label, dataset row) or by dataset
    row — so that the partition into batches is a function of the set of rows alone.

    ``keep`` (samples, rounded up to whole batches) selects a seeded systematic sample of the
    partition's batches — evenly spaced from a random start — so a subset estimate averages the
    same kind of batches as the full computation and, in class order, covers every class.
    """
    # positions sorted by dataset row id, then (stably) by label: independent of the view's own order
    order = torch.from_numpy(np.argsort(np.asarray(view.rows), kind="stable"))
    if by_class:
        order = order[torch.sort(view.labels.cpu()[order], stable=True).indices]
    if keep is not None and keep < len(order):
        chunks = order.split(batch_size)
        n_keep = -(-keep // batch_size)
        spacing = len(chunks) / n_keep
        start = float(torch.rand((), generator=generator)) * spacing
        picked = [min(int(start + i * spacing), len(chunks) - 1) for i in range(n_keep)]
        order = torch.cat([chunks[i] for i in picked])  # ascending: a partial last chunk stays last
    return view.loader(batch_size, shuffle=False, rows=order)


@torch.no_grad()
def dampen_(
    model: nn.Module,
    imp_train: dict[str, torch.Tensor],
    imp_forget: dict[str, torch.Tensor],
    alpha: float,
    lambda_: float,
) -> int:
    """Apply SSD's selection and dampening rule in place; return the number of dampened entries.

    ``θ_i *= min(λ·imp_train_i / imp_forget_i, 1)`` wherever ``imp_forget_i > α·imp_train_i``.
    Entries with ``imp_forget_i = 0`` are never selected, so there is no division by zero.
    """
    changed = 0
    for name, p in model.named_parameters():
        if name not in imp_train:
            continue
        d, f = imp_train[name].to(p.device), imp_forget[name].to(p.device)
        selected = f > alpha * d
        if not bool(selected.any()):
            continue
        beta = (lambda_ * d / torch.where(selected, f, 1.0)).clamp(max=1.0)  # only used where selected
        p.copy_(torch.where(selected, p * beta.to(p.dtype), p))
        changed += int(selected.sum())
    return changed


@register_method("ssd")
class SelectiveSynapticDampening(VisionMethod[SSDConfig]):
    """Selective Synaptic Dampening: shrink the weights the forget set relies on disproportionately."""

    Config = SSDConfig
    uses = frozenset({"forget", "retain"})
    reference = (
        "Foster, Schoepf & Brintrup, 'Fast Machine Unlearning Without Retraining Through Selective Synaptic "
        "Dampening', AAAI 2024, arXiv:2308.07707 (code: github.com/if-loops/selective-synaptic-dampening)"
    )
    smoke = {"retain_samples": 256}

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        model.to(ctx.device)
        forget, retain = data.forget, data.retain
        by_class = cfg.batch_order == "class"
        forget_batches = canonical_batches(forget, cfg.batch_size, by_class, cfg.forget_samples, ctx.generator(2))
        retain_batches = canonical_batches(retain, cfg.batch_size, by_class, cfg.retain_samples, ctx.generator(1))
        sum_f, seen_f = squared_gradient_sums(model, forget_batches, ctx.device)
        sum_r, seen_r = squared_gradient_sums(model, retain_batches, ctx.device)
        n_r = -(-len(retain) // cfg.batch_size)  # batches the whole retain set makes
        n_f = -(-len(forget) // cfg.batch_size)  # ... and the whole forget set

        # []_D = (N_r·mean_r + N_f·mean_f) / (N_r + N_f), mean_f = sum_f / N_f  (module docstring)
        imp_forget = {k: v / seen_f for k, v in sum_f.items()}
        imp_train = {k: (n_r * (sum_r[k] / seen_r) + n_f * imp_forget[k]) / (n_r + n_f) for k in sum_f}
        ceiling = (n_r + n_f) / n_f
        search: dict[str, Any] = {}
        if cfg.alpha_rule == "forget_zero":
            if not data.forget_classes:
                raise ConfigError(
                    "alpha_rule='forget_zero' needs a class request: only a model retrained without "
                    "a whole class is known (without retraining) to score 0 on it",
                    "alpha_rule",
                )
            alpha, search = search_alpha(
                model,
                imp_train,
                imp_forget,
                forget_batches,
                cfg,
                ceiling,
                ctx.device,
                bf16=ctx.bf16,
                channels_last=ctx.channels_last,
            )
        else:
            alpha = cfg.alpha
        changed = dampen_(model, imp_train, imp_forget, alpha, cfg.lambda_)
        total = sum(p.numel() for p in model.parameters())
        return MethodResult(
            model=model,
            steps=0,
            info={
                "dampened": changed,
                "dampened_fraction": changed / max(total, 1),
                "selection_ceiling": ceiling,
                "alpha": alpha,
                **search,
                "importance_batches": {"forget": seen_f, "retain": seen_r},
            },
        )


@torch.no_grad()
def _accuracy(
    model: nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    device: torch.device,
    bf16: bool = False,
    channels_last: bool = False,
) -> float:
    """Eval-mode accuracy on ``batches``, in the recipe's inference precision and memory format."""
    model.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    hit = n = 0
    for b in batches:
        with autocast_context(device, bf16):
            logits = model(b["image"].to(device).contiguous(memory_format=fmt))
        hit += int((logits.argmax(1) == b["label"].to(device)).sum())
        n += len(b["label"])
    return hit / max(n, 1)


def search_alpha(
    model: nn.Module,
    imp_train: dict[str, torch.Tensor],
    imp_forget: dict[str, torch.Tensor],
    forget_batches: Iterable[dict[str, torch.Tensor]],
    cfg: SSDConfig,
    ceiling: float,
    device: torch.device,
    *,
    bf16: bool = False,
    channels_last: bool = False,
) -> tuple[float, dict[str, Any]]:
    """The largest α of a geometric grid from 0.95·ceiling down to 1 whose dampening brings the
    forget sample's accuracy to ``target_forget_acc`` (the least dampening that forgets; each
    trial dampens a copy of the weights, the importances are computed once), refined by
    ``alpha_refine`` bisections in log α against the grid point above it. Falls back to the grid's
    smallest α when none reaches the target (said in ``alpha_reached``)."""
    grid = np.geomspace(0.95 * ceiling, 1.0, cfg.alpha_steps) if ceiling > 1.0 / 0.95 else np.array([1.0])
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trials: list[tuple[float, float]] = []

    def forgets(a: float) -> bool:
        model.load_state_dict(saved)
        dampen_(model, imp_train, imp_forget, a, cfg.lambda_)
        acc = _accuracy(model, forget_batches, device, bf16, channels_last)
        trials.append((round(a, 4), round(acc, 4)))
        return acc <= cfg.target_forget_acc

    chosen, reached, above = float(grid[-1]), False, None
    for a in grid:
        if forgets(float(a)):
            chosen, reached = float(a), True
            break
        above = float(a)
    if reached and above is not None:
        lo, hi = chosen, above  # lo reaches the target, hi does not
        for _ in range(cfg.alpha_refine):
            mid = float(np.sqrt(lo * hi))
            if forgets(mid):
                lo = mid
            else:
                hi = mid
        chosen = lo
    model.load_state_dict(saved)
    return chosen, {"alpha_trials": trials, "alpha_reached": reached}
