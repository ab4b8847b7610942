"""``rmu`` (LLM): Representation Misdirection for Unlearning (Li et al. 2024, WMDP, arXiv:2403.03218).

At one decoder layer ℓ, push the activations of forget tokens toward a fixed random direction
scaled by c and keep retain activations where the frozen model puts them (their eq. 1–2):

``L = E_forget ‖h_θ^ℓ(x) − c·u‖² + α·E_retain ‖h_θ^ℓ(x) − h_frozen^ℓ(x)‖²``

with ``u`` drawn once from U[0, 1)^d and normalised to unit length. Only layers ℓ−2..ℓ are
updated (WMDP: their MLP down-projections in full mode; here LoRA adapters on ``lora_targets`` of
those layers in LoRA mode, ``full_params`` in full mode). Defaults are the WMDP code's
(c = 20, α = 100, lr = 5e-5, batch 4); ℓ defaults to ⌊7/32 of the depth⌋ (their layer 7 of 32).

Needs the decoder layers' hidden states, so it runs where the model exposes its blocks
(``model.layers``/``transformer.h``; :func:`obliviate.models.causal_lm.decoder_layers`). The steered
positions are those whose output predicts a token selected by ``loss_on`` (``all`` by default:
RMU misdirects the whole text, as in WMDP; ``answer``: only where the judgement is produced).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ..lm_losses import masked_mse
from ..models.causal_lm import decoder_layers
from .base import MethodResult, UnlearningMethod, param, register_method
from .lm_base import (
    LLMMethodConfig,
    LLMUnlearnContext,
    LLMUnlearnData,
    Step,
    forward_hidden,
    run_unlearning,
)


@dataclass(frozen=True, kw_only=True)
class RMUConfig(LLMMethodConfig):
    epochs: float = param(20.0, "passes over the forget set")
    lr: float = param(5e-5, "peak AdamW learning rate", "η")
    batch_size: int = param(4, "statements per forget (and retain) batch")
    loss_on: Literal["answer", "all"] = param("all", "tokens whose activations are steered / kept")
    layer: int | None = param(None, "decoder layer ℓ whose output is steered; None = ⌊7·L/32⌋", "ℓ")
    update_layers: int = param(3, "layers ℓ−k+1..ℓ whose weights are updated", "k")
    steering_coeff: float = param(20.0, "norm of the random target vector", "c")
    retain_weight: float = param(100.0, "weight of the retain activation term", "α")
    full_params: tuple[str, ...] = param(("mlp.down_proj",), "weights updated in full mode (name fragments)")

    def __post_init__(self) -> None:
        if isinstance(self.full_params, (list, str)):
            fp = self.full_params
            object.__setattr__(self, "full_params", (fp,) if isinstance(fp, str) else tuple(fp))
        super().__post_init__()

    def validate(self) -> None:
        self._validate_common()
        self._require(
            self.layer is None
            or (isinstance(self.layer, int) and not isinstance(self.layer, bool) and self.layer >= 0),
            "layer",
            "None or an integer >= 0",
        )
        self._require(
            isinstance(self.update_layers, int) and self.update_layers >= 1, "update_layers", "an integer >= 1"
        )
        self._require(self.steering_coeff > 0, "steering_coeff", "> 0")
        self._require(self.retain_weight >= 0, "retain_weight", ">= 0")
        self._require(len(self.full_params) > 0, "full_params", "a non-empty list of name fragments")


@register_method("rmu")
class RMU(UnlearningMethod[RMUConfig]):
    """Steer forget activations at one layer to a scaled random vector; keep retain activations."""

    Config = RMUConfig
    uses = frozenset({"forget", "retain"})
    kind = "llm"
    reference = (
        "Li et al., 'The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning', "
        "ICML 2024, arXiv:2403.03218 (RMU)"
    )
    smoke: ClassVar[dict[str, Any]] = {"epochs": 1.0, "lr": 1e-3, "batch_size": 4, "lora_r": 4}

    def unlearn(self, model: nn.Module, data: LLMUnlearnData, ctx: LLMUnlearnContext) -> MethodResult:
        cfg = self.config
        n_layers = len(decoder_layers(model))
        layer = (7 * n_layers) // 32 if cfg.layer is None else cfg.layer
        if layer >= n_layers:
            raise ValueError(f"RMUConfig.layer must be < {n_layers} (this model's depth), got {layer}")
        updated = list(range(max(0, layer - cfg.update_layers + 1), layer + 1))
        hidden = int(getattr(getattr(model, "config", None), "hidden_size", 0)) or _width(model, layer)
        u = torch.rand(1, 1, hidden, generator=ctx.generator(1))
        control = (u / u.norm() * cfg.steering_coeff).to(ctx.device)
        forget = data.forget.loader(cfg.batch_size, loss_on=cfg.loss_on, seed=ctx.seed)
        retain = data.retain.loader(cfg.batch_size, loss_on=cfg.loss_on, seed=ctx.seed + 1)

        def select(name: str) -> bool:
            in_layer = any(f".layers.{i}." in name or f".h.{i}." in name for i in updated)
            return in_layer and any(frag in name for frag in cfg.full_params)

        def loss(s: Step) -> torch.Tensor:
            h_f = forward_hidden(s.net, s.forget, layer)
            out = masked_mse(h_f, control.to(h_f.dtype).expand_as(h_f), predicting(s.forget["labels"]))
            if cfg.retain_weight > 0 and s.retain is not None:
                h_r = forward_hidden(s.net, s.retain, layer)
                out = out + cfg.retain_weight * masked_mse(
                    h_r, s.ref.hidden(s.retain, layer), predicting(s.retain["labels"])
                )
            return out

        result = run_unlearning(
            model,
            cfg,
            ctx,
            loss,
            forget=forget,
            retain=retain,
            lora_layers=updated,
            full_params=select,
            live_reference=True,
        )
        result.info.update({"layer": layer, "updated_layers": updated})
        return result


def predicting(labels: torch.Tensor) -> torch.Tensor:
    """Positions whose output predicts a label token (``labels[t+1] != -100``): with
    ``loss_on="answer"`` these are the last prompt token and the answer tokens but EOS."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != -100
    return mask


def _width(model: nn.Module, layer: int) -> int:
    for p in decoder_layers(model)[layer].parameters():
        return int(p.shape[0])
    raise ValueError("cannot infer the hidden size of this model")
