"""``unsir``: error-maximising noise, then impair and repair (class-level unlearning).

UNSIR (Tarun, Chundawat, Mandal & Kankanhalli, "Fast Yet Effective Machine Unlearning",
IEEE TNNLS 2023, arXiv:2111.08947; code ``vikram2000b/Fast-Machine-Unlearning``,
``Machine Unlearning.ipynb``). Three stages:

1. **Noise.** For each forgotten class c, a batch of ``noise_batch_size`` noise images N_c (in the
   model's normalised input space, initialised N(0, 1)) is optimised with Adam to *maximise* the
   model's error on label c, with an ℓ2 penalty that keeps the noise small:
   ``min_N  −CE(f(N), c) + λ · mean_i ‖N_i‖²``.
2. **Impair.** ``impair_epochs`` epochs of Adam at a high rate (``impair_lr``) on the noise — each noise batch
   repeated ``noise_copies`` times, labelled c — shuffled with a class-balanced retain subset of at
   most ``retain_per_class`` images per class.
3. **Repair.** ``repair_epochs`` epochs of Adam at a lower rate (``repair_lr``) on the retain subset alone.

Defaults are the notebook's: noise batch 256, Adam lr 0.1, 5 × 8 = 40 noise steps, λ = 0.1,
20 copies, 1,000 retain images per class, batch 256, impair Adam lr 0.02, repair Adam lr 0.01,
one epoch each, no augmentation. On CIFAR-10 the noise is then about a third of the impair set
(5,120 noise vs 9,000 retain images per forgotten class); with far fewer retain images per class
(e.g. the 121 of sklearn's digits) the noise dominates and the model collapses, so scale
``noise_batch_size`` × ``noise_copies`` down to keep that share (and add repair epochs so repair
takes a few dozen steps, as on CIFAR-10).

It reads the forgotten class ids (``data.forget_classes``, which reveal no sample) and the retain
split only, never the forget split. Differences from the notebook, both to follow the paper: the
noise of class c is labelled c (the notebook labels every noise batch 0, which coincides with the
paper only when class 0 is the single forgotten class), and the noise is learned with the model in
eval mode (the notebook's freshly built model sits in train mode, so noise batches would also
overwrite its batch-norm running statistics). The retain subset is drawn at random with the run's
seed rather than taking the first images of each class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data import ForgetRequestError, normalise
from ..training import Steps
from ..utils import autocast_context
from .base import MethodResult, Range, UnlearnContext, UnlearnData, VisionConfig, VisionMethod, param, register_method


@dataclass(frozen=True, kw_only=True)
class UNSIRConfig(VisionConfig):
    noise_batch_size: int = param(256, "noise images learned per forgotten class", "|N|")
    noise_steps: int = param(40, "Adam steps on the noise (the notebook: 5 epochs × 8 steps)")
    noise_lr: float = param(0.1, "Adam learning rate for the noise")
    noise_lambda: float = param(0.1, "weight of the noise's mean squared ℓ2 norm in the noise loss", "λ")
    noise_copies: int = param(20, "times each noise batch is repeated in the impair set")
    retain_per_class: int = param(1000, "retain images per class used by impair and repair")
    batch_size: int = param(256, "batch size of impair and repair")
    impair_epochs: int = param(1, "epochs of the impair step")
    impair_lr: float = param(0.02, "Adam learning rate of the impair step (high)", tune=Range(1e-3, 0.1, log=True))
    repair_epochs: int = param(1, "epochs of the repair step")
    repair_lr: float = param(0.01, "Adam learning rate of the repair step (lower)", tune=Range(1e-3, 0.1, log=True))

    def validate(self) -> None:
        self._require(self.noise_batch_size >= 1, "noise_batch_size", ">= 1")
        self._require(self.noise_steps >= 0, "noise_steps", ">= 0")
        self._require(self.noise_lr > 0, "noise_lr", "> 0")
        self._require(self.noise_lambda >= 0, "noise_lambda", ">= 0")
        self._require(self.noise_copies >= 1, "noise_copies", ">= 1")
        self._require(self.retain_per_class >= 1, "retain_per_class", ">= 1")
        self._require(self.batch_size >= 1, "batch_size", ">= 1")
        self._require(self.impair_epochs >= 1, "impair_epochs", ">= 1")
        self._require(self.impair_lr > 0, "impair_lr", "> 0")
        self._require(self.repair_epochs >= 0, "repair_epochs", ">= 0")
        self._require(self.repair_lr > 0, "repair_lr", "> 0")


def _learn_noise(
    model: nn.Module, cls: int, shape: tuple[int, ...], cfg: UNSIRConfig, ctx: UnlearnContext, offset: int
) -> torch.Tensor:
    """Noise that maximises the model's cross-entropy on label ``cls`` (stage 1)."""
    noise = torch.randn(cfg.noise_batch_size, *shape, generator=ctx.generator(offset)).to(ctx.device)
    noise.requires_grad_(True)
    opt = torch.optim.Adam([noise], lr=cfg.noise_lr)
    target = torch.full((cfg.noise_batch_size,), cls, dtype=torch.long, device=ctx.device)
    model.eval()
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:  # gradients flow to the input only
        p.requires_grad_(False)
    try:
        for _ in range(cfg.noise_steps):
            with autocast_context(ctx.device, ctx.bf16):
                ce = F.cross_entropy(model(noise), target)
            loss = -ce.float() + cfg.noise_lambda * noise.square().flatten(1).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        for p in trainable:
            p.requires_grad_(True)
    return noise.detach()


