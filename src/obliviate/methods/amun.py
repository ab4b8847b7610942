"""``amun``: Adversarial Machine UNlearning (Ebrahimpour-Boroojeny, Sundaram & Chandrasekaran,
"Not All Wrong is Bad: Using Adversarial Examples for Unlearning", ICML 2025, arXiv:2503.00917).

A model retrained without a sample is less confident on it than the original, as on any unseen
sample. AMUN lowers that confidence locally: for every forget sample ``x`` it finds the adversarial
example ``x_adv`` closest to it (an ℓ2 PGD attack with radius ``ε``, ``ε`` doubled until the
prediction changes), labels it with the model's own (wrong) prediction ``y_adv = f(x_adv)``, and
fine-tunes the model on ``D_A = {(x_adv, y_adv)}`` together with the forget samples under their
own labels ``D_F`` (``include_forget``) and, when the retain set may be read, ``D_R``. The decision
boundary moves only near each forget sample, so test accuracy is kept.

From the paper: the closest adversarial example by PGD with 50 steps (``attack_steps``), its
radius doubled per sample until the prediction changes, labelled by the original model, and the
fine-tuning on those examples (with ``D_R`` when available). Where this implementation could not
read the authors' code or appendix, it takes SalUn's protocol, the benchmark AMUN reports
against, for the fine-tuning (SGD, momentum 0.9, weight decay 5e-4, constant lr 0.01, 10 epochs,
batch size 256), and its own attack settings: ``eps_init`` = 0.0625 and a PGD step of
``2.5·ε / steps`` (Madry et al.'s rule), in ℓ2 over pixels in [0, 1] (the attack works on pixels
and clamps to the image range; a user's float inputs are attacked as they are, unclamped).
Adversarial and forget rows are not augmented (a crop would undo the perturbation); retain rows
are, as the original was trained.

AMUN forgets samples: a class request has no unseen counterpart near its samples to imitate, and
its ``D_F`` would re-teach the class, so it is refused (use ``ssd`` or ``salun``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..core import ConfigError
from ..data import Augment
from ..data.loader import augment_batch, normalise
from ..training import Steps
from .adversarial import l2_pgd
from .base import (
    MethodResult,
    Range,
    UnlearnContext,
    UnlearnData,
    VisionConfig,
    VisionMethod,
    param,
    register_method,
)


@dataclass(frozen=True, kw_only=True)
class AMUNConfig(VisionConfig):
    epochs: int = param(10, "fine-tuning epochs over D_A ∪ D_F (∪ D_R)")
    lr: float = param(0.01, "SGD learning rate (constant)", "η", tune=Range(1e-3, 0.1, log=True))
    momentum: float = param(0.9, "SGD momentum")
    weight_decay: float = param(5e-4, "SGD weight decay")
    batch_size: int = param(256, "batch size")
    use_retain: bool = param(True, "fine-tune on the retain set too (the paper's setting with D_R available)")
    include_forget: bool = param(True, "fine-tune on the forget rows under their own labels beside D_A")
    attack_steps: int = param(50, "PGD steps per attack radius (the paper's PGD-50)")
    eps_init: float = param(
        0.0625, "first ℓ2 attack radius (pixels in [0, 1]); doubled per sample until misclassified", "ε₀"
    )
    max_doublings: int = param(10, "doublings of ε before a sample's last attempt is taken as it is")
    augment: bool = param(True, "random crop + flip on retain rows (never on adversarial or forget rows)")
    retain_samples: int | None = param(
        None,
        "retain samples visited per epoch (a seeded random subset, the same every epoch); None = all",
    )

    def validate(self) -> None:
        self._require(self.epochs >= 1, "epochs", ">= 1")
        self._require(self.lr > 0, "lr", "> 0")
        self._require(self.momentum >= 0, "momentum", ">= 0")
        self._require(self.weight_decay >= 0, "weight_decay", ">= 0")
        self._require(self.batch_size >= 1, "batch_size", ">= 1")
        self._require(self.attack_steps >= 1, "attack_steps", ">= 1")
        self._require(self.eps_init > 0, "eps_init", "> 0")
        self._require(self.max_doublings >= 0, "max_doublings", ">= 0")
        self._require(self.retain_samples is None or self.retain_samples >= 1, "retain_samples", ">= 1 or None")


def closest_adversarial(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    mean: torch.Tensor | None,
    std: torch.Tensor | None,
    steps: int,
    eps_init: float,
    max_doublings: int,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_adv, y_adv, eps, fooled)`` for inputs ``x`` (pixels in [0, 1] when ``mean``/``std``
    are given, the model's own inputs otherwise) with labels ``y``: per sample, ℓ2 PGD with radius
    ``eps_init · 2^k`` for the first ``k`` whose example the model misclassifies (AMUN's Algorithm 1);
    ``y_adv`` is the model's prediction on ``x_adv``; ``fooled`` is False where no radius up to
    ``eps_init · 2^max_doublings`` changed the prediction (that sample's last attempt is kept)."""
    model.eval()

    def forward(z: torch.Tensor) -> torch.Tensor:
        return model((z - mean) / std) if mean is not None and std is not None else model(z)

    x_adv, eps_of = x.clone(), torch.full((len(x),), float("nan"), device=x.device)
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for k in range(max_doublings + 1):
        todo = (~fooled).nonzero().flatten()
        if len(todo) == 0:
            break
        eps = eps_init * 2**k
        for chunk in todo.split(batch_size):
            x0, y0 = x[chunk], y[chunk]
            z = l2_pgd(model, x0, y0, eps=eps, step=2.5 * eps / steps, steps=steps, targeted=False, mean=mean, std=std)
            with torch.no_grad():
                hit = forward(z).argmax(1) != y0
                x_adv[chunk] = z
                eps_of[chunk] = eps
                fooled[chunk] = hit
    with torch.no_grad():
        y_adv = torch.cat([forward(c).argmax(1) for c in x_adv.split(batch_size)]) if len(x) else y.clone()
    return x_adv, y_adv, eps_of, fooled


