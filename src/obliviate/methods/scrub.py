"""``scrub``: SCRUB (Kurmanji, Triantafillou, Hayes & Triantafillou, "Towards Unbounded Machine
Unlearning", NeurIPS 2023, arXiv:2302.09880).

A student initialised from the original moves away from a frozen teacher (the original) on the
forget set while staying close to it, and correct, on the retain set. With
``d(x) = KL(p_teacher(x; T) ‖ p_student(x; T))`` at temperature ``T``, each epoch does

* a **max-step** pass over ``D_f`` (only in the first ``msteps`` epochs): minimise ``−d(x)``;
* a **min-step** pass over ``D_r``: minimise ``α·d(x) + γ·CE(student(x), y)``.

Both passes share one optimizer. As in the authors' code (``meghdadk/SCRUB``:
``thirdparty/repdistiller/helper/loops.py``, ``train_distill``; ``distiller_zoo/KD.py``,
``DistillKL``) the teacher is in ``eval()`` mode, the student in ``train()`` mode (its batch-norm
statistics follow the batches it sees), and the KL term is ``Σ_batch KL · T² / batch size``.
The learning rate is multiplied by ``lr_decay_rate`` for every entry of ``lr_decay_epochs`` that
the (1-based) epoch exceeds (their ``adjust_learning_rate``).

Defaults are the authors' large-scale CIFAR-10 setting (``large_scale_unlearning.ipynb``, the
cell that sets ``args.*`` before "SCRUB Forgetting"; loaders in the "Data Loader" cell): SGD,
lr 5e-4, momentum 0.9, weight decay 5e-4, 3 epochs of which the first 2 have max-steps,
``T = 4``, ``α = 0.001``, ``γ = 0.99``, forget batch 512, retain batch 256, no augmentation,
decay epochs (3, 5, 9) × 0.1 (inactive within 3 epochs). Their small-scale setting
(``small_scale_unlearning.ipynb``) is Adam, lr 5e-4, weight decay 0.1, 10 epochs, ``msteps = 3``,
``T = 2``, ``α = 0.5``, ``γ = 1``, forget batch 64, retain batch 32, decay epochs (5, 8, 9).
The rewinding variant (SCRUB+R) is not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Augment
from ..training import Steps
from .base import MethodResult, Range, UnlearnContext, UnlearnData, VisionConfig, VisionMethod, param, register_method


@dataclass(frozen=True, kw_only=True)
class SCRUBConfig(VisionConfig):
    epochs: int = param(3, "total epochs (each: optional max-step pass, then a min-step pass)")
    msteps: int = param(2, "number of leading epochs that include a max-step pass over the forget set")
    lr: float = param(5e-4, "learning rate", "η", tune=Range(1e-4, 1e-2, log=True))
    optimizer: Literal["sgd", "adam"] = param(
        "sgd", "optimizer ('adam': torch Adam with L2 weight decay, as the authors')"
    )
    momentum: float = param(0.9, "SGD momentum")
    weight_decay: float = param(5e-4, "weight decay")
    temperature: float = param(4.0, "distillation temperature", "T")
    alpha: float = param(0.001, "weight of KL(teacher‖student) in the min-step", "α", tune=Range(1e-4, 1.0, log=True))
    gamma: float = param(0.99, "weight of the cross-entropy in the min-step", "γ")
    forget_batch_size: int = param(512, "batch size of the max-step (forget) loader")
    retain_batch_size: int = param(256, "batch size of the min-step (retain) loader")
    lr_decay_epochs: tuple[int, ...] = param((3, 5, 9), "epochs after which the learning rate is decayed")
    lr_decay_rate: float = param(0.1, "learning-rate decay factor")
    augment: bool = param(False, "random crop + flip on training batches (the authors use none)")
    forget_samples: int | None = param(
        None,
        "forget samples of each max-step pass (a seeded random subset, the same every epoch); None = all, "
        "as the authors",
    )
    retain_samples: int | None = param(
        None,
        "retain samples of each min-step pass (a seeded random subset, the same every epoch); None = all, "
        "as the authors",
    )

    def __post_init__(self) -> None:
        if isinstance(self.lr_decay_epochs, list):  # e.g. read from YAML/JSON
            object.__setattr__(self, "lr_decay_epochs", tuple(self.lr_decay_epochs))
        super().__post_init__()

    def validate(self) -> None:
        self._require(self.epochs >= 1, "epochs", ">= 1")
        self._require(0 <= self.msteps <= self.epochs, "msteps", f"in [0, epochs={self.epochs}]")
        self._require(self.lr > 0, "lr", "> 0")
        self._require(self.optimizer in ("sgd", "adam"), "optimizer", "'sgd' or 'adam'")
        self._require(self.momentum >= 0, "momentum", ">= 0")
        self._require(self.weight_decay >= 0, "weight_decay", ">= 0")
        self._require(self.temperature > 0, "temperature", "> 0")
        self._require(self.alpha >= 0, "alpha", ">= 0")
        self._require(self.gamma >= 0, "gamma", ">= 0")
        self._require(self.forget_batch_size >= 1, "forget_batch_size", ">= 1")
        self._require(self.retain_batch_size >= 1, "retain_batch_size", ">= 1")
        self._require(
            all(isinstance(e, int) and e >= 0 for e in self.lr_decay_epochs),
            "lr_decay_epochs",
            "a tuple of non-negative integers",
        )
        self._require(0 < self.lr_decay_rate <= 1, "lr_decay_rate", "in (0, 1]")
        self._require(self.forget_samples is None or self.forget_samples >= 1, "forget_samples", ">= 1 or None")
        self._require(self.retain_samples is None or self.retain_samples >= 1, "retain_samples", ">= 1 or None")


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(p_t ‖ p_s)`` at temperature ``T``, summed over the batch, times ``T²``, over batch size
    (Hinton et al.'s scaling, as ``DistillKL`` in the authors' code)."""
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="sum", log_target=True)
    return kl * temperature**2 / student_logits.shape[0]


