"""``retrain``: train from scratch on the retain set — exact unlearning, the gold standard.

Paper §III.A.2 (ResNet18, EfficientFormerV2, CoAtNet; Table IV) and Fig. 3 (ResNet9). Every
layer is re-initialised; the forget split is never read (``uses = {"retain"}``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..training import fit
from .base import MethodResult, UnlearnContext, UnlearnData, VisionConfig, VisionMethod, param, register_method


@dataclass(frozen=True, kw_only=True)
class RetrainConfig(VisionConfig):
    epochs: float | None = param(None, "training epochs; None = the same budget as the original model")

    def validate(self) -> None:
        self._require(self.epochs is None or self.epochs > 0, "epochs", "> 0 or None")


@register_method("retrain")
class Retrain(VisionMethod[RetrainConfig]):
    """Retrain from scratch on the retain set with the original's training recipe."""

    Config = RetrainConfig
    uses = frozenset({"retain"})
    reference = "Bourtoule et al., 'Machine Unlearning', IEEE S&P 2021 (naive retraining); paper §III.A.2"
    exact = True
    smoke = {"epochs": 2}

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        train_cfg = ctx.train_config if cfg.epochs is None else ctx.train_config.with_(epochs=cfg.epochs)
        fresh = ctx.model_factory(ctx.seed)
        res = fit(
            fresh, data.retain.train_loader(train_cfg, ctx.seed), train_cfg, device=ctx.device, progress=ctx.progress
        )
        return MethodResult(model=fresh, steps=res.steps, info={"epochs": train_cfg.epochs})
