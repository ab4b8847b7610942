"""The guard every approximate deletion runs under, and the outcome a non-specialist reads.

A result is delivered as honoured only when what was measured on *this* model says so:

* **utility** — retain and held-out accuracy may not fall, nor their mean loss rise, by more than
  the sampling noise of the original's own figure: the half-width of its 95 % percentile
  bootstrap interval over the measured rows (:func:`tolerances`). For a class request the
  held-out figures are on the retained classes' rows.
* **forgetting** — a whole class is forgotten when neither its training rows nor its held-out
  rows are predicted above chance (1/K; a model retrained without the class scores ≈ 0 %). An
  attempt is rolled back when the membership audit that recognised the rows in the original still
  recognises them (:func:`membership_reading`); it is *verified* only when the audit no longer
  separates them and saw them move (its interval now lies below the original's reading).
* **doing nothing** — with a retrained reference, a result farther from it than the original
  beyond the two references' own distance (the study's Avg.-gap protocol,
  :func:`obliviate.metrics.gap.avg_gap`) is a failure.
* **the audit's power** — when the audit cannot separate the original from data it never saw
  (or from the reference), it cannot tell anything about the result either: the outcome is then
  *not verifiable at this size*, never "indistinguishable".

Outcomes (:data:`OUTCOMES`): ``exact`` (retrained, or SISA: provably no influence left),
``verified``, ``not verifiable``, ``refused`` (every attempt failed and retraining was forbidden, or
retraining by obliviate's ``fit`` could not keep the held-out utility).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

OUTCOMES = ("exact", "verified", "not verifiable", "refused")
N_BOOT = 1000


def _half_width(values: np.ndarray, seed: int, n_boot: int = N_BOOT) -> float:
    """Half-width of the 95 % percentile-bootstrap interval of ``values``' mean."""
    if len(values) < 2:
        return float("inf")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float((hi - lo) / 2)


def tolerances(outs: dict[str, tuple[torch.Tensor, torch.Tensor]], seed: int) -> dict[str, dict[str, float]]:
    """``{split: {accuracy, loss}}``: how far each of the original's utility figures may move
    before the move is more than its own sampling noise — the half-width of its 95 % bootstrap
    interval over the measured rows. An accuracy's is at least the Wilson interval's (a
    proportion at 100 % still has sampling noise); a loss's at least the held-out loss's (a
    memorised retain set's loss is near zero and so is its noise: a smaller move says nothing
    about utility)."""
    import torch.nn.functional as F

    out: dict[str, dict[str, float]] = {}
    for split in ("heldout", "retain"):
        logits, labels = outs[split]
        n = len(labels)
        if n < 2:
            continue
        correct = (logits.argmax(1) == labels).double().numpy()
        loss = F.cross_entropy(logits.double(), labels.long(), reduction="none").numpy()
        p, z = float(correct.mean()), 1.96
        wilson = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        out[split] = {
            "accuracy": max(_half_width(correct, seed + 3), float(wilson)),
            "loss": max(_half_width(loss, seed + 5), out.get("heldout", {}).get("loss", 0.0)),
        }
    return out


def utility_violations(before: dict[str, Any], after: dict[str, Any], tol: dict[str, dict[str, float]]) -> list[str]:
    """Each utility figure that moved the wrong way by more than its tolerance, said in words."""
    bad = []
    for split, t in tol.items():
        b, a = before.get(split, {}), after.get(split, {})
        if not (b.get("n") and a.get("n")):
            continue
        name = "retain" if split == "retain" else "held-out"
        drop = b["accuracy"] - a["accuracy"]
        if not drop <= t["accuracy"]:  # (NaN fails too)
            bad.append(
                f"{name} accuracy fell {100 * drop:.2f} points ({100 * b['accuracy']:.1f} → "
                f"{100 * a['accuracy']:.1f} %), more than its tolerance ±{100 * t['accuracy']:.2f}"
            )
        rise = a["loss"] - b["loss"]
        if not rise <= t["loss"]:
            bad.append(
                f"{name} loss rose {rise:.3f} nats ({b['loss']:.3f} → {a['loss']:.3f}), more than its "
                f"tolerance ±{t['loss']:.3f}"
            )
    return bad


@dataclass
class Power:
    """Whether the membership audit can see the forget rows at all (in the original)."""

    has_power: bool
    audit: str  # which audit decided it
    why: str


