"""A stop for sample-level requests that needs no retrained model (issue 16).

A model that never saw an example treats it like held-out data of its class. So the right end
point of unlearning a random or sample-id forget set is visible without retraining: the forget
rows' mean loss has risen to the mean loss of held-out rows of the same classes, weighted to the
forget set's class proportions. :class:`CalibratedStop` measures that gap every ``every`` steps
(eval mode, no gradient, on a seeded sample of ``stop_rows`` forget rows) and says stop once

    mean CE(forget) ≥ Σ_c p_c · mean CE₀(held-out rows of class c) − margin,

p_c the forget set's class proportions, CE₀ the loss of the model *before* unlearning
(``stop_reference: start``, measured once): a retrained model generalises like the original, so
the original's held-out loss is the level to reach. Measuring the held-out rows under the current
model instead (``current``) lets the target drift: gradient ascent on the forget rows raises the
held-out loss of their classes too, and the two met only once the classes were damaged (on CIFAR-10,
300 ids inside one class: forget and held-out loss both ≈ 2.9 nats, forget accuracy 82 % where the
retrained model keeps 94 %). The held-out rows are the study's validation split (test
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
from ..utils import autocast_context
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
    stop_rows: int | None = param(1000, "forget rows each check reads (a seeded sample; None: all of them)")
    stop_reference: Literal["start", "current"] = param(
        "start", "whose held-out loss is the target: the model's before unlearning, measured once (start: a "
                 "retrained model generalises like the original), or the current model's at each check (current)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self._require(self.stop_every >= 1, "stop_every", ">= 1")
        self._require(self.stop_margin >= 0, "stop_margin", ">= 0")
        self._require(self.stop_rows is None or self.stop_rows >= 1, "stop_rows", ">= 1 or None")


@torch.no_grad()
def _losses(model: nn.Module, view: SplitView, device: torch.device, rows: torch.Tensor | None = None,
            bf16: bool = False, channels_last: bool = False) -> torch.Tensor:
    """Per-row cross-entropy of ``view`` (or its ``rows``), in the recipe's inference precision."""
    out = []
    for b in view.loader(512, shuffle=False, rows=rows, channels_last=channels_last):
        with autocast_context(device, bf16):
            logits = model(b["image"].to(device))
        out.append(F.cross_entropy(logits.float(), b["label"].to(device), reduction="none").cpu())
    return torch.cat(out)


@dataclass
class CalibratedStop:
    """Stop when the forget rows' mean loss reaches the class-matched held-out loss (see module)."""

    forget: SplitView
    heldout: SplitView
    device: torch.device
    every: int = 10
    margin: float = 0.0
    rows: int | None = None  # forget rows read per check (a seeded sample); None: all
    seed: int = 0
    bf16: bool = False
    channels_last: bool = False
    start: nn.Module | None = None  # the model before unlearning: its held-out loss is the fixed target
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (step, forget, held-out) losses

    def __post_init__(self) -> None:
        n = len(self.forget)
        self._rows = (None if self.rows is None or self.rows >= n else
                      torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))[: self.rows].sort().values)
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
        self._target: float | None = None
        if self.start is not None:
            self._target = self._heldout_loss(self.start)
            self.start = None  # (not kept: the target is all the stop needs of it)

    def _heldout_loss(self, model: nn.Module) -> float:
        was = model.training
        model.eval()
        try:
            kw = {"bf16": self.bf16, "channels_last": self.channels_last}
            return float((_losses(model, self.heldout, self.device, **kw).double() * self._weights).sum())
        finally:
            model.train(was)

    def gap(self, model: nn.Module) -> tuple[float, float]:
        """(mean forget loss under ``model`` now, the class-matched mean held-out loss: of the model
        before unlearning when the stop was given it, else of ``model`` now)."""
        was = model.training
        model.eval()
        try:
            kw = {"bf16": self.bf16, "channels_last": self.channels_last}
            lf = float(_losses(model, self.forget, self.device, self._rows, **kw).mean())
        finally:
            model.train(was)
        return lf, self._target if self._target is not None else self._heldout_loss(model)

    def __call__(self, model: nn.Module, step: int) -> bool:
        if step % self.every:
            return False
        lf, lh = self.gap(model)
        self.history.append((step, lf, lh))
        return lf >= lh - self.margin

    def info(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else None
        return {"stop": "calibrated", "stop_checks": len(self.history),
                "stop_reference": "start" if self._target is not None else "current",
                "stop_rows": len(self.forget) if self._rows is None else len(self._rows),
                "stop_forget_loss": last[1] if last else None, "stop_heldout_loss": last[2] if last else None}


def calibrated_stop(cfg: Any, data: Any, ctx: Any, model: nn.Module | None = None) -> CalibratedStop | None:
    """The stop a :class:`StopConfig` asks for (``None`` for the budget); refuses class requests.
    ``model``: the model before unlearning (its held-out loss is the target under
    ``stop_reference: start``; required then)."""
    if getattr(cfg, "stop", "budget") != "calibrated":
        return None
    if data.forget_classes:
        raise ConfigError("the calibrated stop is for sample-level requests (random, ids): a model retrained without "
                          "a whole class has no held-out loss of it to match", "stop")
    if cfg.stop_reference == "start" and model is None:
        raise ValueError("stop_reference='start' needs the model before unlearning: calibrated_stop(cfg, data, ctx, model)")
    return CalibratedStop(data.forget, data.validation, ctx.device, cfg.stop_every, cfg.stop_margin,
                          rows=cfg.stop_rows, seed=ctx.seed + 43, bf16=ctx.bf16, channels_last=ctx.channels_last,
                          start=model if cfg.stop_reference == "start" else None)