@register_method("amun")
class AMUN(VisionMethod[AMUNConfig]):
    """Fine-tune on each forget sample's closest adversarial example, labelled with the model's own prediction."""

    Config = AMUNConfig
    uses = frozenset({"forget", "retain"})
    reference = (
        "Ebrahimpour-Boroojeny, Sundaram & Chandrasekaran, 'Not All Wrong is Bad: Using Adversarial "
        "Examples for Unlearning' (AMUN), ICML 2025"
    )
    sample_level = True
    smoke: ClassVar[dict[str, Any]] = {"epochs": 1, "attack_steps": 5, "max_doublings": 3}

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        if not self.config.use_retain:
            self.uses = frozenset({"forget"})

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        if data.forget_classes:
            raise ConfigError(
                "amun forgets samples (random, ids): on a whole class its forget rows would re-teach "
                "the class and no unseen sample of it is near to imitate; use ssd or salun",
                "amun",
            )
        dev = ctx.device
        model.to(dev)
        forget = data.forget
        raw = forget.images.to(dev)
        pixels = not raw.is_floating_point()
        mean = torch.tensor(data.mean, device=dev).view(1, -1, 1, 1) if pixels else None
        std = torch.tensor(data.std, device=dev).view(1, -1, 1, 1) if pixels else None
        x = raw.float().div(255.0) if pixels else raw.float()
        y = forget.labels.to(dev)
        x_adv, y_adv, eps, fooled = closest_adversarial(
            model,
            x,
            y,
            mean=mean,
            std=std,
            steps=cfg.attack_steps,
            eps_init=cfg.eps_init,
            max_doublings=cfg.max_doublings,
            batch_size=cfg.batch_size,
        )
        to_input = (lambda z: (z - mean) / std) if pixels else (lambda z: z)
        # D_A (then D_F): model-ready float rows, never augmented
        fixed_x = torch.cat([to_input(x_adv), *([to_input(x)] if cfg.include_forget else [])]).detach()
        fixed_y = torch.cat([y_adv, *([y] if cfg.include_forget else [])])
        n_fixed = len(fixed_y)
        rx: torch.Tensor | None = None
        ry: torch.Tensor | None = None
        if cfg.use_retain:
            retain = data.retain
            rx, ry = retain.images, retain.labels
            keep = ctx.subset(len(retain), cfg.retain_samples, offset=3)
            if keep is not None:
                rx, ry = rx[keep.to(rx.device)], ry[keep.to(ry.device)]
        n_retain = 0 if ry is None else len(ry)
        n = n_fixed + n_retain
        tc = ctx.train_config
        aug = Augment(pad=tc.crop_pad, flip=tc.flip) if cfg.augment else None
        r_mean = torch.tensor(data.mean, device=dev).view(1, -1, 1, 1)
        r_std = torch.tensor(data.std, device=dev).view(1, -1, 1, 1)
        gen = ctx.generator(offset=5)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        per_epoch = -(-n // cfg.batch_size)
        steps = Steps(opt, cfg.epochs * per_epoch, device=dev, bf16=ctx.bf16, progress=ctx.progress)
        for epoch in range(cfg.epochs):
            order = torch.randperm(n, generator=gen)
            for idx in order.split(cfg.batch_size):
                a = idx[idx < n_fixed].to(dev)
                parts_x, parts_y = [fixed_x[a]], [fixed_y[a]]
                r = idx[idx >= n_fixed] - n_fixed
                if len(r) and rx is not None and ry is not None:
                    xr = rx[r.to(rx.device)].to(dev)
                    if aug is not None:
                        xr = augment_batch(xr, aug, gen)
                    parts_x.append(normalise(xr, r_mean, r_std))
                    parts_y.append(ry[r.to(ry.device)].to(dev))
                xb, yb = torch.cat(parts_x), torch.cat(parts_y)
                if ctx.channels_last and xb.dim() == 4:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                with steps.autocast():
                    loss = F.cross_entropy(model(xb), yb)
                steps.update(loss, epoch=epoch)
        model.eval()
        return MethodResult(
            model=model,
            steps=steps.step,
            info={
                "adversarial": {
                    "fooled": int(fooled.sum()),
                    "rows": len(y),
                    "eps_median": float(eps.nanmedian()) if len(y) else None,
                    "eps_max": float(eps.max()) if len(y) else None,
                }
            },
        )
