"""``relabel`` (LLM): instruction fine-tuning that teaches the new answer on the forget set.

The paper's LLM method (§III.B, §V.A): LoRA fine-tuning (through Unsloth) with a prompt that makes
the model answer "not biased" for statements it had learned to call "biased". Each step takes a
forget batch with the requested answer and a retain batch with the learned one:

``L = NLL(forget, new answer) + λ · NLL(retain, label)``.

For a plain deletion request (no requested answer) the other answer is taught instead, i.e.
random-label unlearning in the sense of Graves et al., "Amnesiac Machine Learning", AAAI 2021.
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
class RelabelConfig(LLMMethodConfig):
    epochs: float = param(10.0, "passes over the forget set")
    retain_weight: float = param(1.0, "weight of the retain NLL in every step (0 = forget set only)", "λ")

    def validate(self) -> None:
        self._validate_common()
        self._require(self.retain_weight >= 0, "retain_weight", ">= 0")


@register_method("relabel")
class Relabel(UnlearningMethod[RelabelConfig]):
    """Teach the requested answer on the forget set, mixed with retain data (the paper's method)."""

    Config = RelabelConfig
    uses = frozenset({"forget", "retain"})
    kind = "llm"
    reference = (
        "paper §III.B and §V.A (LoRA instruction fine-tuning with Unsloth); "
        "Graves et al., 'Amnesiac Machine Learning', AAAI 2021 (relabelling)"
    )
    smoke: ClassVar[dict[str, Any]] = {"epochs": 1.0, "lr": 1e-2, "batch_size": 4, "lora_r": 4}

    def unlearn(self, model: nn.Module, data: LLMUnlearnData, ctx: LLMUnlearnContext) -> MethodResult:
        cfg = self.config
        answer = "target" if data.target_label is not None else "other"
        forget = data.forget.loader(cfg.batch_size, answer=answer, loss_on=cfg.loss_on, seed=ctx.seed)
        retain = (
            data.retain.loader(cfg.batch_size, loss_on=cfg.loss_on, seed=ctx.seed + 1)
            if cfg.retain_weight > 0
            else None
        )

        def loss(s: Step) -> torch.Tensor:
            out = mean_nll(s.net(**model_inputs(s.forget)).logits, s.forget["labels"])
            if s.retain is not None:
                out = out + cfg.retain_weight * mean_nll(s.net(**model_inputs(s.retain)).logits, s.retain["labels"])
            return out

        result = run_unlearning(model, cfg, ctx, loss, forget=forget, retain=retain)
        result.info["taught_answer"] = answer
        return result
