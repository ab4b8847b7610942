"""The report's membership-audit section: per-example attacks against K reference models, with a
plain verdict per method, beside the population attacks with their intervals and protocols.

Reads only the records: each run's ``values`` (``lira/…``, ``rmia/…``, ``probe/…``,
``mia_loss/auc_lo``…), each run's ``audit.phi_forget`` and its group's ``audit`` (the reference
models' φ on the forget rows), from which the per-example ε across seeds is computed here.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from ..attacks.per_example import epsilon_cap, epsilon_per_example
from .blocks import Details, Document, Heading, Para, Table


def seed_verdict(v: dict[str, float], attack: str = "lira") -> tuple[str, str]:
    """``(level, text)`` for one run: its AUC interval against 0.5 and against the retrained model's.

    ``indistinguishable`` when the interval holds 0.5 *or* overlaps the retrained model's interval
    (a model that never saw the rows is the yardstick: at small K the attack itself may sit off
    0.5); otherwise ``distinguishable`` (above) or ``over-forgotten`` (below)."""
    a, lo, hi = v[f"{attack}/auc"], v[f"{attack}/auc_lo"], v[f"{attack}/auc_hi"]
    rlo, rhi = v.get(f"{attack}/auc_lo@retrained"), v.get(f"{attack}/auc_hi@retrained")
    fig = f"AUC {a:.3f} [{lo:.3f}, {hi:.3f}]"
    if lo <= 0.5 <= hi:
        return "indistinguishable", fig
    if rlo is not None and rhi is not None and hi >= rlo and rhi >= lo:
        return "indistinguishable", f"{fig}, overlaps the retrained model's [{rlo:.3f}, {rhi:.3f}]"
    return ("distinguishable" if lo > 0.5 else "over-forgotten"), fig


PLAIN = {
    "indistinguishable": "indistinguishable from the retrained models",
    "distinguishable": "still recognisable as members",
    "over-forgotten": "over-forgotten (less familiar than unseen rows)",
}


def method_verdict(runs: list[dict[str, Any]], k: int) -> str:
    """One sentence over a method's seeds, worst seed first."""
    per = sorted(((r["seed"], *seed_verdict(r["values"])) for r in runs), key=lambda t: t[0])
    order = ("distinguishable", "over-forgotten", "indistinguishable")
    worst = min((lvl for _, lvl, _ in per), key=order.index)
    n_ok = sum(lvl == worst for _, lvl, _ in per)
    figs = "; ".join(f"seed {s}: {t}" for s, _, t in per)
    return f"{PLAIN[worst]} on {n_ok} of {len(per)} seed(s) at K = {k} (offline LiRA): {figs}"


def epsilon_rows(
    runs: list[dict[str, Any]], groups: dict[str, dict[str, Any]]
) -> dict[str, tuple[float, float, int, int, float]]:
    """Per method: (mean ε, median ε, U, R, cap) over the forget rows, U = the method's models (one
    per seed), R = every reference model of the same forget set, cap = the largest ε U and R can
    show (:func:`~obliviate.attacks.per_example.epsilon_cap`). Only where ≥ 2 seeds share one forget set."""
    by_forget: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        g = groups.get(r.get("group_key", ""))
        if g is None or "phi_forget" not in r.get("audit", {}) or "reference_phi_forget" not in g.get("audit", {}):
            continue
        by_forget[(g.get("inputs") or {}).get("forget_ids_sha256", "")].append(r)
    out: dict[str, tuple[float, float, int, int, float]] = {}
    for rs in by_forget.values():
        gkeys = sorted({r["group_key"] for r in rs})
        ref = [p for gk in gkeys for p in groups[gk]["audit"].get("reference_phi_forget", [])]
        if len(gkeys) < 2 or len(ref) < 2:
            continue
        by_method: dict[str, list[list[float]]] = defaultdict(list)
        for r in sorted(rs, key=lambda r: r["seed"]):
            by_method[r["method"]].append(r["audit"]["phi_forget"])
        for m, u in by_method.items():
            if len(u) >= 2 and all(len(x) == len(ref[0]) for x in u):
                eps = epsilon_per_example(np.asarray(u), np.asarray(ref))
                out[m] = (float(eps.mean()), float(np.median(eps)), len(u), len(ref), epsilon_cap(len(u), len(ref)))
    return out


