"""``rum``: unlearn the forget set in pieces ranked by how much the model memorised them.

RUM, the Refined-Unlearning Meta-algorithm (Zhao, Kurmanji, Bărbulescu, Triantafillou &
Triantafillou, "What makes unlearning hard and what to do about it", NeurIPS 2024,
arXiv:2406.01257; code ``kairanzhao/RUM``). Rows a model memorised (learnt late, and only by
their own label) are hard to unlearn and rows it generalised to are easy, and no single setting
suits both. RUM

1. **refines** the forget set into ``pieces`` parts of equal size by a memorisation proxy, and
2. **meta-unlearns**: runs NegGrad+ on each part in turn, from the least memorised part to the
   most, each part starting from the model the previous one left, with that part's own β,
   budget and learning rate.

The defaults are the paper's RUM with NegGrad+ on every part on CIFAR-10 (``main_rum_proxy.py``:
``--alpha`` 0.99 / 0.97 / 0.97, ``--unlearn_epochs`` 5 / 5 / 10, ``--unlearn_lr`` 0.01 / 0.01 /
0.001 for the low, medium and high parts; SGD with momentum 0.9 and weight decay 5·10⁻⁴, their
argument defaults; no augmentation, their ``--no_aug``). Each part's step is obliviate's
``neggrad_plus`` (one retain batch and one batch of the part per step; an epoch is one pass over
the retain set) with those settings.

**The proxy** (``proxy``): ``learning_speed`` is the mean probability the original gave a row's
label over every step that trained on it — their "confidence" proxy, recorded by obliviate's
``fit(record_confidence=True)`` while the original trains (the study records it for every
original it trains) and handed to methods as ``UnlearnContext.training_confidence``. A model whose
training was not recorded (a user's own checkpoint) has no such record: ``final_confidence`` ranks
rows by the original's label probability now (eval mode, no augmentation) instead — obliviate's
fallback, weaker on a net that fits every row (its probabilities all sit near 1); ``auto`` takes
the record when there is one and says which it used in the result's ``info``.

Differences from the reference code, on purpose: the parts are equal thirds of *the request's*
forget rows by proxy rank (the paper builds its forget sets from known low/medium/high groups of the
whole training set); and every part's retain set is the request's retain set — the reference keeps
the parts not yet unlearnt in the retain set of the earlier steps, so they are first trained on,
then forgotten.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from ..core import ConfigError
from .base import MethodResult, Range, UnlearnContext, UnlearnData, VisionConfig, VisionMethod, param, register_method
from .calibrate import _losses
from .memorisation import recorded_confidence
from .neggrad_plus import NegGradPlus, NegGradPlusConfig


@dataclass(frozen=True, kw_only=True)
class RUMConfig(VisionConfig):
    pieces: int = param(3, "parts the forget set is split into by the proxy (the paper: low, medium, high)")
    proxy: Literal["auto", "learning_speed", "final_confidence"] = param(
        "auto",
        "memorisation proxy: 'learning_speed' (the original's mean label probability while it "
        "trained, as recorded by fit), 'final_confidence' (its label probability now), 'auto' "
        "(the first when recorded, else the second)",
    )
    beta: tuple[float, ...] = param(
        (0.99, 0.97, 0.97), "NegGrad+ weight of the retain loss per part, least memorised first", "α"
    )
    epochs: tuple[float, ...] = param((5.0, 5.0, 10.0), "NegGrad+ passes over the retain set per part")
    lr: tuple[float, ...] = param((0.01, 0.01, 0.001), "SGD learning rate per part (constant)", "η")
    lr_scale: float = param(
        1.0,
        "factor on every part's learning rate (1: the paper's; a net trained at another scale of "
        "rate needs another, chosen on a tune split)",
        tune=Range(0.1, 30.0, log=True),
    )
    momentum: float = param(0.9, "SGD momentum")
    weight_decay: float = param(5e-4, "SGD weight decay")
    batch_size: int = param(256, "retain and forget batch size")

    def validate(self) -> None:
        self._require(self.pieces >= 1, "pieces", ">= 1")
        self._require(
            self.proxy in ("auto", "learning_speed", "final_confidence"),
            "proxy",
            "'auto', 'learning_speed' or 'final_confidence'",
        )
        for name in ("beta", "epochs", "lr"):
            values = getattr(self, name)
            self._require(len(values) == self.pieces, name, f"one value per part ({self.pieces}), got {len(values)}")
        self._require(all(0.0 <= b <= 1.0 for b in self.beta), "beta", "each in [0, 1]")
        self._require(all(e > 0 for e in self.epochs), "epochs", "each > 0")
        self._require(all(v > 0 for v in self.lr), "lr", "each > 0")
        self._require(self.lr_scale > 0, "lr_scale", "> 0")
        self._require(self.momentum >= 0, "momentum", ">= 0")
        self._require(self.weight_decay >= 0, "weight_decay", ">= 0")
        self._require(self.batch_size >= 1, "batch_size", ">= 1")


def memorisation_order(score: torch.Tensor, pieces: int) -> list[np.ndarray]:
    """Forget positions split into ``pieces`` equal parts, least memorised first: ``score`` is a
    per-row proxy where higher means *less* memorised (a label probability); rows without a score
    (NaN) count as the most memorised."""
    s = score.double().nan_to_num(nan=float("-inf"))
    order = torch.argsort(-s, stable=True).numpy()
    return [part for part in np.array_split(order, pieces) if len(part)]


@register_method("rum")
class RUM(VisionMethod[RUMConfig]):
    """Refine the forget set by memorisation, then NegGrad+ on each part, least memorised first."""

    Config = RUMConfig
    uses = frozenset({"forget", "retain"})
    reference = (
        "Zhao, Kurmanji, Bărbulescu, Triantafillou & Triantafillou, 'What makes unlearning hard "
        "and what to do about it' (RUM), NeurIPS 2024 (code github.com/kairanzhao/RUM)"
    )
    sample_level = True
    smoke: ClassVar[dict[str, Any]] = {"epochs": (0.2, 0.2, 0.2)}

    def proxy_scores(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> tuple[torch.Tensor, str]:
        """The proxy for every forget row (higher: less memorised) and which proxy it is."""
        cfg = self.config
        recorded = ctx.training_confidence
        use = cfg.proxy
        if use == "auto":
            use = "learning_speed" if recorded is not None else "final_confidence"
        forget = data.forget
        if use == "learning_speed":
            rows = torch.as_tensor(forget.rows, dtype=torch.long)
            return recorded_confidence(ctx, rows, "proxy", "proxy='auto' or 'final_confidence'"), use
        model.eval()
        with torch.no_grad():
            loss = _losses(model, forget, ctx.device, bf16=ctx.bf16, channels_last=ctx.channels_last)
        return torch.exp(-loss), use

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        if data.forget_classes:
            raise ConfigError(
                "RUM refines a forget set of samples by how much each was memorised; a whole class has no "
                "such spread: use it on random or sample-id requests (for classes: ssd, l1_sparse, neggrad_plus)",
                "request",
            )
        score, proxy = self.proxy_scores(model, data, ctx)
        parts = memorisation_order(score, cfg.pieces)
        steps = 0
        info: dict[str, Any] = {"proxy": proxy, "parts": []}
        for i, part in enumerate(parts):
            step_cfg = NegGradPlusConfig(
                beta=cfg.beta[i],
                epochs=cfg.epochs[i],
                lr=cfg.lr[i] * cfg.lr_scale,
                momentum=cfg.momentum,
                weight_decay=cfg.weight_decay,
                batch_size=cfg.batch_size,
                forget_batch_size=cfg.batch_size,
            )
            part_ctx = dataclasses.replace(ctx, seed=ctx.seed + 1009 * i)
            result = NegGradPlus(step_cfg).unlearn(model, data.with_forget(part), part_ctx)
            model = result.model
            steps += result.steps
            info["parts"].append(
                {
                    "rows": len(part),
                    "proxy_mean": round(float(score[torch.as_tensor(part)].nan_to_num(nan=0.0).mean()), 4),
                    "steps": result.steps,
                }
            )
        model.eval()
        return MethodResult(model=model, steps=steps, info=info)
