"""The report's conclusion: methods ranked by their gap to the retrained model, a one-line verdict
each, the study's target and the noise floor drawn on the table, and what the audits can tell.

A verdict reads only a method's mean values and the retrained model's (``retrain`` rows of the
same model and request) and the noise floor (:func:`obliviate.study.targets.noise_floor_components`,
two retrains of different seeds):

* **indistinguishable from retraining** — Avg. gap within the noise floor;
* **forgets too little** — forget accuracy (or the forget set's MIA-efficacy) on the original's
  side of the retrained model by more than the tolerance;
* **over-forgets** — on the other side by more than the tolerance: itself a signal to an
  attacker (the folded over-forgetting table applies :func:`obliviate.metrics.gap.over_forgetting`,
  whose fixed 5-point margin is coarser);
* **loses utility** — retained-class test accuracy (test accuracy on a sample-level request) below
  the retrained model's by more than the tolerance, or a retained class losing more than the target
  allows. Accuracy on the retained *training* rows is not utility: a model that fits them less
  tightly than the retrained one, at the same test accuracy, has that said in its sentence (and
  in its Avg. gap), not this label;
* **forgets** — none of these: the gap is made of small differences.

The tolerance of a component is twice its noise floor, and at least 1 point (one test image of a
small class can move accuracy by more than the floor).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..study.targets import DEFAULT_TARGETS, Target, check_target, noise_floor_components, request_kind

REFERENCES = ("original", "retrain")
MIN_TOLERANCE = 1.0  # points


Stats = Mapping[str, tuple[float, float, int]]  # key -> (mean, std, n seeds), as report.aggregate


def _m(vals: Stats, key: str) -> float | None:
    v = vals.get(key)
    return None if v is None or not math.isfinite(v[0]) else float(v[0])


def tolerances(floor: Mapping[str, float] | None) -> dict[str, float]:
    """Points a component may differ from the retrained model's before a verdict names it."""
    keys = ("acc/forget", "acc/retain", "acc/test_retain", "acc/test", "mia_efficacy/confidence")
    return {k: max(MIN_TOLERANCE, 2.0 * (floor or {}).get(k, 0.0)) for k in keys}


def method_verdict(
    vals: Stats,
    ref: Stats,
    floor: Mapping[str, float] | None,
    target: Target | None,
    exact: bool = False,
    info: Mapping[str, Any] | None = None,
) -> tuple[str, str]:
    """``(label, sentence)`` for one method: the label is one of the module's five verdicts (or
    two joined by "and"), or ``not judged`` when there is no gap or no retrained run to judge
    against; the sentence gives the numbers that decide it."""
    tol = tolerances(floor)
    gap = _m(vals, "gap/avg")
    if gap is None:
        return "not judged", "no Avg. gap recorded"
    if not all(_m(ref, k) is not None for k in ("acc/forget", "acc/retain")):
        return "not judged", "no `retrain` run of this request to compare with (add `retrain` to the study's methods)"
    floor_avg = (floor or {}).get("avg")
    test_key = "acc/test_retain" if "acc/test_retain" in vals and "acc/test_retain" in ref else "acc/test"

    def pts(key: str) -> tuple[float, float] | None:
        a, b = _m(vals, key), _m(ref, key)
        return None if a is None or b is None else (100 * a, 100 * b)

    if floor_avg is not None and gap <= floor_avg:
        return ("indistinguishable from retraining", f"Avg. gap {gap:.2f} ≤ noise floor {floor_avg:.2f} pts")
    labels: list[str] = []
    why: list[str] = []
    f = pts("acc/forget")
    if f is not None and abs(f[0] - f[1]) > tol["acc/forget"]:
        labels.append("forgets too little" if f[0] > f[1] else "over-forgets")
        why.append(f"forget acc {f[0]:.1f} vs retrained {f[1]:.1f}\u00a0%")
    mia = pts("mia_efficacy/confidence")
    if mia is not None and abs(mia[0] - mia[1]) > tol["mia_efficacy/confidence"] and not labels:
        labels.append("forgets too little" if mia[0] < mia[1] else "over-forgets")
        why.append(f"MIA-efficacy {mia[0]:.1f} vs retrained {mia[1]:.1f}")
    utility = []
    u = pts(test_key)
    if u is not None and u[1] - u[0] > tol[test_key]:
        name = "retained-class test acc" if test_key == "acc/test_retain" else "test acc"
        utility.append(f"{name} {u[0]:.1f} vs {u[1]:.1f}\u00a0%")
    fit = pts("acc/retain")  # training rows kept: fitted less tightly is part of the gap, not lost utility
    loose = fit is not None and fit[1] - fit[0] > tol["acc/retain"]
    drop = _m(vals, "worst_class_drop")
    if target is not None and target.max_class_drop is not None and drop is not None and drop > target.max_class_drop:
        utility.append(f"a retained class −{drop:.1f} pts vs the original (≤ {target.max_class_drop:g} allowed)")
    if utility:
        labels.append("loses utility")
        why += utility
    if not labels:
        labels.append("forgets")
        bar = target.gap_bar(floor_avg) if target is not None else None
        why.append(
            f"Avg. gap {gap:.2f} pts, "
            + ("forget and test components within their tolerance" if loose else "every component within its tolerance")
            + ("" if bar is None else (f" (target ≤ {bar:.2f})" if gap > bar else f", within the target ≤ {bar:.2f}"))
        )
    if loose and fit is not None:
        gloss = "" if "loses utility" in labels else ": fits the rows it keeps less tightly"
        why.append(f"retain (training) acc {fit[0]:.1f} vs {fit[1]:.1f}\u00a0%{gloss}")
    text = "; ".join(why)
    if exact:
        text += (
            "; exact by construction (the forget rows never reach its retrained parts): the gap is this "
            "design's own cost against one model retrained on all retained rows"
        )
        shards = (info or {}).get("shards")
        if shards:
            text += f" — {shards} constituents, each fitted on 1/{shards} of the data"
    return " and ".join(dict.fromkeys(labels)), text


