"""Non-finite detection: a diverged run is a failure, never a result.

Training loops call :func:`check_loss` on every step's loss (one scalar read per step); the
runner calls :func:`check_model` on every model a method returns and before anything is cached.
Both raise :class:`NonFiniteError`, which carries where the value appeared, the step and the
value, so the run is recorded as failed with those facts instead of as "0 % forget accuracy".
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class NonFiniteError(FloatingPointError):
    """A loss, a weight or a model output became NaN or ±inf."""

    def __init__(self, where: str, value: float, step: int | None = None, detail: str = "") -> None:
        self.where, self.value, self.step, self.detail = where, float(value), step, detail
        at = f" at step {step}" if step is not None else ""
        super().__init__(
            f"non-finite {where}{at}: {value!r}{' (' + detail + ')' if detail else ''}"
            " — the run diverged; lower the learning rate or clip gradients"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "non_finite",
            "where": self.where,
            "step": self.step,
            "value": repr(self.value),
            "detail": self.detail,
            "message": str(self),
        }


def check_loss(loss: torch.Tensor, step: int, where: str = "loss") -> None:
    """Raise :class:`NonFiniteError` when the scalar ``loss`` is NaN or ±inf."""
    v = float(loss.detach())
    if not math.isfinite(v):
        raise NonFiniteError(where, v, step)


def check_model(model: nn.Module, where: str = "weights") -> None:
    """Raise :class:`NonFiniteError` naming the first parameter or buffer that is not finite."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = t[~torch.isfinite(t)].flatten()[0].item()
            raise NonFiniteError(where, bad, None, f"tensor {name}")


def check_tensor(t: torch.Tensor, where: str) -> None:
    if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
        raise NonFiniteError(where, t[~torch.isfinite(t)].flatten()[0].item())


def finite_or_none(v: float) -> float | None:
    """``v`` as a float, or ``None`` for NaN/±inf (JSON records never hold ``NaN`` literals)."""
    v = float(v)
    return v if math.isfinite(v) else None
