"""``l1_sparse``: sparsity-aware unlearning (Jia et al., "Model Sparsity Can Simplify Machine
Unlearning", NeurIPS 2023, arXiv:2304.04934), the paper's "ℓ1-sparse MU".

Fine-tune the original on the retain set with an ℓ1 penalty on all weights::

    θ_u = argmin_θ  ℓ_CE(θ; D_r) + γ_t · ‖θ‖₁

whose weight decays linearly over the run. In the authors' code (``unlearn/FT.py``, ``FT_iter``
of ``OPTML-Group/Unlearn-Sparse``; method ``FT_prune`` → ``FT_l1``) the weight is constant within an
epoch and, for epoch ``e = 0, 1, …``::

    γ_e = γ · (1 − e / (E − E₀))   for e < E − E₀,   else 0

with ``E`` the unlearning epochs and ``E₀`` trailing epochs without the penalty (``--no-l1-epochs``,
default 0). The penalty covers every parameter, batch-norm scales and biases included, and is
added to the loss, so its (sub)gradient ``γ_e·sign(θ)`` goes through momentum like the rest.

Defaults: 10 epochs at a constant learning rate 0.01 (README "ℓ1-sparse" command; the MultiStep
milestones 91,136 of ``arg_parser.py`` are never reached), SGD momentum 0.9, weight decay 5e-4,
batch size 256 (``arg_parser.py``), γ = 5e-4. The repository does not fix γ (the README passes
``--alpha ${alpha}``; the parser's default 0.2 belongs to another method); 5e-4 is the value we
take from the paper's ℓ1-sparse MU setting, while later baseline scripts on this code use 1e-4
(``JingWu321/Scissorhands``, ``Classification/sh/main_0.5_cifar10.sh``). Set ``gamma``
explicitly when reproducing a specific table.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data import Augment
from ..training import TrainConfig, fit
from .base import MethodResult, Range, UnlearnContext, UnlearnData, VisionConfig, VisionMethod, param, register_method
from .losses import check_smoothing, retain_smoothing, smoothing_param


@dataclass(frozen=True, kw_only=True)
class L1SparseConfig(VisionConfig):
    epochs: int = param(10, "fine-tuning epochs over the retain set", "E")
    gamma: float = param(5e-4, "initial ℓ1 weight, decayed linearly per epoch", "γ", tune=Range(1e-5, 1e-2, log=True))
    no_l1_epochs: int = param(0, "final epochs without the ℓ1 penalty", "E₀")
    lr: float = param(0.01, "SGD learning rate (constant)", "η", tune=Range(1e-3, 0.1, log=True))
    momentum: float = param(0.9, "SGD momentum")
    weight_decay: float = param(5e-4, "weight decay")
    batch_size: int = param(256, "batch size")
    augment: bool = param(True, "random crop + flip (the original's geometry) on the retain set")
    retain_samples: int | None = param(
        None,
        "retain samples visited per epoch (a seeded random subset, the same every epoch); None = all, as the reference",
    )
    label_smoothing: float | None = smoothing_param()

    def validate(self) -> None:
        check_smoothing(self)
        self._require(self.epochs >= 1, "epochs", ">= 1")
        self._require(self.gamma >= 0, "gamma", ">= 0")
        self._require(0 <= self.no_l1_epochs < self.epochs, "no_l1_epochs", f">= 0 and < epochs ({self.epochs})")
        self._require(self.lr > 0, "lr", "> 0")
        self._require(self.momentum >= 0, "momentum", ">= 0")
        self._require(self.weight_decay >= 0, "weight_decay", ">= 0")
        self._require(self.batch_size >= 1, "batch_size", ">= 1")
        self._require(self.retain_samples is None or self.retain_samples >= 1, "retain_samples", ">= 1 or None")


def l1_weight(epoch: int, gamma: float, epochs: int, no_l1_epochs: int = 0) -> float:
    """``γ_e = γ·(1 − e/(E − E₀))`` for ``e < E − E₀``, else 0 (the authors' per-epoch schedule)."""
    active = epochs - no_l1_epochs
    return gamma * (1.0 - epoch / active) if epoch < active else 0.0


class DecayingL1:
    """A ``regularizer(model)`` for :func:`obliviate.training.fit` that counts its calls.

    ``fit`` calls it once per optimizer step, so call ``t`` belongs to epoch
    ``t // steps_per_epoch``; it returns ``γ_e · Σ|θ|`` over all trainable parameters.
    """

    def __init__(self, gamma: float, epochs: int, no_l1_epochs: int, steps_per_epoch: int) -> None:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.gamma, self.epochs, self.no_l1_epochs = gamma, epochs, no_l1_epochs
        self.steps_per_epoch = steps_per_epoch
        self.calls = 0
        self.weights: list[float] = []  # γ_e used at each step, for inspection

    def __call__(self, model: nn.Module) -> torch.Tensor:
        w = l1_weight(self.calls // self.steps_per_epoch, self.gamma, self.epochs, self.no_l1_epochs)
        self.calls += 1
        self.weights.append(w)
        params = [p for p in model.parameters() if p.requires_grad]
        if w == 0.0:
            return params[0].new_zeros(())
        return w * torch.stack([p.abs().sum() for p in params]).sum()


@register_method("l1_sparse")
class L1Sparse(VisionMethod[L1SparseConfig]):
    """ℓ1-sparse MU: retain-set fine-tuning with a linearly decaying ℓ1 penalty."""

    Config = L1SparseConfig
    uses = frozenset({"retain"})
    reference = (
        "Jia et al., 'Model Sparsity Can Simplify Machine Unlearning', NeurIPS 2023, arXiv:2304.04934 "
        "(ℓ1-sparse MU; code: github.com/OPTML-Group/Unlearn-Sparse)"
    )
    smoke = {"epochs": 1}

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        tc = self.train_config(ctx.train_config)
        retain = data.retain
        keep = ctx.subset(len(retain), cfg.retain_samples, offset=3)
        if keep is not None:  # a cheaper epoch
            aug = Augment(pad=tc.crop_pad, flip=tc.flip) if tc.augment else None
            loader = retain.loader(
                tc.batch_size, shuffle=True, augment=aug, seed=ctx.seed, channels_last=tc.channels_last, rows=keep
            )
        else:
            loader = retain.train_loader(tc, ctx.seed)
        reg = DecayingL1(cfg.gamma, cfg.epochs, cfg.no_l1_epochs, len(loader))
        res = fit(model, loader, tc, device=ctx.device, progress=ctx.progress, regularizer=reg)
        return MethodResult(
            model=model,
            steps=res.steps,
            info={
                "retain_label_smoothing": tc.label_smoothing,
                "l1_weight_first": reg.weights[0],
                "l1_weight_last": reg.weights[-1],
            },
        )

    def train_config(self, base: TrainConfig) -> TrainConfig:
        """The original's recipe (augmentation geometry, bf16, layout) with the paper's fine-tuning
        budget: plain SGD (no Nesterov) at a constant rate, and the original's label smoothing
        unless the config sets one (:mod:`obliviate.methods.losses`)."""
        cfg = self.config
        return base.with_(
            epochs=float(cfg.epochs),
            lr=cfg.lr,
            optimizer="sgd",
            momentum=cfg.momentum,
            nesterov=False,
            weight_decay=cfg.weight_decay,
            batch_size=cfg.batch_size,
            schedule="constant",
            warmup_frac=0.0,
            augment=cfg.augment,
            label_smoothing=retain_smoothing(cfg.label_smoothing, base),
            bias_lr_scale=1.0,
            bias_wd_scale=1.0,
            grad_clip=None,
        )
