"""A stop for sample-level requests that needs no retrained model (issue 16).

A model that never saw an example treats it like held-out data of its class. So the right end
point of unlearning a random or sample-id forget set is visible without retraining: the forget
rows' mean loss has risen to the mean loss of held-out rows of the same classes, weighted to the
forget set's class proportions. :class:`CalibratedStop` measures that gap every ``every`` steps
(eval mode, no gradient) and says stop once

    mean CE(forget) ≥ Σ_c p_c · mean CE(held-out rows of class c) − margin,

p_c the forget set's class proportions. The held-out rows are the study's validation split (test
rows the evaluation does not use: ``validation_fraction`` > 0). For a whole-class request the
retrained model has never learned the class, so its held-out loss under the current model is no
target: the stop refuses class requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core import ConfigError
from .base import SplitView, VisionConfig, param


@dataclass(frozen=True, kw_only=True)
class StopConfig(VisionConfig):
    """Base of the configs of methods that can end on the calibrated stop instead of their budget
    (their budget remains the upper bound)."""

    stop: Literal["budget", "calibrated"] = param(
        "budget", "end after the budget (budget), or as soon as the forget rows' loss reaches held-out rows' "
                  "of the same classes (calibrated; sample-level requests; needs validation_fraction > 0)")
    stop_every: int = param(10, "steps between two checks of the calibrated stop")
    stop_margin: float = param(0.0, "nats below the held-out loss at which the calibrated stop already fires")

    def __post_init__(self) -> None:
        super().__post_init__()
        self._require(self.stop_every >= 1, "stop_every", ">= 1")
        self._require(self.stop_margin >= 0, "stop_margin", ">= 0")


@torch.no_grad()
def _losses(model: nn.Module, view: SplitView, device: torch.device) -> torch.Tensor:
    out = []
    for b in view.loader(512, shuffle=False):
        out.append(F.cross_entropy(model(b["image"].to(device)).float(), b["label"].to(device), reduction="none").cpu())
    return torch.cat(out)


@dataclass
class CalibratedStop:
    """Stop when the forget rows' mean loss reaches the class-matched held-out loss (see module)."""

    forget: SplitView
    heldout: SplitView
    device: torch.device
    every: int = 10
    margin: float = 0.0
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (step, forget, held-out) losses

    def __post_init__(self) -> None:
        f = self.forget.labels.cpu().numpy()
        h = self.heldout.labels.cpu().numpy()
        classes, counts = np.unique(f, return_counts=True)
        present = {int(c): int((h == c).sum()) for c in classes}
        if not any(present.values()):
            raise ConfigError("the calibrated stop needs held-out rows of the forget set's classes; the validation "
                              "split has none (raise validation_fraction)", "stop")
        p = {int(c): n / counts.sum() for c, n in zip(classes, counts) if present[int(c)]}
        total = sum(p.values())
        w = np.array([p.get(int(y), 0.0) / total / present[int(y)] if int(y) in p else 0.0 for y in h])
        self._weights = torch.as_tensor(w, dtype=torch.float64)

    def gap(self, model: nn.Module) -> tuple[float, float]:
        """(mean forget loss, class-matched mean held-out loss) under ``model`` now."""
        was = model.training
        model.eval()
        try:
            lf = float(_losses(model, self.forget, self.device).mean())
            lh = float((_losses(model, self.heldout, self.device).double() * self._weights).sum())
        finally:
            model.train(was)
        return lf, lh

    def __call__(self, model: nn.Module, step: int) -> bool:
        if step % self.every:
            return False
        lf, lh = self.gap(model)
        self.history.append((step, lf, lh))
        return lf >= lh - self.margin

    def info(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else None
        return {"stop": "calibrated", "stop_checks": len(self.history),
                "stop_forget_loss": last[1] if last else None, "stop_heldout_loss": last[2] if last else None}


def calibrated_stop(cfg: Any, data: Any, ctx: Any) -> CalibratedStop | None:
    """The stop a :class:`StopConfig` asks for (``None`` for the budget); refuses class requests."""
    if getattr(cfg, "stop", "budget") != "calibrated":
        return None
    if data.forget_classes:
        raise ConfigError("the calibrated stop is for sample-level requests (random, ids): a model retrained without "
                          "a whole class has no held-out loss of it to match", "stop")
    return CalibratedStop(data.forget, data.validation, ctx.device, cfg.stop_every, cfg.stop_margin)