def lr_at(epoch: int, lr: float, decay_epochs: tuple[int, ...], rate: float) -> float:
    """Learning rate of 1-based ``epoch``: ``lr · rate^{#(epoch > e for e in decay_epochs)}``."""
    return lr * rate ** sum(epoch > e for e in decay_epochs)


@register_method("scrub")
class SCRUB(VisionMethod[SCRUBConfig]):
    """SCRUB: a student distils the original on retain data and is pushed away from it on forget data."""

    Config = SCRUBConfig
    uses = frozenset({"forget", "retain"})
    reference = (
        "Kurmanji et al., 'Towards Unbounded Machine Unlearning', NeurIPS 2023, arXiv:2302.09880 "
        "(code: github.com/meghdadk/SCRUB)"
    )
    smoke = {"epochs": 1, "msteps": 1}

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        device = ctx.device
        student = model.to(device)
        teacher = ctx.frozen_original(model).to(device)  # the original, frozen: SCRUB's teacher

        params = [p for p in student.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
        else:
            opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

        tc = ctx.train_config
        aug = Augment(pad=tc.crop_pad, flip=tc.flip) if cfg.augment else None
        f_rows = ctx.subset(len(data.forget), cfg.forget_samples, offset=1)  # cheaper passes
        r_rows = ctx.subset(len(data.retain), cfg.retain_samples, offset=2)
        f_loader = data.forget.loader(cfg.forget_batch_size, shuffle=True, augment=aug, seed=ctx.seed, rows=f_rows)
        r_loader = data.retain.loader(cfg.retain_batch_size, shuffle=True, augment=aug, seed=ctx.seed + 1, rows=r_rows)
        ce = nn.CrossEntropyLoss()

        total = cfg.msteps * len(f_loader) + cfg.epochs * len(r_loader)
        steps = Steps(opt, total, device=device, bf16=ctx.bf16, progress=ctx.progress)

        def step(x: torch.Tensor, y: torch.Tensor, maximise: bool, epoch: int) -> None:
            x, y = x.to(device), y.to(device)
            with torch.no_grad(), steps.autocast():
                t_logits = teacher(x)
            with steps.autocast():
                s_logits = student(x)
            div = distill_kl(s_logits, t_logits, cfg.temperature)
            loss = -div if maximise else cfg.alpha * div + cfg.gamma * ce(s_logits.float(), y)
            steps.update(loss, epoch=epoch)

        max_steps = 0
        student.train()
        for epoch in range(1, cfg.epochs + 1):
            for g in opt.param_groups:
                g["lr"] = lr_at(epoch, cfg.lr, cfg.lr_decay_epochs, cfg.lr_decay_rate)
            passes = [(f_loader, True)] if epoch <= cfg.msteps else []
            for loader, maximise in passes + [(r_loader, False)]:
                for b in loader:
                    step(b["image"], b["label"], maximise, epoch - 1)
                    max_steps += int(maximise)
        student.eval()
        return MethodResult(
            model=student, steps=steps.step, info={"max_steps": max_steps, "min_steps": steps.step - max_steps}
        )
