"""``simnpo`` (LLM): SimNPO, reference-free NPO (Fan et al. 2024, arXiv:2410.07163).

Forget loss (their eq. 4): length-normalised log-likelihood in place of NPO's reference ratio,
with a reward margin γ:

``L_SimNPO = −(2/β)·E_forget[log σ(−(β/|y|)·log π_θ(y|x) − γ)]``

plus ``λ·NLL(retain)`` (their regularised form; ``retain_loss`` may also be ``kl`` or ``none``).
Defaults β = 2.5, γ = 0 are the paper's TOFU settings. The authors' code writes the margin as
``β·(NLL/|y| − γ')``; with γ = 0 the two coincide, otherwise γ = β·γ'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ..data.prompts import model_inputs
from ..lm_losses import sequence_nll, simnpo_loss
from .base import MethodResult, UnlearningMethod, param, register_method
from .lm_base import (
    RETAIN_LOSSES,
    LLMMethodConfig,
    LLMUnlearnContext,
    LLMUnlearnData,
    Step,
    retain_term,
    run_unlearning,
)


@dataclass(frozen=True, kw_only=True)
class SimNPOConfig(LLMMethodConfig):
    epochs: float = param(5.0, "passes over the forget set")
    beta: float = param(2.5, "inverse temperature", "β")
    gamma: float = param(0.0, "reward margin", "γ")
    forget_weight: float = param(1.0, "weight of the SimNPO term")
    retain_weight: float = param(1.0, "weight of the retain term", "λ")
    retain_loss: Literal["nll", "kl", "none"] = param("nll", "retain term: NLL, KL to the reference, or none")

    def validate(self) -> None:
        self._validate_common()
        self._require(self.beta > 0, "beta", "> 0")
        self._require(self.gamma >= 0, "gamma", ">= 0")
        self._require(self.forget_weight > 0, "forget_weight", "> 0")
        self._require(self.retain_weight >= 0, "retain_weight", ">= 0")
        self._require(self.retain_loss in RETAIN_LOSSES, "retain_loss", f"one of {RETAIN_LOSSES}")


@register_method("simnpo")
class SimNPO(UnlearningMethod[SimNPOConfig]):
    """Reference-free, length-normalised NPO with a margin."""

    Config = SimNPOConfig
    uses = frozenset({"forget", "retain"})
    kind = "llm"
    reference = (
        "Fan, Liu, Lin, Jia, Zhang, Mei, Liu, 'Simplicity Prevails: Rethinking Negative Preference "
        "Optimization for LLM Unlearning', arXiv:2410.07163, 2024"
    )
    smoke: ClassVar[dict[str, Any]] = {"epochs": 1.0, "lr": 1e-3, "batch_size": 4, "lora_r": 4}

    def unlearn(self, model: nn.Module, data: LLMUnlearnData, ctx: LLMUnlearnContext) -> MethodResult:
        cfg = self.config
        forget = data.forget.loader(cfg.batch_size, loss_on=cfg.loss_on, seed=ctx.seed)
        retain = (
            data.retain.loader(cfg.batch_size, loss_on=cfg.loss_on, seed=ctx.seed + 1)
            if cfg.retain_loss != "none"
            else None
        )

        def loss(s: Step) -> torch.Tensor:
            nll, n = sequence_nll(s.net(**model_inputs(s.forget)).logits, s.forget["labels"])
            out = cfg.forget_weight * simnpo_loss(nll, n, cfg.beta, cfg.gamma)
            if cfg.retain_loss != "none" and cfg.retain_weight > 0:
                out = out + cfg.retain_weight * retain_term(s, cfg.retain_loss)
            return out

        return run_unlearning(
            model, cfg, ctx, loss, forget=forget, retain=retain, live_reference=cfg.retain_loss == "kl"
        )
