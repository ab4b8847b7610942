"""``grad_ascent`` (LLM): maximise the NLL of the learned answers on the forget set.

``L = −NLL(forget)``: the simplest LLM unlearning baseline (Jang et al., "Knowledge Unlearning
for Mitigating Privacy Risks in Language Models", ACL 2023; the "GA" baseline of TOFU, Maini et
al. 2024). Unbounded below: it collapses the model if run too long, which is what NPO fixes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..data.prompts import model_inputs
from ..lm_losses import mean_nll
from .base import MethodResult, UnlearningMethod, param, register_method
from .lm_base import LLMMethodConfig, LLMUnlearnContext, LLMUnlearnData, Step, run_unlearning


@dataclass(frozen=True, kw_only=True)
class GradAscentConfig(LLMMethodConfig):
    epochs: float = param(5.0, "passes over the forget set")


@register_method("grad_ascent")
class GradAscent(UnlearningMethod[GradAscentConfig]):
    """Gradient ascent on the forget set's answers."""

    Config = GradAscentConfig
    uses = frozenset({"forget"})
    kind = "llm"
    reference = "Jang et al., 'Knowledge Unlearning for Mitigating Privacy Risks in Language Models', ACL 2023"
    smoke: ClassVar[dict[str, Any]] = {"epochs": 1.0, "lr": 1e-3, "batch_size": 4, "lora_r": 4}

    def unlearn(self, model: nn.Module, data: LLMUnlearnData, ctx: LLMUnlearnContext) -> MethodResult:
        cfg = self.config
        forget = data.forget.loader(cfg.batch_size, loss_on=cfg.loss_on, seed=ctx.seed)

        def loss(s: Step) -> torch.Tensor:
            return -mean_nll(s.net(**model_inputs(s.forget)).logits, s.forget["labels"])

        return run_unlearning(model, cfg, ctx, loss, forget=forget)