def ranked_rows(
    agg: Mapping[tuple[str, str, str], Stats],
    runs: Sequence[Mapping[str, Any]],
    model: str,
    request: str,
    methods: Sequence[str],
    targets: Mapping[str, Target] | None = None,
) -> dict[str, Any]:
    """Everything the headline needs for one (model, request): the candidates ranked by Avg. gap
    with their verdicts and target checks, the references, the target and the noise floor."""
    targets = targets or DEFAULT_TARGETS
    target = targets.get(request_kind(request))
    mine = [r for r in runs if r["model"] == model and r["request"] == request]
    retrain_labels = list(dict.fromkeys(r["method"] for r in mine if r.get("method_name", r["method"]) == "retrain"))
    label = "retrain" if "retrain" in retrain_labels else (retrain_labels[0] if retrain_labels else "retrain")
    retrain_runs = sorted((r for r in mine if r["method"] == label), key=lambda r: r["seed"])
    floor = noise_floor_components(retrain_runs)
    ref = agg.get((model, request, label)) or {}
    out: dict[str, Any] = {
        "target": target,
        "floor": floor,
        "candidates": [],
        "references": [],
        "retrain_label": label if retrain_runs else None,
    }
    for m in methods:
        vals = agg.get((model, request, m))
        if vals is None:
            continue
        mruns = [r for r in mine if r["method"] == m]
        name = mruns[0].get("method_name", m) if mruns else m
        row: dict[str, Any] = {"method": m, "values": vals}
        if name in REFERENCES:
            out["references"].append(row)
            continue
        info = mruns[0].get("info") or {} if mruns else {}
        row["label"], row["why"] = method_verdict(vals, ref, floor, target, bool(mruns and mruns[0].get("exact")), info)
        if target is not None:
            row["target"] = check_target([r["values"] for r in mruns], target, (floor or {}).get("avg"))
        out["candidates"].append(row)
    out["candidates"].sort(key=lambda r: (_m(r["values"], "gap/avg") is None, _m(r["values"], "gap/avg") or 0.0))
    return out


