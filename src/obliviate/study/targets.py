"""What a study asks of a method, and the noise floor it is judged against.

A :class:`Target` is one request kind's bar: an Avg. gap to the retrained model (SalUn's, in
points; :mod:`obliviate.metrics.gap`) at a speed-up over retraining, and optionally no retained
class losing more than some points against the original. A study names its own under
``targets:`` (``{class: {max_gap: 0.5, min_speedup: 50, max_class_drop: 3}}``); request kinds it
does not name get :data:`DEFAULT_TARGETS`. ``max_gap: null`` means "within the noise floor".

The noise floor is the Avg. gap between two exact retrains of different seeds
(:func:`noise_floor`): below it a method cannot be told from retraining by these four numbers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.typed import ConfigError, check_fields

REQUEST_KINDS = ("class", "subclass", "random", "ids")

# The four Avg.-gap components as run-record keys (``test`` is replaced by ``acc/test`` where a
# request has no retained-class test split).
GAP_KEYS = ("acc/forget", "acc/retain", "acc/test_retain", "mia_efficacy/confidence")


@dataclass(frozen=True, kw_only=True)
class Target:
    """One request kind's bar: Avg. gap ≤ ``max_gap`` points (``None``: ≤ the noise floor) at a
    speed-up ≥ ``min_speedup`` over retraining; with ``max_class_drop``, no retained class losing
    more than that many points of test accuracy against the original model."""

    kind: str
    max_gap: float | None = 1.0
    min_speedup: float = 1.0
    max_class_drop: float | None = None

    def __post_init__(self) -> None:
        check_fields(self)  # (rejects NaN and ±inf in every float field)
        if self.kind not in REQUEST_KINDS:
            raise ConfigError(f"Target.kind must be one of {REQUEST_KINDS}, got {self.kind!r}", "kind")
        if self.max_gap is not None and self.max_gap <= 0:
            raise ConfigError(
                f"Target.max_gap must be > 0 points or null (the noise floor), got {self.max_gap!r}", "max_gap"
            )
        if self.min_speedup <= 0:
            raise ConfigError(f"Target.min_speedup must be > 0, got {self.min_speedup!r}", "min_speedup")
        if self.max_class_drop is not None and self.max_class_drop < 0:
            raise ConfigError(
                f"Target.max_class_drop must be >= 0 points or null, got {self.max_class_drop!r}", "max_class_drop"
            )

    def gap_bar(self, floor: float | None) -> float | None:
        """The gap a method must reach: ``max_gap``, or the noise floor when ``max_gap`` is null."""
        return self.max_gap if self.max_gap is not None else floor

    def describe(self, floor: float | None = None) -> str:
        if self.max_gap is not None:
            gap = f"Avg. gap ≤ {self.max_gap:g} pts"
        else:
            gap = "Avg. gap within the noise floor" + (f" ({floor:.2f} pts)" if floor is not None else "")
        text = f"{gap} at ≥ {self.min_speedup:g}× less wall time than retraining"
        if self.max_class_drop is not None:
            text += f", no retained class losing > {self.max_class_drop:g} pts against the original"
        return text

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFAULT_TARGETS: dict[str, Target] = {
    "class": Target(kind="class", max_gap=0.5, min_speedup=50.0, max_class_drop=3.0),
    "subclass": Target(kind="subclass", max_gap=0.5, min_speedup=50.0, max_class_drop=3.0),
    "random": Target(kind="random", max_gap=1.0, min_speedup=20.0),
    "ids": Target(kind="ids", max_gap=None, min_speedup=20.0, max_class_drop=3.0),
}


def parse_targets(raw: Any, where: str = "targets") -> dict[str, Target]:
    """``targets:`` of a study (a mapping of request kind -> Target fields) merged over
    :data:`DEFAULT_TARGETS`. Errors name the field: ``targets.class.max_gap``."""
    out = dict(DEFAULT_TARGETS)
    if raw is None:
        return out
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{where} must be a mapping of request kind ({', '.join(REQUEST_KINDS)}) to "
            f"{{max_gap, min_speedup, max_class_drop}}, got {raw!r}"
        )
    for kind, fields in raw.items():
        if kind not in REQUEST_KINDS:
            raise ConfigError(f"{where}: unknown request kind {kind!r}; allowed: {', '.join(REQUEST_KINDS)}", str(kind))
        if not isinstance(fields, Mapping):
            raise ConfigError(
                f"{where}.{kind} must be a mapping of max_gap, min_speedup, max_class_drop, got {fields!r}", str(kind)
            )
        unknown = sorted(set(fields) - {"max_gap", "min_speedup", "max_class_drop"})
        if unknown:
            raise ConfigError(
                f"{where}.{kind}: unknown field(s) {unknown}; allowed: max_gap, min_speedup, max_class_drop",
                f"{kind}.{unknown[0]}",
            )
        base = DEFAULT_TARGETS[kind].to_dict()
        try:
            out[kind] = Target(**{**base, **dict(fields), "kind": kind})
        except ConfigError as e:
            raise ConfigError(str(e), f"{kind}.{e.field}" if e.field else str(kind)) from None
    return out


def request_kind(request: str) -> str:
    """``"class:airplane"`` -> ``"class"``, ``"random:0.1"`` -> ``"random"`` (the runner's labels)."""
    return request.split(":", 1)[0]


def _gap_keys(runs: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    if all("acc/test_retain" in r["values"] for r in runs):
        return GAP_KEYS
    return tuple("acc/test" if k == "acc/test_retain" else k for k in GAP_KEYS)


def noise_floor_components(retrain_runs: Sequence[Mapping[str, Any]]) -> dict[str, float] | None:
    """Per gap component and ``avg``: the mean |difference| in points between the records of
    retrained models of different seeds, over every pair. ``None`` with fewer than two."""
    if len(retrain_runs) < 2:
        return None
    keys = _gap_keys(retrain_runs)
    diffs: dict[str, list[float]] = {k: [] for k in keys}
    for i, a in enumerate(retrain_runs):
        for b in retrain_runs[i + 1 :]:
            if all(k in a["values"] and k in b["values"] for k in keys):
                for k in keys:
                    diffs[k].append(100.0 * abs(float(a["values"][k]) - float(b["values"][k])))
    if not diffs[keys[0]]:
        return None
    out = {k: sum(v) / len(v) for k, v in diffs.items()}
    out["avg"] = sum(out[k] for k in keys) / len(keys)
    return out


def noise_floor(retrain_runs: Sequence[Mapping[str, Any]]) -> float | None:
    """Mean Avg. gap (points) between retrained models of different seeds: how far two exact
    retrains sit from each other on the four gap components — the scale below which a method's
    gap cannot be told from retraining. ``None`` with fewer than two seeds."""
    comps = noise_floor_components(retrain_runs)
    return None if comps is None else comps["avg"]


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


TUNE_OBJECTIVES = ("target", "gap")


def tune_score(values: Mapping[str, Any], target: Target, objective: str = "target") -> float:
    """The number a hyperparameter search minimises for one run (points): its Avg. gap to the
    retrained model, plus — with ``objective="target"`` — the points by which its worst retained
    class drops further than ``target.max_class_drop`` allows. Both are percentage points, so a
    setting that closes the gap by breaking another class gains nothing; a target without a
    class bar (random requests) scores the gap alone. Speed is not scored: a search varies
    strengths and learning rates, the budgets (epochs, samples) are fixed in the study."""
    if objective not in TUNE_OBJECTIVES:
        raise ConfigError(f"the tune objective must be one of {TUNE_OBJECTIVES}, got {objective!r}", "objective")
    score = float(values["gap/avg"])
    drop = values.get("worst_class_drop")
    if objective == "target" and target.max_class_drop is not None and drop is not None and math.isfinite(float(drop)):
        score += max(0.0, float(drop) - target.max_class_drop)
    return score


def check_target(per_seed: Sequence[Mapping[str, float]], target: Target, floor: float | None = None) -> dict[str, Any]:
    """Judge one method against ``target`` from its per-seed values (``gap/avg``,
    ``efficiency/speedup``, ``worst_class_drop``).

    Returns ``passes`` (on the seed means), ``every_seed`` (each seed passes on its own),
    ``reasons`` (one line per failed criterion, with the measured value) and ``failed`` (the
    criteria missed on the means: ``gap``, ``speed``, ``class``).
    """
    bar = target.gap_bar(floor)

    def judge(vals: Mapping[str, float]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        gap, speed = vals.get("gap/avg"), vals.get("efficiency/speedup")
        if gap is None or not math.isfinite(gap):
            out.append(("gap", "no Avg. gap recorded"))
        elif bar is None:
            out.append(("gap", "no noise floor to judge the gap against (needs ≥ 2 seeds)"))
        elif gap > bar:
            out.append(
                (
                    "gap",
                    f"Avg. gap {gap:.2f} > {bar:.2f} pts"
                    if target.max_gap is None
                    else f"Avg. gap {gap:.2f} > {bar:g} pts",
                )
            )
        if speed is None or not math.isfinite(speed):
            out.append(("speed", "no speed-up recorded"))
        elif speed < target.min_speedup:
            out.append(("speed", f"speed-up {speed:.1f}× < {target.min_speedup:g}×"))
        if target.max_class_drop is not None:
            drop = vals.get("worst_class_drop")
            if drop is None or not math.isfinite(drop):
                out.append(("class", "no per-class accuracy recorded"))
            elif drop > target.max_class_drop:
                out.append(("class", f"a retained class loses {drop:.2f} > {target.max_class_drop:g} pts"))
        return out

    if not per_seed:
        return {"passes": False, "every_seed": False, "reasons": ["no finished runs"], "failed": ["runs"]}
    keys = {k for vals in per_seed for k in vals}
    means = {k: _mean([v[k] for v in per_seed if k in v]) for k in keys}
    missed = judge(means)
    return {
        "passes": not missed,
        "every_seed": all(not judge(v) for v in per_seed),
        "reasons": [text for _, text in missed],
        "failed": list(dict.fromkeys(c for c, _ in missed)),
    }
