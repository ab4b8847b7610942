"""``neggrad_plus``: gradient descent on the retain set and ascent on the forget set, together.

NegGrad+ (Kurmanji, Triantafillou, Hayes & Triantafillou, "Towards Unbounded Machine Unlearning",
NeurIPS 2023, §5 baselines; code ``meghdadk/SCRUB``). Every step takes one retain batch and one
forget batch (the forget loader is cycled; an epoch is one pass over the retain set) and
minimises

    L(w) = β · CE(retain batch) − (1 − β) · CE(forget batch)

with plain SGD. β = 1 is fine-tuning, β = 0 is pure gradient ascent ("NegGrad"). CE on the retain
batch carries the original's label smoothing unless ``label_smoothing`` says otherwise (``0.0`` is
the reference); ``forward: joint`` sends both batches through one forward pass instead of the
reference's two (:mod:`obliviate.methods.losses`).

Defaults are SCRUB's small-scale setting (``small_scale_unlearning.ipynb``: ``ng_alpha = 0.95``,
``ng_lr = 0.01``, ``ng_epochs = 10``, ``SGD(lr, weight_decay=0)`` without momentum, batches of
128). Their large-scale CIFAR-10 notebooks use β = 0.9999 with the same lr for 5–10 epochs; pass
``beta=0.9999`` to reproduce that setting. The loop follows their ``train_negrad``
(``thirdparty/repdistiller/helper/loops.py``: model in train mode, forget loader cycled against the
retain loader); the small-scale notebook's own loop differs in keeping batch norm in eval mode and
adding an ℓ2 pull toward the original weights to the retain term, neither of which is used here.

Divergence guard (not in the reference code): the forget term is unbounded below, so once the
forget samples are confidently wrong the ascent keeps inflating logits and weights. Each forget
sample's cross-entropy is clamped at ``forget_loss_cap`` nats before averaging; a sample past the
cap contributes no gradient, so the objective is bounded below by −(1 − β)·cap and the ascent stops
on its own once the forget set is forgotten that far. ``grad_clip`` optionally bounds the step
norm as well. The default cap, 10 nats, only touches samples whose true class already has
probability below 5·10⁻⁵, so it changes nothing until a sample is thoroughly forgotten; on the
tiny digits problem an aggressive setting (β = 0.5, lr 0.1) diverges to non-finite weights without
it and keeps 98 % retain accuracy with it (pinned by a test).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Augment
from ..training import Steps
from .base import MethodResult, Range, UnlearnContext, UnlearnData, VisionMethod, forever, param, register_method
from .calibrate import StopConfig, calibrated_stop
from .losses import check_forward, check_smoothing, forward_pair, forward_param, retain_smoothing, smoothing_param


@dataclass(frozen=True, kw_only=True)
class NegGradConfig(StopConfig):
    """Shared base of the NegGrad+ family (``neggrad_plus``, ``calibrated_neggrad``): the joint
    descent/ascent's weight, budget, SGD and batches; each method sets its own defaults."""

    beta: float = param(
        0.95,
        "weight of the retain loss; the forget loss gets 1 − β "
        "(SCRUB code: ng_alpha; 0.9999 in their large-scale runs)",
        "β",
        tune=Range(0.5, 0.999),
    )
    epochs: float = param(10.0, "passes over the retain set (the forget set is cycled alongside)")
    lr: float = param(0.01, "SGD learning rate (constant)", "η", tune=Range(1e-3, 0.1, log=True))
    momentum: float = param(0.0, "SGD momentum (the reference uses none)")
    weight_decay: float = param(0.0, "SGD weight decay (the reference uses none)")
    batch_size: int = param(128, "retain batch size")
    forget_batch_size: int = param(128, "forget batch size")
    augment: bool = param(False, "random crop + flip on both splits (the reference trains without)")
    forget_loss_cap: float | None = param(
        10.0,
        "per-sample ceiling (nats) on the forget cross-entropy; past it a sample stops "
        "pushing (divergence guard; None = unbounded, as in the reference)",
    )
    grad_clip: float | None = param(None, "max global gradient norm per step (None = no clipping)")
    label_smoothing: float | None = smoothing_param()
    forward: Literal["separate", "joint"] = forward_param()

    def validate(self) -> None:
        check_smoothing(self)
        check_forward(self)
        self._require(0.0 <= self.beta <= 1.0, "beta", "in [0, 1]")
        self._require(self.epochs > 0, "epochs", "> 0")
        self._require(self.lr > 0, "lr", "> 0")
        self._require(self.momentum >= 0, "momentum", ">= 0")
        self._require(self.weight_decay >= 0, "weight_decay", ">= 0")
        self._require(self.batch_size >= 1, "batch_size", ">= 1")
        self._require(self.forget_batch_size >= 1, "forget_batch_size", ">= 1")
        self._require(self.forget_loss_cap is None or self.forget_loss_cap > 0, "forget_loss_cap", "> 0 or None")
        self._require(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "> 0 or None")


