"""``grad_diff`` (LLM): gradient difference — ascent on the forget set, descent on the retain set.

``L = −γ·NLL(forget) + α·R(retain)`` with ``R`` the retain NLL or KL(π_ref ‖ π_θ) on retain
batches (Liu et al., "Continual Learning and Private Unlearning", CoLLAs 2022; the "Grad. Diff."
baseline of TOFU, Maini et al. 2024; open-unlearning's GradDiff with γ = α = 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ..data.prompts import model_inputs
from ..lm_losses import mean_nll
from .base import MethodResult, UnlearningMethod, param, register_method
from .lm_base import (
    LLMMethodConfig,
    LLMUnlearnContext,
    LLMUnlearnData,
    Step,
    retain_term,
    run_unlearning,
)


@dataclass(frozen=True, kw_only=True)
class GradDiffConfig(LLMMethodConfig):
    epochs: float = param(5.0, "passes over the forget set")
    forget_weight: float = param(1.0, "weight of the ascent term", "γ")
    retain_weight: float = param(1.0, "weight of the retain term", "α")
    retain_loss: Literal["nll", "kl"] = param("nll", "retain term: NLL of the learned answers or KL to the reference")

    def validate(self) -> None:
        self._validate_common()
        self._require(self.forget_weight > 0, "forget_weight", "> 0")
        self._require(self.retain_weight >= 0, "retain_weight", ">= 0")
        self._require(self.retain_loss in ("nll", "kl"), "retain_loss", "'nll' or 'kl'")


@register_method("grad_diff")
class GradDiff(UnlearningMethod[GradDiffConfig]):
    """Ascend the forget NLL while descending the retain NLL (or KL)."""

    Config = GradDiffConfig
    uses = frozenset({"forget", "retain"})
    kind = "llm"
    reference = "Liu et al., 'Continual Learning and Private Unlearning', CoLLAs 2022; Maini et al., TOFU, 2024"
    smoke: ClassVar[dict[str, Any]] = {"epochs": 1.0, "lr": 1e-3, "batch_size": 4, "lora_r": 4}

    def unlearn(self, model: nn.Module, data: LLMUnlearnData, ctx: LLMUnlearnContext) -> MethodResult:
        cfg = self.config
        forget = data.forget.loader(cfg.batch_size, loss_on=cfg.loss_on, seed=ctx.seed)
        retain = data.retain.loader(cfg.batch_size, loss_on=cfg.loss_on, seed=ctx.seed + 1)

        def loss(s: Step) -> torch.Tensor:
            ascent = -mean_nll(s.net(**model_inputs(s.forget)).logits, s.forget["labels"])
            return cfg.forget_weight * ascent + cfg.retain_weight * retain_term(s, cfg.retain_loss)

        return run_unlearning(
            model, cfg, ctx, loss, forget=forget, retain=retain, live_reference=cfg.retain_loss == "kl"
        )