def _retain_subset(labels: torch.Tensor, per_class: int, generator: torch.Generator) -> torch.Tensor:
    """At most ``per_class`` random rows of each class present in ``labels`` (sorted)."""
    y = labels.cpu()
    picked = []
    for c in torch.unique(y).tolist():
        rows = (y == c).nonzero().flatten()
        picked.append(rows[torch.randperm(len(rows), generator=generator)[:per_class]])
    return torch.cat(picked).sort().values


@register_method("unsir")
class UNSIR(VisionMethod[UNSIRConfig]):
    """UNSIR: learn error-maximising noise for the forgotten classes, impair with it, repair on retain data."""

    Config = UNSIRConfig
    uses = frozenset({"retain"})
    class_level = True  # noise is learnt per forgotten class
    reference = (
        "Tarun, Chundawat, Mandal & Kankanhalli, 'Fast Yet Effective Machine Unlearning', "
        "IEEE TNNLS 2023, arXiv:2111.08947 (code github.com/vikram2000b/Fast-Machine-Unlearning)"
    )
    smoke: ClassVar[dict[str, Any]] = {
        "noise_batch_size": 32,
        "noise_steps": 5,
        "noise_copies": 2,
        "retain_per_class": 32,
    }

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        classes = tuple(data.forget_classes)
        if not classes:
            raise ForgetRequestError(
                "unsir forgets whole classes; this request forgets individual samples (a random, sample-id "
                "or sub-class request, so data.forget_classes is empty). Use a class request, or a "
                "sample-level method such as neggrad_plus, random_label or instance_wise."
            )
        retain = data.retain
        model.to(ctx.device)
        mean = torch.tensor(data.mean, device=ctx.device).view(1, -1, 1, 1)
        std = torch.tensor(data.std, device=ctx.device).view(1, -1, 1, 1)
        shape = tuple(retain.images.shape[1:])
        noises = [_learn_noise(model, c, shape, cfg, ctx, offset=10 + i) for i, c in enumerate(classes)]
        noise_x = torch.cat(noises)
        noise_y = torch.cat([torch.full((len(n),), c, dtype=torch.long) for n, c in zip(noises, classes)])
        noise_x = noise_x.repeat(cfg.noise_copies, *([1] * len(shape)))
        noise_y = noise_y.repeat(cfg.noise_copies).to(ctx.device)
        sub = _retain_subset(retain.labels, cfg.retain_per_class, ctx.generator(offset=1))

        def retain_batch(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            idx = sub[rows].to(retain.images.device)
            x = normalise(retain.images.index_select(0, idx).to(ctx.device), mean, std)
            return x, retain.labels.index_select(0, idx).to(ctx.device)

        n_noise = len(noise_y)
        # Impair: positions [0, n_noise) are noise images, the rest index the retain subset.
        stages = [
            (
                cfg.impair_epochs,
                cfg.impair_lr,
                n_noise + len(sub),
                lambda pos: _mix(pos, n_noise, noise_x, noise_y, retain_batch),
            ),
            (cfg.repair_epochs, cfg.repair_lr, len(sub), retain_batch),
        ]
        total = sum(e * -(-n // cfg.batch_size) for e, _, n, _ in stages)
        steps = Steps(None, total, device=ctx.device, bf16=ctx.bf16, progress=ctx.progress)
        for stage, (epochs, lr, n, fetch) in enumerate(stages):
            if epochs == 0:
                continue
            steps.opt = torch.optim.Adam(model.parameters(), lr=lr)  # a fresh optimizer per stage
            gen = ctx.generator(offset=2 + stage)
            model.train()
            for epoch in range(epochs):
                order = torch.randperm(n, generator=gen)
                for start in range(0, n, cfg.batch_size):
                    x, y = fetch(order[start : start + cfg.batch_size])
                    with steps.autocast():
                        loss = F.cross_entropy(model(x), y)
                    steps.update(loss, epoch=epoch)
        model.eval()
        return MethodResult(
            model=model,
            steps=steps.step,
            info={"noise_images": n_noise, "retain_images": len(sub), "classes": list(classes)},
        )


_XY = tuple[torch.Tensor, torch.Tensor]


def _mix(
    pos: torch.Tensor,
    n_noise: int,
    noise_x: torch.Tensor,
    noise_y: torch.Tensor,
    retain_batch: Callable[[torch.Tensor], _XY],
) -> _XY:
    """A batch from positions over [noise images | retain subset] (stage 2's shuffled union)."""
    is_noise = pos < n_noise
    xs, ys = [], []
    if bool(is_noise.any()):
        p = pos[is_noise].to(noise_x.device)
        xs.append(noise_x.index_select(0, p))
        ys.append(noise_y.index_select(0, p.to(noise_y.device)))
    if bool((~is_noise).any()):
        x, y = retain_batch(pos[~is_noise] - n_noise)
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)
