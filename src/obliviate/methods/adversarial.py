"""ℓ2 projected gradient descent on inputs, shared by the methods that build adversarial examples
(``instance_wise``: targeted, from a random start; ``amun``: untargeted, from the sample itself).

Pixels are in [0, 1] and the model sees ``(x - mean) / std``; with ``mean``/``std`` ``None`` the
inputs are the model's own (a user's float features) and are not clamped. Each step moves the
perturbation ``δ`` by ``step`` along the ℓ2-normalised gradient (towards ``target`` when
``targeted``, away from it otherwise), clamps ``x + δ`` to the pixel range, then projects ``δ``
onto the ℓ2 ball of radius ``eps`` (Madry et al., ICLR 2018).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def l2_project(delta: torch.Tensor, radius: float) -> torch.Tensor:
    """Scale each sample of ``delta`` into the ℓ2 ball of ``radius``."""
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    return delta * (radius / norms).clamp(max=1.0).view(-1, *([1] * (delta.ndim - 1)))


def l2_pgd(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    eps: float,
    step: float,
    steps: int,
    targeted: bool,
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """The perturbed inputs ``x + δ`` (un-normalised), ``δ`` from ``start`` (default 0) after
    ``steps`` ℓ2 PGD steps on the summed cross-entropy of ``target``."""
    pixels = mean is not None and std is not None

    def forward(z: torch.Tensor) -> torch.Tensor:
        return model((z - mean) / std) if mean is not None and std is not None else model(z)

    delta = torch.zeros_like(x) if start is None else l2_project(start, eps)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(forward(x + delta), target, reduction="sum")
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            unit = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.ndim - 1)))
            delta = delta - step * unit if targeted else delta + step * unit
            if pixels:
                delta = (x + delta).clamp(0.0, 1.0) - x
            delta = l2_project(delta, eps)
    return (x + delta).detach()


__all__ = ["l2_pgd", "l2_project"]
