"""A stop for sample-level requests that needs no retrained model.

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

The mean is what ``stop_statistic: mean`` compares, and a few rows pushed far can carry it.
``median`` compares the (class-weighted) medians, which a few rows cannot move, and ``error`` the
fraction of rows misclassified: the forget rows' error against the class-weighted held-out error,
the statistic the accuracy components of the Avg. gap read (``stop_margin`` is then a fraction of
rows, not nats). On CIFAR-10's 300 frog ids (``bench/calibrated_stop/``) all three reach
their target within 1–6 steps, before the rows reach retraining's accuracy: that net barely
memorises, and the target rests on ≈ 100 held-out rows of the class.

Each check measures the model as the method will return it. Under ``bn_stats: keep`` the
method's train-mode passes rewrite the batch-norm running statistics, which are restored to the
original's afterwards; a check on the rewritten statistics measures another model (on CIFAR-10
after one NegGrad+ step on 300 frog ids: 24 % of the forget rows misclassified under the loop's
statistics, 4 % under the original's, which the returned model has). So under ``keep`` every check
swaps the original's statistics in. Under ``retain`` the returned model's statistics are
re-estimated after the method; the checks read the loop's (re-estimating at every check would cost
``bn_samples`` forward passes each).
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
from .bn import restore, snapshot


@dataclass(frozen=True, kw_only=True)
class StopConfig(VisionConfig):
    """Base of the configs of methods that can end on the calibrated stop instead of their budget
    (their budget remains the upper bound)."""

    stop: Literal["budget", "calibrated"] = param(
        "budget",
        "end after the budget (budget), or as soon as the forget rows' loss reaches held-out rows' "
        "of the same classes (calibrated; sample-level requests; needs validation_fraction > 0)",
    )
    stop_every: int = param(10, "steps between two checks of the calibrated stop")
    stop_margin: float = param(
        0.0,
        "how far below the held-out statistic the calibrated stop already fires "
        "(nats; a fraction of rows under stop_statistic: error)",
    )
    stop_rows: int | None = param(1000, "forget rows each check reads (a seeded sample; None: all of them)")
    stop_reference: Literal["start", "current"] = param(
        "start",
        "whose held-out loss is the target: the model's before unlearning, measured once (start: a "
        "retrained model generalises like the original), or the current model's at each check (current)",
    )
    stop_statistic: Literal["mean", "median", "error"] = param(
        "mean",
        "what the stop compares: the mean loss (mean), the median loss (median: robust to a few rows "
        "pushed far), or the fraction misclassified (error; stop_margin is then a fraction)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self._require(self.stop_every >= 1, "stop_every", ">= 1")
        self._require(self.stop_margin >= 0, "stop_margin", ">= 0")
        self._require(self.stop_rows is None or self.stop_rows >= 1, "stop_rows", ">= 1 or None")


Statistic = Literal["mean", "median", "error"]
STATISTICS: tuple[str, ...] = ("mean", "median", "error")


@torch.no_grad()
def _losses(
    model: nn.Module,
    view: SplitView,
    device: torch.device,
    rows: torch.Tensor | None = None,
    bf16: bool = False,
    channels_last: bool = False,
    statistic: str = "mean",
) -> torch.Tensor:
    """Per-row cross-entropy of ``view`` (or its ``rows``), in the recipe's inference precision;
    under ``statistic="error"``, 1.0 for each misclassified row and 0.0 for the others."""
    out = []
    for b in view.loader(512, shuffle=False, rows=rows, channels_last=channels_last):
        with autocast_context(device, bf16):
            logits = model(b["image"].to(device)).float()
        y = b["label"].to(device)
        out.append(
            (logits.argmax(1) != y).float().cpu()
            if statistic == "error"
            else F.cross_entropy(logits, y, reduction="none").cpu()
        )
    return torch.cat(out)


def weighted_median(values: torch.Tensor, weights: torch.Tensor) -> float:
    """The smallest value at which the cumulative weight (of non-negative ``weights``) reaches half."""
    keep = weights > 0
    v, w = values[keep].double(), weights[keep].double()
    if not len(v):
        raise ValueError("weighted_median needs at least one positive weight")
    order = torch.argsort(v)
    cum = torch.cumsum(w[order], 0)
    return float(v[order][int(torch.searchsorted(cum, cum[-1] / 2))])


def _summary(values: torch.Tensor, weights: torch.Tensor | None, statistic: str) -> float:
    """``values``' (weighted) mean — the loss's or, for 0/1 errors, the error rate — or median."""
    if statistic == "median":
        return weighted_median(values, torch.ones(len(values)) if weights is None else weights)
    return float(values.double().mean()) if weights is None else float((values.double() * weights).sum())


@dataclass
class CalibratedStop:
    """Stop when the forget rows' loss (mean, median) or error reaches the class-matched held-out
    rows' (see module)."""

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
    statistic: Statistic = "mean"
    bn_stats: str = "method"  # the method's batch-norm policy: under keep, checks use the start model's statistics
    fixed_target: bool = True  # with ``start``: the target is its held-out statistic (else re-measured each check)
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (step, forget, held-out) statistic

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise ConfigError(
                f"stop_statistic must be one of {', '.join(STATISTICS)}, got {self.statistic!r}", "stop_statistic"
            )
        n = len(self.forget)
        self._rows = (
            None
            if self.rows is None or self.rows >= n
            else torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))[: self.rows].sort().values
        )
        f = self.forget.labels.cpu().numpy()
        h = self.heldout.labels.cpu().numpy()
        classes, counts = np.unique(f, return_counts=True)
        present = {int(c): int((h == c).sum()) for c in classes}
        if not any(present.values()):
            raise ConfigError(
                "the calibrated stop needs held-out rows of the forget set's classes; the validation "
                "split has none (raise validation_fraction)",
                "stop",
            )
        p = {int(c): n / counts.sum() for c, n in zip(classes, counts) if present[int(c)]}
        total = sum(p.values())
        w = np.array([p.get(int(y), 0.0) / total / present[int(y)] if int(y) in p else 0.0 for y in h])
        self._weights = torch.as_tensor(w, dtype=torch.float64)
        self._target: float | None = None
        self._bn: list[dict[str, torch.Tensor]] | None = None
        if self.bn_stats == "keep":
            if self.start is None:
                raise ValueError(
                    "bn_stats='keep' needs the model before unlearning (start=): its batch-norm "
                    "statistics are the returned model's"
                )
            self._bn = snapshot(self.start)
        if self.start is not None and self.fixed_target:
            self._target = self._heldout_loss(self.start)
        self.start = None  # (not kept: its target and statistics are all the stop needs of it)

    def _heldout_loss(self, model: nn.Module) -> float:
        was = model.training
        model.eval()
        try:
            kw: dict[str, Any] = {"bf16": self.bf16, "channels_last": self.channels_last, "statistic": self.statistic}
            return _summary(_losses(model, self.heldout, self.device, **kw), self._weights, self.statistic)
        finally:
            model.train(was)

    def gap(self, model: nn.Module) -> tuple[float, float]:
        """(the forget rows' statistic under ``model`` now, the class-matched held-out rows': of the
        model before unlearning when the stop was given it, else of ``model`` now)."""
        was = model.training
        model.eval()
        loop = None
        if self._bn is not None:  # measure the model as it will be returned: the start's statistics
            loop = snapshot(model)
            restore(model, self._bn)
        try:
            kw: dict[str, Any] = {"bf16": self.bf16, "channels_last": self.channels_last, "statistic": self.statistic}
            lf = _summary(_losses(model, self.forget, self.device, self._rows, **kw), None, self.statistic)
            lh = self._target if self._target is not None else self._heldout_loss(model)
        finally:
            if loop is not None:
                restore(model, loop)
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
        what = "error" if self.statistic == "error" else "loss"  # (the median is a loss too)
        return {
            "stop": "calibrated",
            "stop_checks": len(self.history),
            "stop_reference": "start" if self._target is not None else "current",
            "stop_rows": len(self.forget) if self._rows is None else len(self._rows),
            "stop_statistic": self.statistic,
            "stop_bn": "start" if self._bn is not None else "loop",  # whose BN statistics the checks used
            f"stop_forget_{what}": last[1] if last else None,
            f"stop_heldout_{what}": last[2] if last else None,
        }


