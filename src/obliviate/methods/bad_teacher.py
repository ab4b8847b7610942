"""``bad_teacher``: distil from a competent and an incompetent teacher (paper §III.A.3, eqs. 1–3).

Chundawat et al., "Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks using an
Incompetent Teacher", AAAI 2023, arXiv:2205.08096 (code: github.com/vikram2000b/bad-teaching-unlearning).
The student S starts from the original model; the competent teacher T_s is a frozen copy of the
original, the incompetent teacher T_d a randomly initialised net of the same architecture. On
forget samples (l_u = 1) mixed with a random subset of the retain set (l_u = 0), eq. 3:

    L(x, l_u) = (1 − l_u) · KL(T_s(x) ‖ S(x)) + l_u · KL(T_d(x) ‖ S(x)),

with every distribution softened by the temperature τ (``softmax(logits / τ)``; no τ² factor).

Defaults follow the authors' notebook ``CIFARSuper20_Rocket_Unlearn.ipynb`` and ``unlearn.py``
in that repository: ``KL_temperature = 1``; 30 % of the retain set
(``random.sample(retain_train, int(0.3 * len(retain_train)))``); ``epochs = 1``;
``torch.optim.Adam(lr=0.0001)``; ``batch_size = 256``; no augmentation (their transform is
resize + normalise only); forget and retain samples shuffled together in one loader. Their
student is in training mode (batch-norm uses batch statistics), the teachers in eval mode.

KL reduction: their loss is ``F.kl_div(log_softmax(S/τ), target)`` with PyTorch's default
``reduction="mean"``, which divides the summed KL by the batch size *and* the number of classes
C. ``kl_reduction="batchmean"`` (the default here) is eq. 3 as written — per-sample KL averaged
over the batch; ``"mean"`` reproduces their loss values (= batchmean / C). Under Adam the two
give the same updates up to Adam's ε, because Adam is invariant to a constant loss scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import Augment, BatchLoader
from ..training import Steps
from .base import MethodResult, Range, UnlearnContext, UnlearnData, VisionConfig, VisionMethod, param, register_method

REDUCTIONS = ("batchmean", "mean")


@dataclass(frozen=True, kw_only=True)
class BadTeacherConfig(VisionConfig):
    temperature: float = param(
        1.0, "distillation temperature (their KL_temperature = 1)", "τ", tune=Range(0.5, 8.0, log=True)
    )
    retain_fraction: float = param(0.3, "share of the retain set mixed in as l_u = 0 samples (theirs: 0.3)")
    epochs: float = param(1.0, "passes over the mixed forget + retain-subset data (theirs: 1)")
    lr: float = param(1e-4, "Adam learning rate (theirs: 1e-4)", "η", tune=Range(1e-5, 1e-2, log=True))
    batch_size: int = param(256, "batch size (theirs: 256)")
    kl_reduction: Literal["batchmean", "mean"] = param(
        "batchmean", "'batchmean' = eq. 3 averaged over the batch; 'mean' = their code's F.kl_div default (÷ C more)"
    )
    augment: bool = param(False, "random crop + flip on the mixed data (theirs: none)")
    train_mode: bool = param(True, "student in training mode (batch-norm batch statistics), as in their code")

    def validate(self) -> None:
        self._require(math.isfinite(self.temperature) and self.temperature > 0, "temperature", "> 0")
        self._require(
            math.isfinite(self.retain_fraction) and 0 <= self.retain_fraction <= 1, "retain_fraction", "in [0, 1]"
        )
        self._require(math.isfinite(self.epochs) and self.epochs > 0, "epochs", "> 0")
        self._require(math.isfinite(self.lr) and self.lr > 0, "lr", "> 0")
        self._require(self.batch_size >= 1, "batch_size", ">= 1")
        self._require(self.kl_reduction in REDUCTIONS, "kl_reduction", f"one of {REDUCTIONS}")


def bad_teacher_loss(
    student_logits: torch.Tensor,
    competent_logits: torch.Tensor,
    incompetent_logits: torch.Tensor,
    is_forget: torch.Tensor,
    temperature: float = 1.0,
    reduction: str = "batchmean",
) -> torch.Tensor:
    """Eq. 3: KL(T(x) ‖ S(x)) with T = T_d on forget rows (l_u = 1) and T = T_s on retain rows.

    Since l_u ∈ {0, 1}, mixing the two teacher distributions per row and taking one KL equals the
    weighted sum of the two KLs in eq. 3.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    lu = is_forget.to(student_logits.dtype).unsqueeze(1)
    target = lu * F.softmax(incompetent_logits / temperature, dim=1) + (1 - lu) * F.softmax(
        competent_logits / temperature, dim=1
    )
    total = F.kl_div(F.log_softmax(student_logits / temperature, dim=1), target, reduction="sum")
    # "mean" is PyTorch's elementwise mean (÷ B·C), written out to avoid its deprecation warning
    return total / (target.shape[0] * (target.shape[1] if reduction == "mean" else 1))


