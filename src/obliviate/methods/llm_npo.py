"""``npo`` (LLM): Negative Preference Optimization (Zhang et al. 2024, arXiv:2404.05868).

Forget loss (their eq. 3), with π_ref the model before unlearning (the adapter switched off in
LoRA mode) and log π summed over the answer tokens:

``L_NPO = −(2/β)·E_forget[log σ(−β·log(π_θ(y|x)/π_ref(y|x)))]``

plus the retain term of their NPO-RT / NPO-KL variants: ``L = γ·L_NPO + α·R(retain)`` with
``R`` the retain NLL (``retain_loss="nll"``, default; NPO-RT), KL(π_ref ‖ π_θ) (``"kl"``) or
nothing (``"none"``; plain NPO). β = 0.1 as in the paper's TOFU runs and open-unlearning.
π_ref(y|x) on the forget set is computed once before the first step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ..data.prompts import model_inputs, to_device
from ..lm_losses import npo_loss, sequence_nll
from .base import MethodResult, UnlearningMethod, param, register_method
from .lm_base import (
    RETAIN_LOSSES,
    LLMMethodConfig,
    LLMUnlearnContext,
    LLMUnlearnData,
    Reference,
    Step,
    retain_term,
    run_unlearning,
)


@dataclass(frozen=True, kw_only=True)
class NPOConfig(LLMMethodConfig):
    epochs: float = param(5.0, "passes over the forget set")
    beta: float = param(0.1, "inverse temperature of the preference loss", "β")
    forget_weight: float = param(1.0, "weight of the NPO term", "γ")
    retain_weight: float = param(1.0, "weight of the retain term", "α")
    retain_loss: Literal["nll", "kl", "none"] = param("nll", "retain term: NLL (NPO-RT), KL (NPO-KL) or none (NPO)")

    def validate(self) -> None:
        self._validate_common()
        self._require(self.beta > 0, "beta", "> 0")
        self._require(self.forget_weight > 0, "forget_weight", "> 0")
        self._require(self.retain_weight >= 0, "retain_weight", ">= 0")
        self._require(self.retain_loss in RETAIN_LOSSES, "retain_loss", f"one of {RETAIN_LOSSES}")


@register_method("npo")
class NPO(UnlearningMethod[NPOConfig]):
    """Negative Preference Optimization with an optional retain term."""

    Config = NPOConfig
    uses = frozenset({"forget", "retain"})
    kind = "llm"
    reference = (
        "Zhang, Lin, Bai, Mei, 'Negative Preference Optimization: From Catastrophic Collapse to "
        "Effective Unlearning', COLM 2024, arXiv:2404.05868"
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
        ref_nll: dict[int, torch.Tensor] = {}

        def reference_likelihoods(net: nn.Module, ref: Reference) -> None:
            fixed = data.forget.loader(cfg.batch_size, loss_on=cfg.loss_on, shuffle=False)
            with torch.no_grad(), ref.model() as m:
                for b in fixed:
                    b = to_device(b, ctx.device)
                    nll, _ = sequence_nll(m(**model_inputs(b)).logits, b["labels"])
                    for row, v in zip(b["index"].tolist(), nll):
                        ref_nll[row] = v.detach()

        def loss(s: Step) -> torch.Tensor:
            nll, _ = sequence_nll(s.net(**model_inputs(s.forget)).logits, s.forget["labels"])
            ref = torch.stack([ref_nll[r] for r in s.forget["index"].tolist()]).to(nll.device)
            out = cfg.forget_weight * npo_loss(nll, ref, cfg.beta)
            if cfg.retain_loss != "none" and cfg.retain_weight > 0:
                out = out + cfg.retain_weight * retain_term(s, cfg.retain_loss)
            return out

        return run_unlearning(
            model,
            cfg,
            ctx,
            loss,
            forget=forget,
            retain=retain,
            before=reference_likelihoods,
            live_reference=cfg.retain_loss == "kl",
        )
