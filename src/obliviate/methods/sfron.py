"""``sfron``: SFR-on (Huang et al., "Unified Gradient-Based Machine Unlearning with Remain
Geometry Enhancement", NeurIPS 2024; code github.com/K1nght/Unified-Unlearning-w-Remain-Geometry).

1. **Forget-remain balanced saliency mask.** Diagonal Fisher information of the forget and the
   retain set (mean over batches of the squared batch-mean gradient, eval mode); a weight takes
   part in the forgetting step when F_f / F_r ≥ γ (``threshold``, 1 in the paper).
2. **Online fast-slow updates** for ``iters`` steps: every step one retain batch of plain
   cross-entropy descent; every ``forget_every``-th step first one forget batch of *adaptive*
   gradient ascent — the per-sample cross-entropy weighted by 1 / ℓ^λ (normalised to the batch:
   samples already forgotten push less), scaled by α_t = α·(1 + cos(π t / T)) / 2 — with the
   gradient masked to the salient weights and clipped to norm 7. One SGD optimizer (lr 0.01,
   momentum 0.9, weight decay 5e-4, cosine over the steps) serves both.

Defaults are the authors' CIFAR-10 random-10 % setting (``Classification/unlearn/sfron.py``):
T = 1500, every 5th step a forget step, α = 25, λ = 0.5, γ = 1. Their EMA of the weights is
configured with β = 1, which leaves the weights unchanged, and is not reproduced. Batch size 128
(the reference takes its loaders' batch size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Augment, BatchLoader
from ..training import Steps
from .base import (
    MethodResult,
    Range,
    UnlearnContext,
    UnlearnData,
    VisionConfig,
    VisionMethod,
    forever,
    param,
    register_method,
)


@dataclass(frozen=True, kw_only=True)
class SFRonConfig(VisionConfig):
    iters: int = param(1500, "steps (one retain batch each)", "T")
    forget_every: int = param(5, "a forget step before every k-th retain step")
    lr: float = param(0.01, "peak SGD learning rate (cosine over the steps)", "η", tune=Range(1e-3, 0.1, log=True))
    momentum: float = param(0.9, "SGD momentum")
    weight_decay: float = param(5e-4, "weight decay")
    forget_alpha: float = param(
        25.0, "peak weight α of the ascent term (cosine to 0 over the steps)", "α", tune=Range(1.0, 100.0, log=True)
    )
    lambd: float = param(0.5, "adaptive weighting exponent: a sample weighs 1 / loss^λ", "λ")
    threshold: float = param(1.0, "saliency threshold on F_forget / F_retain", "γ")
    max_norm: float = param(7.0, "gradient-norm clip of the forget step")
    batch_size: int = param(128, "batch size of both splits")
    augment: bool = param(True, "the original's crops and flips")
    fisher_samples: int | None = param(None, "retain rows of the retain Fisher, drawn once (None = all, as the paper)")

    def validate(self) -> None:
        for k in ("iters", "forget_every", "batch_size"):
            self._require(getattr(self, k) >= 1, k, ">= 1")
        for k in ("lr", "forget_alpha", "threshold", "max_norm"):
            self._require(getattr(self, k) > 0, k, "> 0")
        self._require(self.momentum >= 0, "momentum", ">= 0")
        self._require(self.weight_decay >= 0, "weight_decay", ">= 0")
        self._require(self.lambd >= 0, "lambd", ">= 0")
        self._require(self.fisher_samples is None or self.fisher_samples >= 1, "fisher_samples", ">= 1 or None")


def diagonal_fisher(model: nn.Module, loader: BatchLoader, device: torch.device) -> dict[str, torch.Tensor]:
    """Mean over batches of the squared batch-mean cross-entropy gradient, per parameter (eval mode)."""
    was = model.training
    model.eval()
    out = {n: torch.zeros_like(p) for n, p in model.named_parameters() if p.requires_grad}
    batches = 0
    for b in loader:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(b["image"].to(device)).float(), b["label"].to(device)).backward()
        for n, p in model.named_parameters():
            if p.grad is not None and n in out:
                out[n] += p.grad.detach() ** 2
        batches += 1
    model.zero_grad(set_to_none=True)
    model.train(was)
    return {n: v / max(batches, 1) for n, v in out.items()}


def adaptive_ce(logits: torch.Tensor, labels: torch.Tensor, lambd: float) -> torch.Tensor:
    """Per-sample cross-entropy weighted by 1 / ℓ^λ (weights detached, normalised to sum to the batch size), mean."""
    loss = F.cross_entropy(logits.float(), labels, reduction="none")
    coef = 1.0 / (loss.detach() ** lambd + 1e-15)
    return (coef / coef.sum() * loss * len(loss)).mean()


@register_method("sfron")
class SFRon(VisionMethod[SFRonConfig]):
    """SFR-on: Fisher-ratio saliency mask, adaptive masked ascent on forget batches between retain descent steps."""

    Config = SFRonConfig
    uses = frozenset({"forget", "retain"})
    smoke: ClassVar[dict[str, Any]] = {"iters": 20}
    reference = (
        "Huang et al., 'Unified Gradient-Based Machine Unlearning with Remain Geometry Enhancement', "
        "NeurIPS 2024 (SFR-on; code github.com/K1nght/Unified-Unlearning-w-Remain-Geometry)"
    )

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        model.to(ctx.device)
        forget, retain = data.forget, data.retain
        keep = ctx.subset(len(retain), cfg.fisher_samples, offset=4)
        fisher_f = diagonal_fisher(model, forget.loader(cfg.batch_size, shuffle=False), ctx.device)
        fisher_r = diagonal_fisher(model, retain.loader(cfg.batch_size, shuffle=False, rows=keep), ctx.device)
        mask = {
            n: ((fisher_f[n] + 1e-15) / (fisher_r[n] + 1e-15) >= cfg.threshold).to(fisher_f[n].dtype) for n in fisher_f
        }
        params = dict(model.named_parameters())
        tc = ctx.train_config
        aug = Augment(pad=tc.crop_pad, flip=tc.flip) if cfg.augment else None
        r_iter = forever(
            retain.loader(cfg.batch_size, shuffle=True, augment=aug, seed=ctx.seed, channels_last=ctx.channels_last)
        )
        f_iter = forever(
            forget.loader(cfg.batch_size, shuffle=True, augment=aug, seed=ctx.seed + 1, channels_last=ctx.channels_last)
        )
        opt = torch.optim.SGD(
            [p for p in model.parameters() if p.requires_grad],
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )
        forget_steps = -(-cfg.iters // cfg.forget_every)
        steps = Steps(opt, cfg.iters + forget_steps, device=ctx.device, bf16=ctx.bf16, progress=ctx.progress)

        def masked_clipped() -> None:
            for n, p in params.items():
                if p.grad is not None and n in mask:
                    p.grad.mul_(mask[n])
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_norm)

        model.train()
        for t in range(cfg.iters):
            cosine = (1 + math.cos(math.pi * t / cfg.iters)) / 2
            for g in opt.param_groups:
                g["lr"] = cfg.lr * cosine
            if t % cfg.forget_every == 0:
                fb = next(f_iter)
                with steps.autocast():
                    out = model(fb["image"].to(ctx.device))
                loss = -cfg.forget_alpha * cosine * adaptive_ce(out, fb["label"].to(ctx.device), cfg.lambd)
                steps.update(loss, after_backward=masked_clipped)
            rb = next(r_iter)
            with steps.autocast():
                loss = F.cross_entropy(model(rb["image"].to(ctx.device)).float(), rb["label"].to(ctx.device))
            steps.update(loss)
        model.eval()
        total = sum(m.numel() for m in mask.values())
        return MethodResult(
            model=model,
            steps=steps.step,
            info={
                "salient_fraction": float(sum(m.sum() for m in mask.values()) / max(total, 1)),
                "forget_steps": forget_steps,
            },
        )
