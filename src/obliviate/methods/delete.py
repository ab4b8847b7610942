"""``delete``: Decoupled Distillation to Erase (DELETE; Zhou et al., CVPR 2025, "Decoupled
Distillation to Erase: A General Unlearning Method for Any Class-centric Tasks").

On the forget data only, distil the model towards the original's own prediction with the
sample's class masked out:

    L = KL( softmax(z_orig(x) with z_y := −∞) ‖ softmax(z(x)) ),   batch mean,

so the forgetting term (no mass on y) and the retention term (the original's "dark knowledge"
over the other classes, which keeps their decision boundaries) are both supervised by one soft
target — no retain data is read. Defaults are the authors' CIFAR-10 / ResNet18 setting
(``config/cifar10_resnet18.yaml`` and ``method/delete.py`` of github.com/shaaaaron/DELETE): 20
epochs over the forget set, SGD lr 1e-4 with momentum 0.9, batch 128, batch norm in train mode
(``bn_eval`` = the authors' ``disable_bn``, which they switch on for single-class Tiny-ImageNet).
The paper targets class-centric requests, and so does obliviate (``class_level``: a study skips
it, and says so, on random, sample-id and sub-class requests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Augment
from ..training import Steps
from .base import MethodResult, Range, UnlearnContext, UnlearnData, VisionConfig, VisionMethod, param, register_method

MASKED = -1e10  # the authors' "inf" soft label: the true class's logit before the softmax


@dataclass(frozen=True, kw_only=True)
class DeleteConfig(VisionConfig):
    epochs: float = param(20.0, "passes over the forget set")
    lr: float = param(1e-4, "SGD learning rate (constant)", "η", tune=Range(1e-5, 1e-2, log=True))
    momentum: float = param(0.9, "SGD momentum")
    batch_size: int = param(128, "forget batch size")
    bn_eval: bool = param(False, "keep batch-norm layers in eval mode while distilling (the authors' disable_bn)")
    augment: bool = param(False, "the original's crops and flips on the forget set")

    def validate(self) -> None:
        self._require(self.epochs > 0, "epochs", "> 0")
        self._require(self.lr > 0, "lr", "> 0")
        self._require(self.momentum >= 0, "momentum", ">= 0")
        self._require(self.batch_size >= 1, "batch_size", ">= 1")


def masked_target(teacher_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """softmax of the teacher's logits with each row's label logit set to −1e10."""
    z = teacher_logits.float().clone()
    z[torch.arange(len(labels), device=z.device), labels] = MASKED
    return F.softmax(z, dim=-1)


def _bn_eval(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@register_method("delete")
class Delete(VisionMethod[DeleteConfig]):
    """DELETE: distil the original's prediction with the sample's class masked, on the forget set only."""

    Config = DeleteConfig
    uses = frozenset({"forget"})
    class_level = True
    smoke: ClassVar[dict[str, Any]] = {"epochs": 1.0}
    reference = (
        "Zhou et al., 'Decoupled Distillation to Erase: A General Unlearning Method for Any "
        "Class-centric Tasks', CVPR 2025 (code github.com/shaaaaron/DELETE)"
    )

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        teacher = ctx.frozen_original(model)
        tc = ctx.train_config
        aug = Augment(pad=tc.crop_pad, flip=tc.flip) if cfg.augment else None
        loader = data.forget.loader(
            cfg.batch_size, shuffle=True, augment=aug, seed=ctx.seed, channels_last=ctx.channels_last
        )
        model.to(ctx.device).train()
        if cfg.bn_eval:
            _bn_eval(model)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, momentum=cfg.momentum)
        steps = Steps(
            opt, max(1, round(cfg.epochs * len(loader))), device=ctx.device, bf16=ctx.bf16, progress=ctx.progress
        )
        epoch = 0
        while not steps.done:
            for b in loader:
                if steps.done:
                    break
                x, y = b["image"].to(ctx.device), b["label"].to(ctx.device)
                with torch.no_grad(), steps.autocast():
                    target = masked_target(teacher(x), y)
                with steps.autocast():
                    logp = F.log_softmax(model(x).float(), dim=-1)
                steps.update(F.kl_div(logp, target, reduction="batchmean"), epoch=epoch)
            epoch += 1
        model.eval()
        return MethodResult(model=model, steps=steps.step)
