"""``finetune``: continue training the original on the retain set only (catastrophic forgetting).

The cheap baseline every unlearning paper reports (e.g. Golatkar et al. 2020 "FT"; Jia et al.
2023; Fan et al. 2024 use it as "FT").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from ..data import Augment
from ..training import FitResult, TrainConfig, fit
from .base import MethodResult, Range, UnlearnContext, UnlearnData, VisionConfig, VisionMethod, param, register_method
from .calibrate import StopConfig, calibrated_stop
from .losses import check_smoothing, retain_smoothing, smoothing_param


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig(StopConfig):
    epochs: float = param(5.0, "fine-tuning epochs over the retain set")
    lr: float = param(0.02, "peak learning rate", "η", tune=Range(1e-3, 0.1, log=True))
    optimizer: Literal["sgd", "adamw"] = param("sgd", "optimizer")
    momentum: float = param(0.9, "SGD momentum")
    weight_decay: float = param(5e-4, "weight decay")
    batch_size: int = param(128, "batch size")
    schedule: Literal["onecycle", "cosine", "linear", "constant"] = param("cosine", "learning-rate schedule")
    augment: bool = param(True, "random crop + flip on the retain set")
    label_smoothing: float | None = smoothing_param()

    def validate(self) -> None:
        check_smoothing(self)
        self._require(self.epochs > 0, "epochs", "> 0")
        self._require(self.lr > 0, "lr", "> 0")
        self._require(self.batch_size >= 1, "batch_size", ">= 1")
        self._require(self.optimizer in ("sgd", "adamw"), "optimizer", "'sgd' or 'adamw'")
        self._require(self.momentum >= 0, "momentum", ">= 0")
        self._require(self.weight_decay >= 0, "weight_decay", ">= 0")
        self._require(
            self.schedule in ("onecycle", "cosine", "linear", "constant"),
            "schedule",
            "one of onecycle, cosine, linear, constant",
        )

    def train_config(self, base: TrainConfig) -> TrainConfig:
        """The original's recipe (augmentation geometry, bf16, layout, and by default its label
        smoothing: :mod:`obliviate.methods.losses`) with this run's budget."""
        return base.with_(
            epochs=self.epochs,
            lr=self.lr,
            optimizer=self.optimizer,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            schedule=self.schedule,
            augment=self.augment,
            warmup_frac=0.0 if self.schedule != "onecycle" else base.warmup_frac,
            label_smoothing=retain_smoothing(self.label_smoothing, base),
            bias_lr_scale=1.0,
        )


@register_method("finetune")
class Finetune(VisionMethod[FinetuneConfig]):
    """Fine-tune the original model on the retain set."""

    Config = FinetuneConfig
    uses = frozenset({"retain"})
    smoke = {"epochs": 1}
    reference = "Golatkar et al., 'Eternal Sunshine of the Spotless Net', CVPR 2020 (fine-tuning baseline)"

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        tc = cfg.train_config(ctx.train_config)
        stop = calibrated_stop(cfg, data, ctx, model)
        res = fit(
            model, data.retain.train_loader(tc, ctx.seed), tc, device=ctx.device, progress=ctx.progress, stop=stop
        )
        return MethodResult(
            model=model,
            steps=res.steps,
            info={"retain_label_smoothing": tc.label_smoothing, **(stop.info() if stop is not None else {})},
        )


@dataclass(frozen=True, kw_only=True)
class RetainTuneConfig(VisionConfig):
    """The retain-set fine-tune that ends several methods (``ct``, ``msg``): plain SGD with
    momentum on (a seeded sample of) the retain set. Subclasses set their papers' defaults."""

    epochs: float = param(3.0, "fine-tuning epochs over the retain set")
    lr: float = param(1e-3, "peak SGD learning rate", "η", tune=Range(1e-4, 1e-2, log=True))
    momentum: float = param(0.9, "SGD momentum")
    weight_decay: float = param(5e-4, "weight decay")
    batch_size: int = param(64, "batch size")
    augment: bool = param(True, "the original's crops and flips on the retain set")
    retain_samples: int | None = param(None, "retain rows fine-tuned on, drawn once (None = all)")
    label_smoothing: float | None = smoothing_param()

    def validate(self) -> None:
        check_smoothing(self)
        self._require(self.epochs > 0, "epochs", "> 0")
        self._require(self.lr > 0, "lr", "> 0")
        self._require(self.momentum >= 0, "momentum", ">= 0")
        self._require(self.weight_decay >= 0, "weight_decay", ">= 0")
        self._require(self.batch_size >= 1, "batch_size", ">= 1")
        self._require(self.retain_samples is None or self.retain_samples >= 1, "retain_samples", ">= 1 or None")


def retain_finetune(
    model: nn.Module,
    data: UnlearnData,
    ctx: UnlearnContext,
    cfg: RetainTuneConfig,
    *,
    after_backward: Callable[[nn.Module], None] | None = None,
    **schedule: Any,
) -> tuple[FitResult, int]:
    """Fine-tune ``model`` on the retain rows ``cfg`` selects with the original's recipe (its label
    smoothing unless ``cfg`` sets one) and ``cfg``'s budget (``schedule``: TrainConfig schedule
    fields); returns the fit and the rows used."""
    tc = ctx.train_config.with_(
        epochs=cfg.epochs,
        lr=cfg.lr,
        optimizer="sgd",
        momentum=cfg.momentum,
        nesterov=False,
        weight_decay=cfg.weight_decay,
        batch_size=cfg.batch_size,
        augment=cfg.augment,
        label_smoothing=retain_smoothing(cfg.label_smoothing, ctx.train_config),
        bias_lr_scale=1.0,
        bias_wd_scale=1.0,
        **schedule,
    )
    retain = data.retain
    keep = ctx.subset(len(retain), cfg.retain_samples, offset=1)
    aug = Augment(pad=tc.crop_pad, flip=tc.flip) if tc.augment else None
    loader = retain.loader(
        tc.batch_size, shuffle=True, augment=aug, seed=ctx.seed, channels_last=tc.channels_last, rows=keep
    )
    res = fit(model, loader, tc, device=ctx.device, progress=ctx.progress, after_backward=after_backward)
    return res, len(retain) if keep is None else len(keep)