@dataclass(frozen=True, kw_only=True)
class NegGradPlusConfig(NegGradConfig):
    """NegGrad+ as in SCRUB's small-scale setting (the defaults above)."""


@register_method("neggrad_plus")
class NegGradPlus(VisionMethod[NegGradConfig]):
    """NegGrad+: β·CE(retain) − (1 − β)·CE(forget), minimised jointly with SGD."""

    Config: ClassVar[type[NegGradConfig]] = NegGradPlusConfig
    uses = frozenset({"forget", "retain"})
    reference = (
        "Kurmanji et al., 'Towards Unbounded Machine Unlearning', NeurIPS 2023 "
        "(NegGrad+ baseline; code github.com/meghdadk/SCRUB)"
    )
    smoke: ClassVar[dict[str, Any]] = {"epochs": 1.0}

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        tc = ctx.train_config
        aug = Augment(pad=tc.crop_pad, flip=tc.flip) if cfg.augment else None
        retain = data.retain.loader(
            cfg.batch_size, shuffle=True, augment=aug, seed=ctx.seed, channels_last=ctx.channels_last
        )
        forget = forever(
            data.forget.loader(
                cfg.forget_batch_size, shuffle=True, augment=aug, seed=ctx.seed + 1, channels_last=ctx.channels_last
            )
        )
        model.to(ctx.device).train()
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        total = max(1, round(cfg.epochs * len(retain)))
        steps = Steps(opt, total, device=ctx.device, bf16=ctx.bf16, grad_clip=cfg.grad_clip, progress=ctx.progress)
        cap = cfg.forget_loss_cap
        smoothing = retain_smoothing(cfg.label_smoothing, tc)
        stop = calibrated_stop(cfg, data, ctx, model)
        stopped = False
        epoch = 0
        capped = 0  # forget samples past the cap, summed over steps (reported in info)
        while not steps.done and not stopped:
            for rb in retain:
                if steps.done or stopped:
                    break
                fb = next(forget)
                xr, yr = rb["image"].to(ctx.device), rb["label"].to(ctx.device)
                xf, yf = fb["image"].to(ctx.device), fb["label"].to(ctx.device)
                with steps.autocast():
                    logits_r, logits_f = forward_pair(model, xr, xf, cfg.forward)
                    loss_r = F.cross_entropy(logits_r, yr, label_smoothing=smoothing)
                    ce_f = F.cross_entropy(logits_f, yf, reduction="none").float()
                if cap is not None:
                    capped += int((ce_f.detach() >= cap).sum())
                    ce_f = ce_f.clamp(max=cap)  # zero gradient for samples already past the cap
                loss = cfg.beta * loss_r.float() - (1.0 - cfg.beta) * ce_f.mean()
                steps.update(loss, epoch=epoch)
                stopped = stop is not None and stop(model, steps.step)
            epoch += 1
        model.eval()
        return MethodResult(
            model=model,
            steps=steps.step,
            info={
                "forget_samples_capped": capped,
                "retain_label_smoothing": smoothing,
                **(stop.info() if stop is not None else {}),
            },
        )
