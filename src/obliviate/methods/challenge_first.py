"""``challenge_first``: the NeurIPS 2023 machine unlearning challenge's first-place recipe.

As re-validated by DeepUnlearn (Cadet et al., "Deep Unlearn: Benchmarking Machine Unlearning for
Image Classification", 2024), which found it among the methods consistently best on accuracy and
time. Two stages, each with its own SGD optimizer:

1. **Uniform pass.** One pass over the forget set minimising KL(u ‖ softmax(f(x_f))), u the
   uniform distribution over the classes (lr 5e-3, momentum 0.9, no weight decay).
2. **Rounds** (``rounds`` = 8). A *forget round* pairs each forget batch with a retain batch and
   minimises  −mean_{i,j} log softmax_j( f(x_f,i) · f(x_r,j)ᵀ / T )  with the retain logits held
   fixed (T = 1.15): every forget output becomes equally similar to every retain output, i.e.
   pushed away from any one class's pattern (lr 3e-4, momentum 0.9, cosine to 1e-6 over all
   forget steps); then a *retain round*: one epoch of cross-entropy on the retain set (lr 1e-3 ×
   batch / 64, momentum 0.9, weight decay 1e-2).

Batch 256 throughout, the model in train mode, as the reference. ``retain_samples`` caps the
retain rows of each retain round (one seeded draw; a cost knob, None = all: the reference's 8
retain epochs cost more than most of this library's budgets allow).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Augment
from ..training import Steps
from .base import MethodResult, Range, UnlearnContext, UnlearnData, VisionConfig, VisionMethod, param, register_method


@dataclass(frozen=True, kw_only=True)
class ChallengeFirstConfig(VisionConfig):
    rounds: int = param(8, "forget + retain rounds after the uniform pass")
    batch_size: int = param(256, "batch size of every stage")
    uniform_lr: float = param(5e-3, "SGD learning rate of the uniform pass")
    forget_lr: float = param(
        3e-4, "peak SGD learning rate of the forget rounds (cosine to eta_min)", tune=Range(1e-5, 1e-3, log=True)
    )
    eta_min: float = param(1e-6, "final learning rate of the forget rounds' cosine schedule")
    retain_lr: float = param(
        1e-3,
        "SGD learning rate of the retain rounds per 64 images (scaled by batch/64)",
        tune=Range(1e-4, 1e-2, log=True),
    )
    retain_weight_decay: float = param(1e-2, "weight decay of the retain rounds")
    momentum: float = param(0.9, "SGD momentum of every stage")
    temperature: float = param(1.15, "temperature T of the forget rounds' similarity softmax", "T")
    augment: bool = param(False, "the original's crops and flips (the reference loaders do not augment)")
    retain_samples: int | None = param(None, "retain rows of each retain round, drawn once (None = all)")

    def validate(self) -> None:
        self._require(self.rounds >= 1, "rounds", ">= 1")
        self._require(self.batch_size >= 1, "batch_size", ">= 1")
        for k in ("uniform_lr", "forget_lr", "retain_lr", "temperature"):
            self._require(getattr(self, k) > 0, k, "> 0")
        self._require(0 <= self.eta_min <= self.forget_lr, "eta_min", "in [0, forget_lr]")
        self._require(self.retain_weight_decay >= 0, "retain_weight_decay", ">= 0")
        self._require(self.momentum >= 0, "momentum", ">= 0")
        self._require(self.retain_samples is None or self.retain_samples >= 1, "retain_samples", ">= 1 or None")


def uniform_kl(logits: torch.Tensor) -> torch.Tensor:
    """KL(u ‖ softmax(logits)), batch mean; u uniform over the classes."""
    logp = F.log_softmax(logits.float(), dim=-1)
    u = torch.full_like(logp, 1.0 / logp.shape[-1])
    return F.kl_div(logp, u, reduction="batchmean")


def similarity_spread(forget_logits: torch.Tensor, retain_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """−mean log softmax over retain samples of forget·retainᵀ / T (retain logits fixed)."""
    sim = forget_logits.float() @ retain_logits.detach().float().T / temperature
    return -F.log_softmax(sim, dim=-1).mean()


@register_method("challenge_first")
class ChallengeFirst(VisionMethod[ChallengeFirstConfig]):
    """NeurIPS 2023 challenge, 1st place: KL to uniform on the forget set, then forget/retain rounds."""

    Config = ChallengeFirstConfig
    uses = frozenset({"forget", "retain"})
    smoke: ClassVar[dict[str, Any]] = {"rounds": 1}
    reference = (
        "NeurIPS 2023 machine unlearning challenge, 1st place, as re-validated in Cadet et al., "
        "'Deep Unlearn: Benchmarking Machine Unlearning for Image Classification', 2024"
    )

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        tc = ctx.train_config
        aug = Augment(pad=tc.crop_pad, flip=tc.flip) if cfg.augment else None
        forget, retain = data.forget, data.retain
        keep = ctx.subset(len(retain), cfg.retain_samples, offset=1)
        kw: dict[str, Any] = {"augment": aug, "channels_last": ctx.channels_last}
        f_loader = forget.loader(cfg.batch_size, shuffle=True, seed=ctx.seed, **kw)
        r_pair = retain.loader(cfg.batch_size, shuffle=True, seed=ctx.seed + 1, **kw)  # partners of the forget batches
        r_round = retain.loader(cfg.batch_size, shuffle=True, seed=ctx.seed + 2, rows=keep, **kw)
        model.to(ctx.device).train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt_u = torch.optim.SGD(params, lr=cfg.uniform_lr, momentum=cfg.momentum)
        opt_f = torch.optim.SGD(params, lr=cfg.forget_lr, momentum=cfg.momentum)
        opt_r = torch.optim.SGD(
            params, lr=cfg.retain_lr * cfg.batch_size / 64, momentum=cfg.momentum, weight_decay=cfg.retain_weight_decay
        )
        forget_steps = cfg.rounds * min(len(f_loader), len(r_pair))
        total = len(f_loader) + forget_steps + cfg.rounds * len(r_round)
        steps = Steps(None, total, device=ctx.device, bf16=ctx.bf16, progress=ctx.progress)

        def step_with(opt: torch.optim.Optimizer) -> Any:
            def backward(loss: torch.Tensor) -> None:
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            return backward

        for b in f_loader:  # stage 1: the uniform pass
            with steps.autocast():
                out = model(b["image"].to(ctx.device))
            steps.update(uniform_kl(out), backward=step_with(opt_u), epoch=0)
        k = 0
        for rnd in range(cfg.rounds):  # stage 2
            for fb, rb in zip(f_loader, r_pair):
                lr = cfg.eta_min + (cfg.forget_lr - cfg.eta_min) * 0.5 * (1 + math.cos(math.pi * k / forget_steps))
                for g in opt_f.param_groups:
                    g["lr"] = lr
                with steps.autocast():
                    out_f = model(fb["image"].to(ctx.device))
                    out_r = model(rb["image"].to(ctx.device))
                steps.update(similarity_spread(out_f, out_r, cfg.temperature), backward=step_with(opt_f), epoch=rnd)
                k += 1
            for b in r_round:
                with steps.autocast():
                    loss = F.cross_entropy(model(b["image"].to(ctx.device)).float(), b["label"].to(ctx.device))
                steps.update(loss, backward=step_with(opt_r), epoch=rnd)
        model.eval()
        return MethodResult(
            model=model,
            steps=steps.step,
            info={"forget_steps": forget_steps, "retain_rows": len(retain) if keep is None else len(keep)},
        )
