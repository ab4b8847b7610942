"""``salun``: Saliency Unlearning (Fan et al., ICLR 2024, arXiv:2310.12508).

Two stages, following the paper and the authors' classification code
(``OPTML-Group/Unlearn-Saliency``, ``Classification/generate_mask.py`` and ``unlearn/RL.py``):

1. **Weight saliency map** ``m_S``: the gradient of the forget loss at the original weights,
   ``g = ∇_θ ℓ_f(θ_o; D_f)``, accumulated over the whole forget set with the model in ``eval()``
   mode; the ``saliency_ratio`` fraction of entries with the largest ``|g|``, ranked globally over
   all parameters, are salient (``m_S = 1``). The paper's threshold ``γ`` is that quantile: 0.5
   (the median, the authors' ``with_0.5.pt`` mask) for classification.
2. **Random-label unlearning restricted to salient weights**: each epoch the model is trained with
   cross-entropy on the forget set with random labels ``y' ≠ y`` and on the retain set with true
   labels, updating only ``m_S ⊙ θ``. By default the forget batches come first and then the
   retain batches (the authors' CIFAR-10/SVHN path, which they confirm is intended in
   github.com/OPTML-Group/Unlearn-Saliency/issues/21); ``order="mixed"`` shuffles relabelled forget
   rows and retain rows together (their CIFAR-100/TinyImageNet path).

Frozen weights (``m_S = 0``) are bit-for-bit unchanged: after every optimizer step they are
copied back from the original and their momentum is cleared, so neither weight decay nor momentum
can move them (multiplying the gradient by the mask alone is not enough: weight decay and an
existing momentum buffer still update masked entries; the authors' code fixed this in 2026,
commit a6e89fd "Fix weight decay"). Batch-norm running statistics are buffers, not weights, and
are updated by the training batches as in the reference.

Defaults: 10 epochs at a constant lr 0.013 (README, CIFAR-10 example; the MultiStep milestones
91,136 of ``arg_parser.py`` are never reached), SGD momentum 0.9, weight decay 5e-4, batch size
256 (``arg_parser.py``), a 50 % mask, crop + flip augmentation (their training transforms).

Differences from the reference: the saliency pass uses un-augmented forget images in row order
and sums per-sample gradients, so the map is deterministic (the reference sums batch-mean
gradients of augmented, shuffled batches); random labels follow the paper's ``y' ≠ y``, while
the reference's CIFAR-10 path draws uniformly over all classes (``random_label="any"``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
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
class SalUnConfig(VisionConfig):
    epochs: int = param(10, "unlearning epochs (one pass over forget and retain sets each)")
    lr: float = param(0.013, "SGD learning rate (constant)", "η", tune=Range(1e-3, 0.1, log=True))
    momentum: float = param(0.9, "SGD momentum")
    weight_decay: float = param(5e-4, "weight decay (never applied to frozen weights)")
    batch_size: int = param(256, "batch size of the forget and retain loaders")
    saliency_ratio: float = param(
        0.5, "fraction of weights marked salient (largest |∇θ ℓ_f|); the rest are frozen", "γ", tune=Range(0.1, 0.9)
    )
    order: Literal["sequential", "mixed"] = param(
        "sequential", "'sequential': forget batches, then retain batches; 'mixed': shuffled together"
    )
    random_label: Literal["other", "any"] = param(
        "other", "random labels for forget samples: another class, or any class", "y'"
    )
    augment: bool = param(True, "random crop + flip (the original's geometry) on training batches")
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
        self._require(0 < self.saliency_ratio <= 1, "saliency_ratio", "in (0, 1]")
        self._require(self.order in ("sequential", "mixed"), "order", "'sequential' or 'mixed'")
        self._require(self.random_label in ("other", "any"), "random_label", "'other' or 'any'")
        self._require(self.retain_samples is None or self.retain_samples >= 1, "retain_samples", ">= 1 or None")


def forget_gradient_magnitude(model: nn.Module, loader: BatchLoader, device: torch.device) -> dict[str, torch.Tensor]:
    """``|Σ_i ∇_θ CE(x_i, y_i)|`` over the forget set, per parameter (float64), model in eval mode."""
    model.eval()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    total = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in named}
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    for batch in loader:
        model.zero_grad(set_to_none=True)
        loss_fn(model(batch["image"].to(device)), batch["label"].to(device)).backward()
        for n, p in named:
            if p.grad is not None:
                total[n] += p.grad.detach().to(torch.float64)
    model.zero_grad(set_to_none=True)
    return {n: t.abs() for n, t in total.items()}


def saliency_mask(magnitude: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """Boolean masks marking the ``ratio`` fraction of entries with the largest magnitude, ranked
    over all tensors together (ties broken by position, so the count is exact)."""
    flat = torch.cat([m.flatten() for m in magnitude.values()])
    k = int(len(flat) * ratio)
    keep = torch.zeros(len(flat), dtype=torch.bool, device=flat.device)
    keep[torch.argsort(flat, descending=True, stable=True)[:k]] = True
    masks, start = {}, 0
    for name, m in magnitude.items():
        masks[name] = keep[start : start + m.numel()].view_as(m)
        start += m.numel()
    return masks


class MaskedSGD:
    """SGD with momentum and weight decay that leaves masked-out entries bit-for-bit unchanged.

    The stock optimizer step runs on all entries; then frozen entries are copied back from the
    snapshot taken at construction and their momentum is zeroed.
    """

    def __init__(
        self,
        model: nn.Module,
        masks: dict[str, torch.Tensor],
        lr: float,
        momentum: float,
        weight_decay: float,
    ) -> None:
        self.params = [(p, masks[n].to(p.device)) for n, p in model.named_parameters() if n in masks]
        self.frozen = [p.detach().clone() for p, _ in self.params]
        self.opt = torch.optim.SGD([p for p, _ in self.params], lr=lr, momentum=momentum, weight_decay=weight_decay)

    def step(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for p, m in self.params:
                if p.grad is not None:
                    p.grad.mul_(m)
        self.opt.step()
        with torch.no_grad():
            for (p, m), p0 in zip(self.params, self.frozen):
                p.copy_(torch.where(m, p, p0))
                buf = self.opt.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    buf.mul_(m)


@register_method("salun")
class SalUn(VisionMethod[SalUnConfig]):
    """SalUn: random-label unlearning confined to the weights most salient for the forget loss."""

    Config = SalUnConfig
    uses = frozenset({"forget", "retain"})
    reference = (
        "Fan et al., 'SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both "
        "Image Classification and Generation', ICLR 2024, arXiv:2310.12508 "
        "(code: github.com/OPTML-Group/Unlearn-Saliency)"
    )
    smoke = {"epochs": 1}

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        device = ctx.device
        model.to(device)
        forget, retain = data.forget, data.retain
        magnitude = forget_gradient_magnitude(model, forget.loader(cfg.batch_size, shuffle=False), device)
        masks = saliency_mask(magnitude, cfg.saliency_ratio)
        opt = MaskedSGD(model, masks, cfg.lr, cfg.momentum, cfg.weight_decay)

        tc = ctx.train_config
        aug = Augment(pad=tc.crop_pad, flip=tc.flip) if cfg.augment else None
        gen = ctx.generator(2)
        k, any_class = data.num_classes, cfg.random_label == "any"
        loss_fn = nn.CrossEntropyLoss()
        keep = ctx.subset(len(retain), cfg.retain_samples, offset=3)  # retain rows trained on (None: all)

        if cfg.order == "sequential":
            f_loader = forget.loader(cfg.batch_size, shuffle=True, augment=aug, seed=ctx.seed)
            r_loader = retain.loader(cfg.batch_size, shuffle=True, augment=aug, seed=ctx.seed + 1, rows=keep)
            per_epoch = len(f_loader) + len(r_loader)

            def epoch_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
                for b in f_loader:
                    yield b["image"], random_other_labels(b["label"], k, gen, any_class=any_class)
                for b in r_loader:
                    yield b["image"], b["label"]
        else:
            n_f = len(forget)  # rows [0, n_f) of the joint tensors are forget rows
            r_x, r_y = (
                (retain.images, retain.labels)
                if keep is None
                else (retain.images[keep.to(retain.images.device)], retain.labels[keep.to(retain.labels.device)])
            )
            loader = BatchLoader(
                torch.cat([forget.images, r_x]),
                torch.cat([forget.labels, r_y]),
                mean=forget.mean,
                std=forget.std,
                batch_size=cfg.batch_size,
                shuffle=True,
                augment=aug,
                seed=ctx.seed,
            )
            per_epoch = len(loader)

            def epoch_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
                for b in loader:
                    y = b["label"]
                    yield (
                        b["image"],
                        torch.where(b["index"] < n_f, random_other_labels(y, k, gen, any_class=any_class), y),
                    )

        steps = Steps(None, cfg.epochs * per_epoch, device=device, bf16=ctx.bf16, progress=ctx.progress)
        model.train()
        for epoch in range(cfg.epochs):
            for x, y in epoch_batches():
                with steps.autocast():
                    loss = loss_fn(model(x.to(device)), y.to(device))
                steps.update(loss, backward=opt.step, epoch=epoch)  # the masked SGD does its own step
        model.eval()
        salient = sum(int(m.sum()) for m in masks.values())
        total = sum(m.numel() for m in masks.values())
        return MethodResult(
            model=model, steps=steps.step, info={"salient": salient, "salient_fraction": salient / max(total, 1)}
        )
