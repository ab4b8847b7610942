"""``finetune``: continue training the original on the retain set only (catastrophic forgetting).

The cheap baseline every unlearning paper reports (e.g. Golatkar et al. 2020 "FT"; Jia et al.
2023; Fan et al. 2024 use it as "FT").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from ..train import TrainConfig, fit
from .base import MethodResult, UnlearnContext, UnlearnData, VisionConfig, VisionMethod, param, register_method


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig(VisionConfig):
    epochs: float = param(5.0, "fine-tuning epochs over the retain set")
    lr: float = param(0.02, "peak learning rate", "η")
    optimizer: Literal["sgd", "adamw"] = param("sgd", "optimizer")
    momentum: float = param(0.9, "SGD momentum")
    weight_decay: float = param(5e-4, "weight decay")
    batch_size: int = param(128, "batch size")
    schedule: Literal["onecycle", "cosine", "linear", "constant"] = param("cosine", "learning-rate schedule")
    augment: bool = param(True, "random crop + flip on the retain set")

    def validate(self) -> None:
        self._require(self.epochs > 0, "epochs", "> 0")
        self._require(self.lr > 0, "lr", "> 0")
        self._require(self.batch_size >= 1, "batch_size", ">= 1")
        self._require(self.optimizer in ("sgd", "adamw"), "optimizer", "'sgd' or 'adamw'")
        self._require(self.momentum >= 0, "momentum", ">= 0")
        self._require(self.weight_decay >= 0, "weight_decay", ">= 0")
        self._require(self.schedule in ("onecycle", "cosine", "linear", "constant"), "schedule",
                      "one of onecycle, cosine, linear, constant")

    def train_config(self, base: TrainConfig) -> TrainConfig:
        """The original's recipe (augmentation geometry, bf16, layout) with this run's budget."""
        return base.with_(
            epochs=self.epochs, lr=self.lr, optimizer=self.optimizer, momentum=self.momentum,
            weight_decay=self.weight_decay, batch_size=self.batch_size, schedule=self.schedule,
            augment=self.augment, warmup_frac=0.0 if self.schedule != "onecycle" else base.warmup_frac,
            label_smoothing=0.0, bias_lr_scale=1.0,
        )


@register_method("finetune")
class Finetune(VisionMethod):
    """Fine-tune the original model on the retain set."""

    Config = FinetuneConfig
    uses = frozenset({"retain"})
    smoke = {"epochs": 1}
    reference = "Golatkar et al., 'Eternal Sunshine of the Spotless Net', CVPR 2020 (fine-tuning baseline)"

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg: FinetuneConfig = self.config  # type: ignore[assignment]
        tc = cfg.train_config(ctx.train_config)
        res = fit(model, data.retain.train_loader(tc, ctx.seed), tc, device=ctx.device, progress=ctx.progress)
        return MethodResult(model=model, steps=res.steps)