def audit_power(mem: dict[str, Any]) -> Power:
    """Read the original's audit: per-example (K ≥ 2 references) when present, else the
    population audit against the retrained reference when given, else against held-out rows."""
    pe = (mem.get("per_example") or {}).get("original") or {}
    if pe.get("available"):
        lo, hi = pe["ci95"]
        ok = lo > 0.5
        return Power(
            ok,
            "per-example (offline LiRA)",
            f"offline LiRA {'separates' if ok else 'does not separate'} the original's forget rows from "
            f"held-out rows: AUC {pe['auc']:.3f} [{lo:.3f}, {hi:.3f}]",
        )
    o = mem.get("original") or {}
    if not o.get("available"):
        return Power(False, "none", "no held-out rows: the membership audit could not run")
    lo, hi = o["ci95"]
    r = mem.get("retrained") or {}
    if r.get("available"):
        rlo, rhi = r["ci95"]
        ok = lo > rhi
        return Power(
            ok,
            "population, against the reference",
            f"the loss attack {'separates' if ok else 'does not separate'} the original (AUC {o['auc']:.3f} "
            f"[{lo:.3f}, {hi:.3f}]) from the retrained reference ({r['auc']:.3f} [{rlo:.3f}, {rhi:.3f}])",
        )
    ok = lo > 0.5
    return Power(
        ok,
        "population, against held-out rows",
        f"the loss attack {'separates' if ok else 'does not separate'} the original's forget rows from "
        f"held-out rows of their classes: AUC {o['auc']:.3f} [{lo:.3f}, {hi:.3f}]",
    )


def membership_reading(
    original: dict[str, Any], result: dict[str, Any], reference: dict[str, Any] | None = None
) -> tuple[str, str]:
    """``(reading, why)`` of the audit on the result, given that it separated the original:
    ``"forgotten"`` — the result is no longer separated (its interval holds 0.5, or overlaps the
    reference's) *and* the audit saw it move (its interval lies below the original's AUC);
    ``"recognised"`` — the result is still separated; ``"unsure"`` — neither, at this size."""
    if not (original.get("available") and result.get("available")):
        return "unsure", "an audit could not run"
    lo, hi = result["ci95"]
    if reference is not None and reference.get("available"):
        rlo, rhi = reference["ci95"]
        separated, against = lo > rhi, f"the retrained reference's {reference['auc']:.3f} [{rlo:.3f}, {rhi:.3f}]"
    else:
        separated, against = lo > 0.5, "0.5 (held-out rows)"
    said = f"result AUC {result['auc']:.3f} [{lo:.3f}, {hi:.3f}] against {against}; original {original['auc']:.3f}"
    if separated:
        return "recognised", f"the audit still recognises the forget rows in the result: {said}"
    if hi < original["auc"]:
        return "forgotten", f"the audit no longer separates the forget rows and saw them move: {said}"
    return "unsure", (
        f"the result is not separated, but its interval still holds the original's reading, so at "
        f"this size the audit cannot tell whether anything moved: {said}"
    )


def class_forgotten(
    after: dict[str, Any], per_class_after: dict[str, float | None], forget_classes: list[str], num_classes: int
) -> str | None:
    """Why a whole-class request is not forgotten (``None`` when it is): the forget rows or the
    class's held-out rows predicted above chance."""
    chance = 1.0 / num_classes
    bad = []
    if after["forget"]["accuracy"] > chance:
        bad.append(f"{100 * after['forget']['accuracy']:.1f} % of the forget rows")
    for c in forget_classes:
        v = per_class_after.get(c)
        if v is not None and v > chance:
            bad.append(f"{100 * v:.1f} % of {c}'s held-out rows")
    if bad:
        return (
            f"still predicted above chance ({100 * chance:.0f} %): "
            + ", ".join(bad)
            + "; a model retrained without the class scores ≈ 0 %"
        )
    return None


@dataclass
class Attempt:
    """One method tried under the guard, and what the guard measured of it."""

    method: str
    config: dict[str, Any]
    reason: str
    derived: dict[str, Any] = field(default_factory=dict)  # settings derived from this model, and how
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    after: dict[str, Any] = field(default_factory=dict)
    ran: bool = False
    reading: str = ""  # the membership audit's reading of the result (sample requests)

    @property
    def passed(self) -> bool:
        return not self.failures

    def record(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "config": self.config,
            "reason": self.reason,
            "derived": self.derived,
            "seconds": self.seconds,
            "steps": self.steps,
            "passed": self.passed,
            "failures": self.failures,
            "membership_reading": self.reading or None,
            "after": {k: v for k, v in self.after.items() if k in ("forget", "retain", "heldout")},
        }