def calibrated_stop(cfg: Any, data: Any, ctx: Any, model: nn.Module | None = None) -> CalibratedStop | None:
    """The stop a :class:`StopConfig` asks for (``None`` for the budget); refuses class requests.
    ``model``: the model before unlearning (its held-out loss is the target under
    ``stop_reference: start``; required then)."""
    if getattr(cfg, "stop", "budget") != "calibrated":
        return None
    if data.forget_classes:
        raise ConfigError(
            "the calibrated stop is for sample-level requests (random, ids): a model retrained without "
            "a whole class has no held-out loss of it to match",
            "stop",
        )
    bn_stats = getattr(cfg, "bn_stats", "method")
    if (cfg.stop_reference == "start" or bn_stats == "keep") and model is None:
        raise ValueError(
            "stop_reference='start' and bn_stats='keep' need the model before unlearning: "
            "calibrated_stop(cfg, data, ctx, model)"
        )
    return CalibratedStop(
        data.forget,
        data.validation,
        ctx.device,
        cfg.stop_every,
        cfg.stop_margin,
        rows=cfg.stop_rows,
        seed=ctx.seed + 43,
        bf16=ctx.bf16,
        channels_last=ctx.channels_last,
        start=model if cfg.stop_reference == "start" or bn_stats == "keep" else None,
        statistic=getattr(cfg, "stop_statistic", "mean"),
        bn_stats=bn_stats,
        fixed_target=cfg.stop_reference == "start",
    )
