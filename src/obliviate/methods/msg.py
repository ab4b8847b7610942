"""``msg``: re-initialise the convolution weights that matter least to the retain-vs-forget
contrast, damp the others' updates, and fine-tune on the retain set.

A top solution of the NeurIPS 2023 machine unlearning challenge (its 2nd place), as re-validated
by DeepUnlearn (Cadet et al., "Deep Unlearn: Benchmarking Machine Unlearning for Image
Classification", 2024). One gradient pass accumulates

    g = ∇_w [ CE(retain sample) − CE(forget) ]

over the forget set and a random retain sample of the same size. In every ``Conv2d`` the fraction
ρ (``init_rate``) of weights with the smallest |g| is re-initialised (Kaiming normal, fan-out, as
the reference) and the rest keep their values; during the fine-tune on the retain set the
re-initialised weights take full gradient steps and the others ``damp``·gradient — the network
rebuilds the weights it had to spend little on, while what the retain set relies on moves slowly.

Defaults are the solution's as DeepUnlearn runs it: ρ = 0.3, damp 0.1, 5 epochs of SGD (lr 1e-3,
momentum 0.9, weight decay 5e-4, batch 64) under a triangular schedule peaking half way (the
reference steps it per epoch; here per step). One deliberate difference: the gradient pass runs
with the model in eval mode, so it does not rewrite batch-norm statistics before the fine-tune
(the reference leaves the model in whatever mode it is in). ``retain_samples`` caps the retain rows
fine-tuned on (a cost knob; None = all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .base import MethodResult, Range, UnlearnContext, UnlearnData, VisionMethod, param, register_method
from .finetune import RetainTuneConfig, retain_finetune


@dataclass(frozen=True, kw_only=True)
class MSGConfig(RetainTuneConfig):
    init_rate: float = param(
        0.3, "fraction of each conv layer's weights re-initialised (smallest |g|)", "ρ", tune=Range(0.05, 0.6)
    )
    damp: float = param(
        0.1, "gradient multiplier of the weights that are kept during the fine-tune", tune=Range(0.01, 1.0, log=True)
    )
    epochs: float = param(5.0, "fine-tuning epochs over the retain set")

    def validate(self) -> None:
        super().validate()
        self._require(0.0 < self.init_rate < 1.0, "init_rate", "in (0, 1)")
        self._require(0.0 <= self.damp <= 1.0, "damp", "in [0, 1]")


def contrast_gradients(model: nn.Module, retain_batches: Any, forget_batches: Any, device: torch.device) -> None:
    """Accumulate ∇[CE(retain) − CE(forget)] (batch means, summed over batches) into ``.grad``,
    in eval mode (no batch-norm statistic changes)."""
    was = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    for batches, sign in ((retain_batches, 1.0), (forget_batches, -1.0)):
        for b in batches:
            out = model(b["image"].to(device))
            (sign * F.cross_entropy(out.float(), b["label"].to(device))).backward()
    model.train(was)


@torch.no_grad()
def reinit_small_gradients(
    model: nn.Module, rate: float, damp: float, generator: torch.Generator
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per ``Conv2d``: re-initialise the ``rate`` fraction of weights with the smallest |grad|
    (Kaiming normal, fan-out); returns (weight, gradient multiplier) pairs: 1 on the re-initialised
    weights, ``damp`` elsewhere. Clears the gradients."""
    masks = []
    for m in model.modules():
        if not isinstance(m, nn.Conv2d) or m.weight.grad is None or not m.weight.requires_grad:
            continue
        w, g = m.weight, m.weight.grad
        k = round(rate * w.numel())
        if k == 0:
            continue
        chosen = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
        chosen[torch.topk(-g.abs().flatten().float(), k).indices] = True
        chosen = chosen.view_as(w)
        fresh = torch.empty(w.shape, dtype=torch.float32)
        fan_out = w.shape[0] * w[0, 0].numel()
        fresh.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=generator)  # kaiming_normal_, fan_out, relu
        w[chosen] = fresh.to(w.device, w.dtype)[chosen]
        multiplier = torch.full_like(w, damp)
        multiplier[chosen] = 1.0
        masks.append((w, multiplier))
    model.zero_grad(set_to_none=True)
    return masks


@register_method("msg")
class MaskSmallGradients(VisionMethod[MSGConfig]):
    """Re-initialise the conv weights with the smallest retain-vs-forget gradient, damp the rest, fine-tune."""

    Config = MSGConfig
    uses = frozenset({"forget", "retain"})
    smoke: ClassVar[dict[str, Any]] = {"epochs": 1.0}
    reference = (
        "NeurIPS 2023 unlearning challenge, 2nd place, as re-validated in Cadet et al., 'Deep Unlearn: "
        "Benchmarking Machine Unlearning for Image Classification', 2024"
    )

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        forget, retain = data.forget, data.retain
        model.to(ctx.device)
        sample = ctx.subset(len(retain), len(forget), offset=2)  # a retain sample the forget set's size
        contrast_gradients(
            model,
            retain.loader(cfg.batch_size, shuffle=False, rows=sample, channels_last=ctx.channels_last),
            forget.loader(cfg.batch_size, shuffle=False, channels_last=ctx.channels_last),
            ctx.device,
        )
        masks = reinit_small_gradients(model, cfg.init_rate, cfg.damp, ctx.generator(3))

        def damp_kept(_model: nn.Module) -> None:
            for w, mult in masks:
                if w.grad is not None:
                    w.grad.mul_(mult)

        res, rows = retain_finetune(
            model,
            data,
            ctx,
            cfg,
            after_backward=damp_kept,
            schedule="triangle",
            warmup_frac=0.5,
            start_factor=0.0,
            end_factor=0.0,
        )
        n = sum(int((mult == 1.0).sum()) for _, mult in masks)
        total = sum(mult.numel() for _, mult in masks)
        return MethodResult(
            model=model,
            steps=res.steps,
            info={
                "conv_layers": len(masks),
                "reinitialised_fraction": n / total if total else 0.0,
                "retain_rows": rows,
            },
        )
