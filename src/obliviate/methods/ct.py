"""``ct``: transpose every convolution kernel, then fine-tune on the retain set.

Convolution Transpose, a top solution of the NeurIPS 2023 machine unlearning challenge as
re-validated by DeepUnlearn (Cadet et al., "Deep Unlearn: Benchmarking Machine Unlearning for
Image Classification", 2024: one of the methods consistently best on accuracy and time across
10 initialisations). Every square ``Conv2d`` kernel W ∈ ℝ^{C_out×C_in×k×k} becomes Wᵀ (its two
spatial axes swapped): the filters keep their norms and channel structure but stop matching what
they learned, so the network must re-learn its features from the retain set alone — which the
short fine-tune does for what it sees (retain) and not for what it does not (forget).

Defaults are the challenge solution's as DeepUnlearn runs it: 3 epochs of SGD (lr 1e-3,
momentum 0.9, weight decay 5e-4, batch 64) with a cosine schedule. ``retain_samples`` caps the
retain rows trained on (a cost knob; None = all). Non-square kernels are left as they are
(counted in ``info``); 1×1 kernels are unchanged by a transpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from .base import MethodResult, UnlearnContext, UnlearnData, VisionMethod, param, register_method
from .finetune import RetainTuneConfig, retain_finetune


@dataclass(frozen=True, kw_only=True)
class CTConfig(RetainTuneConfig):
    epochs: float = param(3.0, "fine-tuning epochs over the retain set after the transpose")
    schedule: Literal["cosine", "constant", "linear"] = param("cosine", "learning-rate schedule")


@torch.no_grad()
def transpose_kernels(model: nn.Module) -> tuple[int, int]:
    """Swap the spatial axes of every square ``Conv2d`` kernel in place; returns (transposed,
    skipped non-square)."""
    done = skipped = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            kh, kw = m.weight.shape[-2:]
            if kh != kw:
                skipped += 1
                continue
            m.weight.copy_(m.weight.transpose(-1, -2).contiguous())
            done += 1
    return done, skipped


@register_method("ct")
class ConvTranspose(VisionMethod[CTConfig]):
    """Convolution Transpose: transpose every conv kernel, then fine-tune on the retain set."""

    Config = CTConfig
    uses = frozenset({"retain"})
    smoke: ClassVar[dict[str, Any]] = {"epochs": 1.0}
    reference = (
        "NeurIPS 2023 unlearning challenge solution, as re-validated in Cadet et al., 'Deep Unlearn: "
        "Benchmarking Machine Unlearning for Image Classification', 2024"
    )

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        done, skipped = transpose_kernels(model)
        res, rows = retain_finetune(model, data, ctx, cfg, schedule=cfg.schedule)
        return MethodResult(
            model=model,
            steps=res.steps,
            info={"kernels_transposed": done, "kernels_skipped": skipped, "retain_rows": rows},
        )
