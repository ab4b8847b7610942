"""Relearn time and the Anamnesis Index (Chundawat et al., "Zero-Shot Machine Unlearning", IEEE
TIFS 2023): how quickly fine-tuning on the forget set brings the forgotten accuracy back.

r_t(M, α): optimizer steps of fine-tuning model M on the forget set until its forget accuracy is
within α of the original model's, i.e. ≥ (1 − α)·acc_orig (α relative, default 0.05).
AIN = r_t(M_unlearned, α) / r_t(M_retrained, α). AIN ≈ 1: the forgotten knowledge comes back as
fast as for a model that never saw it; AIN ≪ 1: it was hidden, not removed; AIN ≫ 1: the model was
damaged beyond retraining (over-forgetting).

This metric trains, so it is ``costly`` (not in the default set). It reads
``EvalInputs.relearn(role, max_steps) -> list[float]`` (forget accuracy after each step), which the
study runner builds from :func:`relearn_curve`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, Protocol, cast

import torch
from torch import nn

from ..data import BatchLoader
from .base import EvalInputs, Metric, MissingInputError, register_metric
from .classification import accuracy


class SupportsLoader(Protocol):
    """A split view that builds loaders (``obliviate.methods.SplitView``)."""

    def loader(self, batch_size: int, *, shuffle: bool = ..., augment: Any = ..., seed: int = ...) -> BatchLoader: ...


@torch.no_grad()
def _accuracy(model: nn.Module, loader: BatchLoader, device: torch.device) -> float:
    model.eval()
    correct, total = 0, 0
    for batch in loader:
        pred = model(batch["image"].to(device)).argmax(1)
        correct += int((pred == batch["label"].to(device)).sum())
        total += len(batch["label"])
    return correct / total


def _loaders(
    forget: BatchLoader | SupportsLoader,
    eval_loader: BatchLoader | None,
    batch_size: int,
    seed: int,
) -> tuple[BatchLoader, BatchLoader]:
    """(training loader, evaluation loader) for ``forget``: a split view or a loader."""
    if hasattr(forget, "loader"):  # a split view, e.g. UnlearnData.forget (metrics never import methods)
        view = cast(SupportsLoader, forget)
        train = view.loader(batch_size, shuffle=True, augment=None, seed=seed)
        return train, eval_loader or view.loader(512, shuffle=False, augment=None, seed=seed)
    if not isinstance(forget, BatchLoader):
        raise TypeError(f"forget must be a split view (with .loader) or a BatchLoader, got {type(forget).__name__}")
    if eval_loader is None:  # the same rows, in order, without augmentation
        eval_loader = BatchLoader(
            forget.images,
            forget.labels,
            rows=forget.rows,
            batch_size=512,
            mean=tuple(forget.mean.flatten().tolist()),
            std=tuple(forget.std.flatten().tolist()),
        )
    return forget, eval_loader


def relearn_curve(
    model: nn.Module,
    forget: BatchLoader | SupportsLoader,
    eval_loader: BatchLoader | None = None,
    *,
    steps: int,
    lr: float = 0.01,
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | str = "cpu",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    stop_at: float | None = None,
) -> list[float]:
    """Fine-tune a *copy* of ``model`` on the forget set; forget accuracy after every step.

    Args:
        model: the model to probe (left untouched: a deep copy is trained).
        forget: the forget set, either a split view with ``.loader(batch_size, shuffle, augment,
            seed)`` (``UnlearnData(...).forget``; batches of ``batch_size`` shuffled from ``seed``,
            no augmentation) or a :class:`BatchLoader` of forget batches (used as given; cycled).
        eval_loader: where accuracy is measured after each step; default: every forget row, in
            order, without augmentation.
        steps: the most optimizer steps to take (≥ 1).
        lr, momentum, weight_decay: SGD with a constant learning rate.
        batch_size, seed: for the training loader built from a split view.
        device: where to train.
        stop_at: stop early once the accuracy reaches this value (the curve is then shorter).

    Returns:
        ``[acc after step 1, acc after step 2, ...]`` as fractions in [0, 1].
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"relearn_curve steps must be an integer >= 1, got {steps!r}")
    for name, v in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"relearn_curve {name} must be a finite number >= 0, got {v!r}")
    if lr == 0:
        raise ValueError("relearn_curve lr must be > 0, got 0")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"relearn_curve batch_size must be an integer >= 1, got {batch_size!r}")
    train_loader, eval_loader = _loaders(forget, eval_loader, batch_size, seed)
    device = torch.device(device)
    probe = copy.deepcopy(model).to(device)
    opt = torch.optim.SGD(probe.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    curve: list[float] = []
    while len(curve) < steps:
        for batch in train_loader:
            probe.train()
            loss = loss_fn(probe(batch["image"].to(device)), batch["label"].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            curve.append(_accuracy(probe, eval_loader, device))
            if len(curve) >= steps or (stop_at is not None and curve[-1] >= stop_at):
                return curve
    return curve


def steps_to_relearn(start: float, curve: Sequence[float], target: float) -> int | None:
    """Steps until accuracy ≥ ``target``: 0 if ``start`` already is, else the first step of
    ``curve`` that is, else ``None`` (not reached within the curve)."""
    if start >= target:
        return 0
    for i, acc in enumerate(curve):
        if acc >= target:
            return i + 1
    return None


def anamnesis_index(steps_unlearned: int, steps_retrained: int) -> float:
    """AIN = r_t(unlearned) / r_t(retrained); a ValueError when the retrained took 0 steps."""
    if steps_retrained <= 0:
        raise ValueError("AIN is undefined when the retrained model needs 0 steps to reach the target")
    return steps_unlearned / steps_retrained


def _checked_curve(curve: object, role: str, max_steps: int) -> list[float]:
    if not isinstance(curve, (list, tuple)) or len(curve) > max_steps:
        raise ValueError(f"relearn({role!r}, {max_steps}) must return a list of at most {max_steps} accuracies")
    out = [float(a) for a in curve]
    if any(not (0.0 <= a <= 1.0) for a in out):
        raise ValueError(f"relearn({role!r}, ...) returned accuracies outside [0, 1]: {out[:5]}...")
    return out


@register_metric("relearn")
class RelearnTime(Metric):
    """Relearn time and Anamnesis Index: SGD steps on the forget set until forget accuracy is back
    within ``tolerance`` (relative) of the original model's, for the unlearned and the retrained
    model. Keys: ``relearn/steps`` (``max_steps + 1`` when not reached: a lower bound),
    ``relearn/steps@retrained``, ``relearn/reached`` (1/0) and ``@retrained``, ``relearn/ain``
    (unlearned / retrained steps; 1 is ideal, omitted when the retrained model needs 0 steps) and
    ``relearn/ain@retrained`` (1 by definition).

    ``max_steps`` (100) and ``tolerance`` (0.05) are class defaults; a runner overrides them per
    study by setting attributes of the same names on the ``relearn`` callable it provides."""

    needs = frozenset({"original", "retrained"})
    direction = "closest_to_retrained"
    summary = "Steps to relearn the forget set, and AIN; closest to retrained (AIN 1) is best."
    reference = "Chundawat et al., 'Zero-Shot Machine Unlearning', IEEE TIFS 2023 (Anamnesis Index)"
    costly = True
    max_steps = 100
    tolerance = 0.05

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        relearn = inputs.relearn
        if relearn is None:
            raise MissingInputError("relearn needs EvalInputs.relearn (a callable the study runner provides)")
        max_steps = getattr(relearn, "max_steps", self.max_steps)
        tolerance = getattr(relearn, "tolerance", self.tolerance)
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"relearn max_steps must be an integer >= 1, got {max_steps!r}")
        if not (isinstance(tolerance, (int, float)) and 0 <= tolerance < 1):
            raise ValueError(f"relearn tolerance must be a number in [0, 1), got {tolerance!r}")
        target = (1.0 - tolerance) * accuracy(inputs.out("forget", "original"))
        res: dict[str, float] = {}
        steps: dict[str, int] = {}
        for role in ("unlearned", "retrained"):
            start = accuracy(inputs.out("forget", role))
            n = steps_to_relearn(start, [], target)
            if n is None:  # only train when the model is not already there

                def curve_of(role: str = role) -> list[float]:
                    return _checked_curve(relearn(role, max_steps), role, max_steps)

                curve = inputs.reference_value(f"relearn/{max_steps}", role, curve_of)
                n = steps_to_relearn(start, curve, target)
            suffix = "" if role == "unlearned" else "@retrained"
            res[f"relearn/reached{suffix}"] = float(n is not None)
            steps[role] = max_steps + 1 if n is None else n
            res[f"relearn/steps{suffix}"] = float(steps[role])
        if steps["retrained"] > 0:
            res["relearn/ain"] = anamnesis_index(steps["unlearned"], steps["retrained"])
            res["relearn/ain@retrained"] = 1.0
        return res

    def direction_of(self, key: str) -> str:
        if "@" in key or key.startswith("relearn/reached"):
            return "info"
        return self.direction