def membership_section(
    doc: Document | Details,
    runs: list[dict[str, Any]],
    groups: list[dict[str, Any]],
    model: str,
    request: str,
    methods: list[str],
) -> None:
    """The audit table of one (model, request), when the study trained reference models."""
    mine = [r for r in runs if r["model"] == model and r["request"] == request]
    gmap = {g["key"]: g for g in groups if "key" in g}
    audited = [r for r in mine if "lira/auc" in r.get("values", {})]
    pop = [r for r in mine if "mia_loss/auc_lo" in r.get("values", {})]
    if not audited and not pop:
        return
    doc.add(Heading("Membership audit", level=3))
    if audited:
        k = int(audited[0]["values"]["lira/k"])
        g0 = gmap.get(audited[0].get("group_key", ""), {}).get("audit", {})
        eps = epsilon_rows(audited, gmap)
        rows = []
        for m in methods:
            rs = [r for r in audited if r["method"] == m]
            if not rs:
                continue
            v = [r["values"] for r in rs]

            def mean(key: str, v: list[dict[str, float]] = v) -> str:
                xs = [x[key] for x in v if key in x]
                return f"{np.mean(xs):.3f}" if xs else "–"

            e = eps.get(m)
            probe = (
                f"{100 * np.mean([x['probe/test_forget_acc'] for x in v]):.1f} "
                f"(R {100 * np.mean([x['probe/test_forget_acc@retrained'] for x in v]):.1f})"
                if all("probe/test_forget_acc@retrained" in x for x in v)
                else "–"
            )
            rows.append(
                [
                    m,
                    mean("lira/auc"),
                    mean("lira/tpr_at_1pct"),
                    mean("lira/tpr_at_0p1pct"),
                    mean("rmia/auc"),
                    f"{e[0]:.2f} / {e[1]:.2f}" if e else "–",
                    probe,
                    method_verdict(rs, k),
                ]
            )
        cost = g0.get("reference_seconds")
        doc.add(
            Table(
                [
                    "method",
                    "LiRA AUC ≈R",
                    "TPR @1 % FPR",
                    "TPR @0.1 % FPR",
                    "RMIA AUC ≈R",
                    "ε mean / median ↓",
                    "probe forget-class acc % (retrained)",
                    "verdict",
                ],
                rows,
                caption=(
                    f"Per-example membership audit (attacker: offline, K = {k} reference models retrained without "
                    f"the forget rows, queries {', '.join(g0.get('queries', []))}): forget rows against "
                    f"{g0.get('heldout_rows', '?')} held-out test rows in the forget set's class proportions; "
                    "AUC and TPR are means over seeds, intervals (95 % bootstrap over rows) in the verdict. "
                    "A method is indistinguishable when its interval holds 0.5 or overlaps the retrained "
                    "model's (the retrained model is not one of the K). ε: the NeurIPS 2023 challenge's "
                    "per-example estimate (δ = 0.05) from this method's models over seeds against every "
                    "reference model of the same forget set; few models bias it upward and bound it (with "
                    + (
                        f"U = {next(iter(eps.values()))[2]} and R = {next(iter(eps.values()))[3]} it cannot exceed "
                        f"{next(iter(eps.values()))[4]:.2f}: a value at that cap means 'as separable as these "
                        "models can show')"
                        if eps
                        else "few models it is capped"
                    )
                    + " — read it against the `retrain` row. Probe: a linear head on frozen penultimate features, "
                    "scored on the forgotten class's test rows (class requests)."
                    + (f" The K references cost {cost:.1f} s of training per seed." if cost else "")
                    + (
                        " For a class request the held-out rows are unseen test rows of the forgotten class, so "
                        "LiRA and RMIA ask whether the forget *rows* are remembered beyond their class; whether "
                        "the class itself is still known shows in the forget accuracy, in ε and in the probe."
                        if any(gmap.get(r.get("group_key", ""), {}).get("forget_classes") for r in audited)
                        else ""
                    )
                ),
            )
        )
    if pop:
        rows = []
        for m in methods:
            rs = [r["values"] for r in pop if r["method"] == m]
            if not rs:
                continue

            def cell(key: str, lo: str, hi: str, pct: bool = False, rs: list[dict[str, float]] = rs) -> str:
                if key not in rs[0]:
                    return "–"
                s = 100.0 if pct else 1.0
                d = 1 if pct else 3
                parts = [
                    f"{s * x[key]:.{d}f}" + (f" [{s * x[lo]:.{d}f}, {s * x[hi]:.{d}f}]" if lo in x else "") for x in rs
                ]
                return "; ".join(parts)

            rows.append(
                [
                    m,
                    cell("mia_loss/auc", "mia_loss/auc_lo", "mia_loss/auc_hi"),
                    cell(
                        "mia_efficacy/confidence",
                        "mia_efficacy/confidence/draws_lo",
                        "mia_efficacy/confidence/draws_hi",
                        True,
                    ),
                    cell("mia_efficacy_salun", "mia_efficacy_salun/draws_lo", "mia_efficacy_salun/draws_hi", True),
                    cell("gap/avg", "", "", False),
                    cell("gap_salun/avg", "", "", False),
                ]
            )
        doc.add(
            Table(
                [
                    "method",
                    "loss-MIA AUC [95 % CI]",
                    "MIA-efficacy % (obliviate) [draw range]",
                    "MIA-efficacy % (SalUn protocol) [draw range]",
                    "Avg. gap (obliviate)",
                    "Avg. gap (SalUn protocol)",
                ],
                rows,
                caption=(
                    "Population attacks, one entry per seed. Loss-MIA: forget rows against class-matched held-out "
                    "rows, 95 % bootstrap interval. MIA-efficacy, obliviate's protocol: SVC fitted on ≤ 2,000 "
                    "retain vs ≤ 2,000 test rows (all classes); SalUn's protocol: as many retain rows as test "
                    "rows against the test set without the forgotten class, uncapped (Classification/"
                    "main_forget.py). The bracket is the range over the study's row draws (audit.draws). The "
                    "Avg. gap with SalUn's protocol is the one to set beside SalUn's published tables."
                ),
            )
        )
        if not audited:
            doc.add(
                Para(
                    "No reference models were trained (audit.references = 0): population attacks only. "
                    "They can show that a forget set is still recognisable, not that it is gone."
                )
            )