def _derived_seed(ctx: UnlearnContext, offset: int) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator(offset)))


@register_method("bad_teacher")
class BadTeacher(VisionMethod[BadTeacherConfig]):
    """Competent/incompetent teacher distillation (Chundawat et al., AAAI 2023)."""

    Config = BadTeacherConfig
    uses = frozenset({"forget", "retain"})
    smoke = {"retain_fraction": 0.1, "batch_size": 128}
    reference = (
        "Chundawat et al., 'Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks using an "
        "Incompetent Teacher', AAAI 2023, arXiv:2205.08096 (eq. 3); paper §III.A.3, eqs. 1–3"
    )

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        device = ctx.device
        competent = ctx.frozen_original(model).to(device)  # the competent teacher: the original, frozen
        incompetent = ctx.model_factory(_derived_seed(ctx, 1)).to(device).eval().requires_grad_(False)

        forget, retain = data.forget, data.retain
        n_keep = int(cfg.retain_fraction * len(retain))  # int(0.3 * len) as in their notebook
        keep = torch.randperm(len(retain), generator=ctx.generator(2))[:n_keep].sort().values
        images = torch.cat([forget.images, retain.images[keep.to(retain.images.device)]])
        is_forget = torch.cat([torch.ones(len(forget), dtype=torch.long), torch.zeros(n_keep, dtype=torch.long)]).to(
            images.device
        )
        aug = Augment(pad=ctx.train_config.crop_pad, flip=ctx.train_config.flip) if cfg.augment else None
        # the loader's "label" slot carries l_u (1 = forget sample), not the class label
        loader = BatchLoader(
            images,
            is_forget,
            mean=forget.mean,
            std=forget.std,
            batch_size=cfg.batch_size,
            shuffle=True,
            augment=aug,
            seed=_derived_seed(ctx, 3),
            channels_last=ctx.train_config.channels_last,
        )

        model.to(device).train(cfg.train_mode)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
        total = max(1, round(cfg.epochs * len(loader)))
        steps = Steps(opt, total, device=device, bf16=ctx.bf16, progress=ctx.progress)
        losses = []
        while not steps.done:
            for batch in loader:
                if steps.done:
                    break
                x, lu = batch["image"].to(device), batch["label"].to(device)
                with torch.no_grad(), steps.autocast():
                    t_s, t_d = competent(x).float(), incompetent(x).float()
                with steps.autocast():
                    s = model(x).float()
                loss = bad_teacher_loss(s, t_s, t_d, lu, cfg.temperature, cfg.kl_reduction)
                losses.append(steps.update(loss))
        model.eval()
        info = {
            "forget_samples": len(forget),
            "retain_samples": n_keep,
            "mean_loss": float(np.mean(losses)) if losses else float("nan"),
        }
        return MethodResult(model=model, steps=steps.step, info=info)
