"""``random_label``: fine-tune on the forget set relabelled with random wrong classes, plus the retain set.

Amnesiac-style relabelling (Graves, Nagisetti & Ganesh, "Amnesiac Machine Learning", AAAI 2021),
as run by the "RL" baseline of SalUn (Fan et al., ICLR 2024; code ``OPTML-Group/Unlearn-Saliency``,
``Classification/unlearn/RL.py``). Each epoch (their CIFAR-10 path) first takes every forget batch
with freshly drawn random labels, then every retain batch with its true labels; ``order="mixed"``
instead shuffles forget and retain rows into the same batches (their CIFAR-100 path).

Defaults come from SalUn's code: ``SGD(momentum=0.9, weight_decay=5e-4)``, ``unlearn_lr = 0.01``
and ``unlearn_epochs = 10`` (``arg_parser.py`` defaults), batch size 256, a constant rate (their
``MultiStepLR`` milestones 91/136 are never reached in 10 epochs), training augmentation on.

One deliberate difference: SalUn draws labels uniformly from all classes, so a forget sample can be
"relabelled" with its own class. Here a random label y' is drawn uniformly from the classes other
than the sample's own label and, for class requests, other than every forgotten class, so the
model is never trained to predict a class it must forget (the Amnesiac paper's intent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Augment, BatchLoader
from ..training import Steps
from .base import (
    MethodResult,
    Range,
    UnlearnContext,
    UnlearnData,
    VisionConfig,
    VisionMethod,
    param,
    random_other_labels,
    register_method,
)


@dataclass(frozen=True, kw_only=True)
class RandomLabelConfig(VisionConfig):
    epochs: int = param(10, "epochs; each epoch visits every forget and every retain sample once")
    lr: float = param(0.01, "SGD learning rate (constant)", "η", tune=Range(1e-3, 0.1, log=True))
    momentum: float = param(0.9, "SGD momentum")
    weight_decay: float = param(5e-4, "SGD weight decay")
    batch_size: int = param(256, "batch size (forget and retain)")
    order: Literal["forget_first", "mixed"] = param(
        "forget_first",
        "'forget_first': all relabelled forget batches, then all retain batches, per "
        "epoch (SalUn CIFAR-10 path); 'mixed': both shuffled into shared batches",
    )
    augment: bool = param(True, "random crop + flip (the original's geometry)")
    retain_samples: int | None = param(
        None,
        "retain samples visited per epoch (a seeded random subset, the same every epoch); None = all, as the reference",
    )

    def validate(self) -> None:
        self._require(self.epochs >= 1, "epochs", ">= 1")
        self._require(self.lr > 0, "lr", "> 0")
        self._require(self.momentum >= 0, "momentum", ">= 0")
        self._require(self.weight_decay >= 0, "weight_decay", ">= 0")
        self._require(self.batch_size >= 1, "batch_size", ">= 1")
        self._require(self.order in ("forget_first", "mixed"), "order", "'forget_first' or 'mixed'")
        self._require(self.retain_samples is None or self.retain_samples >= 1, "retain_samples", ">= 1 or None")


@register_method("random_label")
class RandomLabel(VisionMethod[RandomLabelConfig]):
    """Random labelling: forget samples get random wrong labels, retain samples keep theirs."""

    Config = RandomLabelConfig
    uses = frozenset({"forget", "retain"})
    reference = (
        "Graves, Nagisetti & Ganesh, 'Amnesiac Machine Learning', AAAI 2021; as the RL baseline "
        "of Fan et al., 'SalUn', ICLR 2024 (code github.com/OPTML-Group/Unlearn-Saliency, unlearn/RL.py)"
    )
    smoke: ClassVar[dict[str, Any]] = {"epochs": 1}

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        forget, retain = data.forget, data.retain
        excluded = tuple(data.forget_classes)
        left = data.num_classes - (len(set(excluded)) if excluded else 1)
        if left < 1:
            raise ValueError(
                f"random_label needs a class to relabel with: {data.num_classes} classes, forgetting {list(excluded)}"
            )
        # One table of forget rows then retain rows; a batch's "index" tells which rows are forget rows.
        retain_x, retain_y = retain.images, retain.labels
        keep = ctx.subset(len(retain), cfg.retain_samples, offset=3)
        if keep is not None:  # a cheaper epoch
            retain_x, retain_y = retain_x[keep.to(retain_x.device)], retain_y[keep.to(retain_y.device)]
        images = torch.cat([forget.images, retain_x])
        labels = torch.cat([forget.labels, retain_y])
        n_forget = len(forget)
        tc = ctx.train_config
        aug = Augment(pad=tc.crop_pad, flip=tc.flip) if cfg.augment else None

        def loader(rows: torch.Tensor, seed: int) -> BatchLoader:
            return BatchLoader(
                images,
                labels,
                mean=data.mean,
                std=data.std,
                rows=rows,
                batch_size=cfg.batch_size,
                shuffle=True,
                augment=aug,
                seed=seed,
                channels_last=ctx.channels_last,
            )

        n = len(labels)
        if cfg.order == "mixed":
            passes = [loader(torch.arange(n), ctx.seed)]
        else:
            passes = [loader(torch.arange(n_forget), ctx.seed), loader(torch.arange(n_forget, n), ctx.seed + 1)]
        gen = ctx.generator(offset=1)
        model.to(ctx.device).train()
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        steps = Steps(
            opt, cfg.epochs * sum(len(p) for p in passes), device=ctx.device, bf16=ctx.bf16, progress=ctx.progress
        )
        for epoch in range(cfg.epochs):
            for part in passes:
                for batch in part:
                    x, y = batch["image"].to(ctx.device), batch["label"].to(ctx.device)
                    is_forget = (batch["index"] < n_forget).to(ctx.device)
                    if bool(is_forget.any()):
                        y = y.clone()
                        y[is_forget] = random_other_labels(y[is_forget], data.num_classes, gen, excluded=excluded)
                    with steps.autocast():
                        loss = F.cross_entropy(model(x), y)
                    steps.update(loss, epoch=epoch)
        model.eval()
        return MethodResult(model=model, steps=steps.step)