def summary_sentence(ranked: Mapping[str, Any]) -> str:
    """Who is closest, who reaches the target, how far doing nothing is."""
    cands = ranked["candidates"]
    if not cands:
        return "No unlearning method finished on this request."
    target: Target | None = ranked["target"]
    floor = (ranked["floor"] or {}).get("avg")
    best = cands[0]
    if "gap/avg" not in best["values"]:
        return (
            "No Avg. gap to the retrained model was recorded (the study's metrics leave out `gap_to_retrain` "
            "or it has no `retrain` reference): the methods are listed in the study's order, unranked."
        )
    g = best["values"]["gap/avg"]
    parts = [f"Closest to retraining: **{best['method']}**, Avg. gap {g[0]:.2f} ± {g[1]:.2f} pts ({best['label']})."]
    if floor is not None:
        inside = [c["method"] for c in cands if c["label"] == "indistinguishable from retraining"]
        parts.append(
            f"Two retrained models of different seeds differ by {floor:.2f} pts (the noise floor); "
            + (
                f"{', '.join(inside)} {'is' if len(inside) == 1 else 'are'} within it."
                if inside
                else "no method is within it."
            )
        )
    elif ranked.get("retrain_label") is None:
        parts.append("No `retrain` run: nothing to judge against (add `retrain` to the study's methods).")
    else:
        parts.append("The noise floor needs at least two seeds; with one, only the target separates the methods.")
    if target is not None:
        reached = [c["method"] for c in cands if c.get("target", {}).get("passes")]
        parts.append(
            f"Target ({target.describe(floor)}): "
            + (f"reached by {', '.join(reached)}." if reached else "reached by no method.")
        )
    orig = next((r for r in ranked["references"] if r["method"] == "original"), None)
    if orig is not None and "gap/avg" in orig["values"]:
        parts.append(f"Doing nothing (the original) is {orig['values']['gap/avg'][0]:.2f} pts away.")
    return " ".join(parts)


def privacy_paragraph(
    runs: Sequence[Mapping[str, Any]],
    groups: Sequence[Mapping[str, Any]],
    model: str,
    request: str,
    ranked: Mapping[str, Any],
) -> str:
    """What the membership audits of this (model, request) can and cannot tell, with its numbers."""
    mine = [r for r in runs if r["model"] == model and r["request"] == request]
    cand = {c["method"] for c in ranked["candidates"]}
    g0 = next((g for g in groups if g["model"] == model and g["request"] == request), {})
    n_forget = (g0.get("split_sizes") or {}).get("forget")
    audit = g0.get("audit") or {}
    parts: list[str] = []
    audited = [r for r in mine if "lira/auc" in r.get("values", {}) and r["method"] in cand]
    if audited:
        from .audit import seed_verdict

        k = int(audited[0]["values"]["lira/k"])
        levels: dict[str, set[str]] = {}
        widths = []
        for r in audited:
            levels.setdefault(r["method"], set()).add(seed_verdict(r["values"])[0])
            widths.append(r["values"]["lira/auc_hi"] - r["values"]["lira/auc_lo"])
        clean = sorted(m for m, lv in levels.items() if lv == {"indistinguishable"})
        flagged = sorted(m for m, lv in levels.items() if "distinguishable" in lv)
        over = sorted(m for m, lv in levels.items() if "over-forgotten" in lv)
        widths.sort()
        w = widths[len(widths) // 2]
        parts.append(
            f"**Privacy.** The per-example audit (offline LiRA, K = {k} reference models retrained without the "
            f"forget rows) finds {len(clean)} of {len(levels)} methods indistinguishable from the retrained "
            "models on every seed"
            + (f"; still recognisable on some seed: {', '.join(flagged)}" if flagged else "")
            + (f"; over-forgotten on some seed: {', '.join(over)}" if over else "")
            + "."
        )
        heldout = audit.get("heldout_rows")
        parts.append(
            f"What it cannot tell: with {n_forget or '?'} forget rows against {heldout or '?'} held-out rows the "
            f"95 % interval on the AUC is about {w:.2f} wide, so a leak smaller than ±{w / 2:.2f} AUC is invisible; "
            f"TPR at 0.1 % FPR rests on {'fewer than 1,000' if (heldout or 0) < 1000 else f'{heldout:,}'} "
            f"non-members ({'a handful of rows decide it' if (heldout or 0) < 1000 else 'enough to read'}); "
            f"K = {k} references bound how separable ε can show a model to be."
        )
        if g0.get("forget_classes"):
            parts.append(
                "For a class request the question the audit asks is whether the forget *rows* are remembered "
                "beyond their class; whether the class is still known shows in the forget accuracy and the probe."
            )
    else:
        parts.append(
            "**Privacy.** Population attacks only (no reference models were trained: set `audit.references`): "
            "they can show that a forget set is still recognisable, not that it is gone."
        )
    parts.append(
        "No attack proves the data is gone; these say only that the attacks run here cannot tell the model "
        "from retrained ones at this scale."
    )
    return " ".join(parts)
