"""Turn a study directory (study.json, runs/, groups/) into report.md and report.html.

The report shows, per (model, request): the methods ranked by Avg. gap with a verdict each, the
noise floor and the study's target (:mod:`.verdict`), the references apart, a privacy paragraph;
a methods × classes heatmap of the difference to the retrained model, gap vs wall time and the
forget-vs-utility trade-off; then, folded, confusion matrices before/after (raw and normalised),
every headline metric, over-forgetting flags, the membership audit, the paper's Table I layout and
its own numbers, every metric and a glossary; and what ran (versions, device, seeds, scale).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..study.targets import DEFAULT_TARGETS, Target, parse_targets
from . import plots
from .audit import membership_section
from .blocks import Code, Details, Document, Figure, Heading, Para, Raw, Table, walk
from .verdict import Stats, privacy_paragraph, ranked_rows, summary_sentence

# Headline columns: (result key, column title). Shown when present in the records.
HEADLINE: tuple[tuple[str, str], ...] = (
    ("gap/avg", "Avg. gap to retrain (pts)"),
    ("acc/forget", "Forget-train acc"),
    ("acc/test_forget", "Forget-class test acc"),
    ("acc/retain", "Retain-train acc"),
    ("acc/test", "Test acc"),
    ("acc/test_retain", "Retain-class test acc"),
    ("mia_efficacy/confidence", "MIA-efficacy"),
    ("mia_loss/auc", "Loss-MIA AUC"),
    ("zrf/forget", "ZRF (forget)"),
    ("js_to_retrained/forget", "JS to retrain (forget, bits)"),
    ("worst_class_drop", "Worst retained-class drop (pts)"),
    ("efficiency/seconds", "Time (s)"),
    ("efficiency/speedup", "Speed-up vs retrain"),
    ("efficiency/peak_memory_mb", "Peak memory above the call's start (MiB)"),
)


def _fmt(key: str, mean: float, std: float | None = None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    pct = key.startswith(("acc/", "table1/", "mia_efficacy/", "mia_entropy/"))
    scale = 100.0 if pct else 1.0
    m = mean * scale
    digits = 1 if pct or abs(m) >= 100 else (3 if abs(m) < 10 else 2)
    s = f"{m:.{digits}f}"
    if std is not None and std > 0:
        s += f" ± {std * scale:.{digits}f}"
    return s


def aggregate(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, tuple[float, float, int]]]:
    """(model, request, method) -> key -> (mean, std (ddof=1; 0 for one seed), n seeds)."""
    acc: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        for k, v in r["values"].items():
            acc[(r["model"], r["request"], r["method"])][k].append(float(v))
    out: dict[tuple[str, str, str], dict[str, tuple[float, float, int]]] = {}
    for g, kv in acc.items():
        out[g] = {
            k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)) for k, v in kv.items()
        }
    return out


def _load(out_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The study, its finished runs, its groups and its failed runs — only the records the spec in
    ``study.json`` names by key (superseded records are never read)."""
    from ..study.store import ResultStore

    path = out_dir / "study.json"
    if not path.is_file():
        raise FileNotFoundError(f"{out_dir} holds no study.json: not a study folder (run `obliviate run` first)")
    try:
        study = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RuntimeError(f"{path} is damaged ({e}): run the study again to rewrite it") from None
    store = ResultStore(out_dir)
    records = store.runs()
    runs = [r for r in records if r.get("status") == "ok"]
    failed = [r for r in records if r.get("status") == "failed"]
    return study, runs, store.groups(), failed


def _directions(runs: list[dict[str, Any]]) -> dict[str, str]:
    d: dict[str, str] = {}
    for r in runs:
        d.update(r.get("directions", {}))
    return d


def _arrow(direction: str) -> str:
    return {"higher": "↑", "lower": "↓", "closest_to_retrained": "≈R", "info": ""}.get(direction, "")


def render_report(out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` (+ ``figures/``) and a self-contained ``report.html`` into ``out_dir``."""
    out_dir = Path(out_dir)
    study, runs, groups, failed = _load(out_dir)
    doc = Document(f"obliviate report — {study['name']}" + (f" ({study['scale']} scale)" if study.get("scale") else ""))
    if study.get("description"):
        doc.add(Para(study["description"]))
    if study.get("scale_note"):
        doc.add(Para(f"**Scale:** {study['scale_note']}"))
    _failures(doc, failed)
    if study.get("task") in ("llm", "llm_qa"):
        _llm_section(doc, out_dir, runs)
    else:
        _vision_sections(doc, study, runs, groups)
    _what_ran(doc, study, runs, groups)
    return doc.write(out_dir)


def _failures(doc: Document, failed: list[dict[str, Any]]) -> None:
    """Failed runs first: a diverged run is a failure, never a result."""
    if not failed:
        return
    doc.add(Heading("Failed runs"))
    rows = []
    for r in failed:
        e = r.get("error") or {}
        where = e.get("where") or e.get("type") or "error"
        step = "" if e.get("step") is None else str(e["step"])
        rows.append(
            [
                r["method"],
                r["model"],
                r["request"],
                str(r["seed"]),
                where,
                step,
                str(e.get("value", "")),
                (e.get("stage") or ""),
            ]
        )
    doc.add(
        Table(
            ["method", "model", "request", "seed", "what", "step", "value", "stage"],
            rows,
            caption=f"{len(failed)} run(s) failed and have no metrics: they are not in any table below. "
            "A non-finite loss, weight or output means the method diverged with this configuration.",
        )
    )


def _llm_section(doc: Document, out_dir: Path, runs: list[dict[str, Any]]) -> None:
    from ..study.store import record_rows

    rows = [row for r in runs for row in record_rows(r, "", None)]
    answers_path = out_dir / "llm_answers.json"
    answers = json.loads(answers_path.read_text()) if answers_path.is_file() else {}
    from .llm import render_llm_section

    doc.add(Raw(render_llm_section(rows, answers), first_table_id="headline"))
    _llm_figures(doc, rows)


# (x, y) of the LLM trade-off figure, first present wins: the request's own criterion against utility.
LLM_X = (
    ("forget_target_rate", "requested answer on the forget set (rate) — higher is better"),
    ("forget_flip_rate", "answers changed on the forget set (rate)"),
    ("forget_acc", "forget-set accuracy — closest to retrained is best"),
)
LLM_Y = (("heldout_acc", "held-out accuracy — higher is better"), ("retain_acc", "retain accuracy — higher is better"))
# the fictitious-entity study's: TOFU's own figure
QA_XY = (
    ("forget_quality", "TOFU forget quality (KS p-value against the retain model) — higher is better"),
    ("model_utility", "TOFU model utility — higher is better"),
)


def _llm_figures(doc: Document, rows: list[dict[str, Any]]) -> None:
    """Per (model, request): the request's criterion against held-out utility, one colour per method."""
    from .llm import REFERENCES as LLM_REFERENCES

    for model, request in dict.fromkeys((r["model"], r["request"]) for r in rows):
        sub = [r for r in rows if r["model"] == model and r["request"] == request]
        present = {r["metric"] for r in sub}
        x: tuple[str, str] | None
        y: tuple[str, str] | None
        if "model_utility" in present:
            x, y = QA_XY
        else:
            x = next((m for m in LLM_X if m[0] in present), None)
            y = next((m for m in LLM_Y if m[0] in present), None)
        if x is None or y is None:
            continue
        methods = list(dict.fromkeys(r["method"] for r in sub))
        order = [m for m in LLM_REFERENCES if m in methods] + [m for m in methods if m not in LLM_REFERENCES]
        pts = []
        for m in order:
            xs = [float(r["value"]) for r in sub if r["method"] == m and r["metric"] == x[0]]
            ys = [float(r["value"]) for r in sub if r["method"] == m and r["metric"] == y[0]]
            if xs and ys:
                pts.append(
                    (
                        m,
                        float(np.mean(xs)),
                        float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0,
                        float(np.mean(ys)),
                        float(np.std(ys, ddof=1)) if len(ys) > 1 else 0.0,
                    )
                )
        if len(pts) < 2:
            continue
        slug = _slug(model, request)
        try:
            png = plots.scatter_with_errors(
                pts, x[1], y[1], f"{model} — {request}", mark="retrained", colours=plots.method_colours(order)
            )
        except ImportError as e:
            doc.add(Para(f"(figures skipped: {e})"))
            return
        doc.add(
            Figure(
                f"llm_tradeoff_{slug}.png",
                png,
                f"{model}, request `{request}`: {x[0]} against {y[0]} (mean ± std over seeds); the star is "
                "the model tuned without the forget set, grey the model before unlearning.",
            )
        )


def _vision_sections(
    doc: Document, study: dict[str, Any], runs: list[dict[str, Any]], groups: list[dict[str, Any]]
) -> None:
    if not runs:
        doc.add(Para("No finished runs yet."))
        return
    agg = aggregate(runs)
    directions = _directions(runs)
    method_order = list(dict.fromkeys(r["method"] for r in runs))
    pairs = list(dict.fromkeys((r["model"], r["request"]) for r in runs))
    seeds = sorted({r["seed"] for r in runs})
    targets = _targets(study)
    colours = plots.method_colours(method_order)
    for model, request in pairs:
        doc.add(Heading(f"{model} — forget {request}"))
        ranked = ranked_rows(agg, runs, model, request, method_order, targets)
        first = not any(isinstance(b, Table) and b.id == "headline" for b in walk(doc.blocks))
        doc.add(Para(summary_sentence(ranked)))
        _headline(doc, ranked, seeds, anchor="headline" if first else "")
        doc.add(Para(privacy_paragraph(runs, groups, model, request, ranked)))
        _saturation_note(doc, agg, model, request, method_order)
        order = [r["method"] for r in ranked["references"] if r["method"] == "original"] + [
            r["method"] for r in ranked["candidates"]
        ]
        _figures(doc, runs, groups, agg, model, request, order, ranked, colours)
        more = Details(
            "More tables: every headline metric, over-forgetting flags, the membership audit, "
            "the paper's Table I layout and its own numbers, every metric"
        )
        _headline_metrics(more, agg, directions, model, request, method_order)
        _flags(more, agg, model, request, method_order)
        membership_section(more, runs, groups, model, request, method_order)
        _table_one(more, agg, model, request, method_order)
        _paper_comparison(more, study.get("paper") or {}, agg, model, request, method_order)
        _all_metrics(more, agg, directions, model, request, method_order)
        doc.add(more)
    glossary = Details("Metrics used and how to read them")
    _glossary(glossary, runs)
    doc.add(glossary)


def _targets(study: dict[str, Any]) -> dict[str, Target]:
    """The study's targets as recorded in study.json's spec (defaults for request kinds it leaves out)."""
    try:
        return parse_targets((study.get("spec") or {}).get("targets"))
    except ValueError:  # a study.json written by hand: the defaults, never a crash of the report
        return dict(DEFAULT_TARGETS)


# Ranked headline columns: (record key, title with direction).
RANKED: tuple[tuple[str, str], ...] = (
    ("gap/avg", "Avg. gap to retrain (pts) ↓"),
    ("acc/forget", "forget acc % ≈R"),
    ("acc/test_retain", "retained-class test acc % ↑"),
    ("mia_efficacy/confidence", "MIA-efficacy ≈R"),
    ("worst_class_drop", "worst retained class drop (pts) ↓"),
    ("efficiency/seconds", "time (s), speed-up ↑"),
)


def _short(key: str, stat: tuple[float, float, int]) -> str:
    """A compact ``mean ± std`` for the ranked table: points and seconds to 2 decimals, accuracies
    to 1, speed-ups as ``12.3×``."""
    mean, std = stat[0], stat[1]
    pct = key.startswith(("acc/", "mia_efficacy/"))
    m, sd = (100 * mean, 100 * std) if pct else (mean, std)
    d = 1 if pct or key == "worst_class_drop" else 2
    return f"{m:.{d}f}" + (f" ± {sd:.{d}f}" if round(sd, d) > 0 else "")


def _cell(key: str, vals: Stats) -> str:
    if key not in vals:
        return "–"
    if key == "efficiency/seconds" and "efficiency/speedup" in vals:
        return f"{_short(key, vals[key])} ({vals['efficiency/speedup'][0]:.1f}×)"
    return _short(key, vals[key])


def _headline(doc: Document | Details, ranked: dict[str, Any], seeds: list[int], anchor: str) -> None:
    """Methods ranked by Avg. gap with their verdicts; the noise floor and the target drawn as lines
    at their place in the ranking; the references in a table of their own."""
    keys = [(k, t) for k, t in RANKED if any(k in r["values"] for r in ranked["candidates"] + ranked["references"])]
    floor = (ranked["floor"] or {}).get("avg")
    target: Target | None = ranked["target"]
    bar = target.gap_bar(floor) if target is not None else None
    lines = []
    gap_col = next((i for i, (k, _) in enumerate(keys) if k == "gap/avg"), None)
    if gap_col is not None:  # lines are drawn at their place in the gap ranking, in its column
        if floor is not None:
            lines.append((floor, "noise floor", f"two retrained models of different seeds differ by {floor:.2f} pts"))
        if target is not None and bar is not None and target.max_gap is not None:
            lines.append((bar, "target", target.describe(floor)))
    lines.sort()

    def line_row(value: float, name: str, text: str) -> list[str]:
        cells = [""] * len(keys)
        cells[gap_col or 0] = f"{value:.2f}"
        return ["", f"— {name} —", text] + cells + [""]

    rows: list[list[str]] = []
    classes: list[str] = []
    for rank, r in enumerate(ranked["candidates"], start=1):
        gap = r["values"]["gap/avg"][0] if "gap/avg" in r["values"] else math.inf
        while lines and gap > lines[0][0]:
            rows.append(line_row(*lines.pop(0)))
            classes.append("mark")
        tgt = r.get("target")
        passes = "–" if tgt is None else ("**yes**" if tgt["passes"] else "no: " + ", ".join(tgt["failed"]))
        rows.append(
            [str(rank), r["method"], f"**{r['label']}**: {r['why']}"]
            + [_cell(k, r["values"]) for k, _ in keys]
            + [passes]
        )
        classes.append("")
    for value, name, text in lines:
        rows.append(line_row(value, name, text))
        classes.append("mark")
    doc.add(
        Table(
            ["#", "method", "verdict"] + [t for _, t in keys] + ["meets the target"],
            rows,
            caption=(
                f"Methods ranked by the Avg. gap to the retrained model (SalUn's four numbers: forget, retain "
                f"and retained-class test accuracy, MIA-efficacy), mean ± std over seeds {seeds}; accuracies "
                "in %. Highlighted lines mark the noise floor and the target where they fall in the ranking; "
                "the last column names the target's criteria a method misses (gap, speed, class)."
            ),
            id=anchor,
            row_classes=classes,
        )
    )
    ref_rows = []
    what = {
        "retrain": "the gold standard: retrained from scratch without the forget set",
        "original": "the model before unlearning: it did nothing",
    }
    for r in ranked["references"]:
        ref_rows.append([r["method"], what.get(r["method"], "reference")] + [_cell(k, r["values"]) for k, _ in keys])
    if ref_rows:
        doc.add(
            Table(
                ["reference", "what it is"] + [t for _, t in keys],
                ref_rows,
                caption="References, apart from the ranking.",
            )
        )


def _headline_metrics(
    doc: Document | Details, agg: Any, directions: dict[str, str], model: str, request: str, methods: list[str]
) -> None:
    keys = [(k, t) for k, t in HEADLINE if any(k in agg.get((model, request, m), {}) for m in methods)]
    header = ["method"] + [f"{t} {_arrow(directions.get(k, 'info'))}".strip() for k, t in keys]
    rows = []
    for m in methods:
        vals = agg.get((model, request, m))
        if vals is not None:
            rows.append([m] + [_fmt(k, *vals[k][:2]) if k in vals else "–" for k, _ in keys])
    doc.add(Table(header, rows, caption="Every headline metric (accuracies in %, mean ± std over seeds)."))


def _saturation_note(doc: Document | Details, agg: Any, model: str, request: str, methods: list[str]) -> None:
    """Say when MIA-efficacy cannot separate methods: the retrained model and most methods at ≥ 99."""
    key = "mia_efficacy/confidence"
    ref = (agg.get((model, request, "retrain")) or {}).get(key)
    vals = [
        agg[(model, request, m)][key][0]
        for m in methods
        if m not in ("original", "retrain") and key in agg.get((model, request, m), {})
    ]
    if ref is None or ref[0] < 0.99 or not vals:  # stored as fractions, shown in %
        return
    high = sum(v >= 0.99 for v in vals)
    if high >= len(vals) / 2:
        doc.add(
            Para(
                f"MIA-efficacy is {100 * ref[0]:.1f} for the retrained model and ≥ 99 for {high} of {len(vals)} "
                "methods: on this request it is saturated and does not tell the methods apart; "
                "read the loss-MIA AUC and the per-example audit below instead."
            )
        )


def _flags(doc: Document | Details, agg: Any, model: str, request: str, methods: list[str]) -> None:
    """Over-forgetting: forget accuracy or MIA far below the retrained model's is a signal too."""
    ref = agg.get((model, request, "retrain"))
    if ref is None:
        return
    try:
        from ..metrics.gap import over_forgetting
    except ImportError:  # pragma: no cover - the metrics package provides it
        return
    rows = []
    for m in methods:
        vals = agg.get((model, request, m))
        if vals is None or m in ("retrain", "original"):  # references: the original did nothing
            continue
        flags = over_forgetting({k: v[0] for k, v in vals.items()}, {k: v[0] for k, v in ref.items()})
        if flags:
            rows.append([m, "; ".join(f"`{key}` {_fmt(key, excess)} past" for key, excess in flags.items())])
    if rows:
        doc.add(
            Table(
                ["method", "forget-side values below the retrained model's"],
                rows,
                caption=(
                    "Over-forgetting flags: a forget-side value far below the retrained model's is itself "
                    "a privacy signal (it tells an attacker the data was removed)."
                ),
            )
        )


def _table_one(doc: Document | Details, agg: Any, model: str, request: str, methods: list[str]) -> None:
    names = ("accuracy", "precision", "recall", "f1")
    present = [m for m in methods if "table1/with/accuracy" in agg.get((model, request, m), {})]
    if not present:
        return
    has_without = any("table1/without/accuracy" in agg[(model, request, m)] for m in present)
    parts = ("with",) + (("without",) if has_without else ())
    titles = {"accuracy": "Accuracy", "precision": "Precision", "recall": "Recall", "f1": "F1"}
    header = ["method"] + [f"{titles[n]} ({part} target)" for part in parts for n in names]
    rows = []
    for m in present:  # one row per method: the table stays readable with many methods
        row = [m]
        for part in parts:
            for n in names:
                key = f"table1/{part}/{n}"
                v = agg[(model, request, m)].get(key)
                row.append(_fmt(key, v[0], v[1]) if v else "–")
        rows.append(row)
    doc.add(
        Table(
            header,
            rows,
            caption="Paper Table I layout (in %): test-set accuracy and macro precision/recall/F1 "
            "with the target class and without it (retained classes' test images, averaged over those classes).",
        )
    )


def _paper_comparison(
    doc: Document | Details, paper: dict[str, Any], agg: Any, model: str, request: str, methods: list[str]
) -> None:
    values = paper.get("values") or {}
    base = model.split("(")[0]
    if base in values and isinstance(values[base], dict):  # per-model values
        values = values[base]
    elif any(isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()) for v in values.values()):
        return  # per-model values, none for this model
    if not values:
        return
    rows = []
    for m, kv in values.items():
        ours = agg.get((model, request, m), {})
        for k, pv in kv.items():
            o = ours.get(k)
            rows.append([m, k, f"{pv}", _fmt("", o[0], o[1]) if o else "not run"])
    src = paper.get("source", "the paper")
    note = paper.get("note", "")
    doc.add(
        Table(
            ["method", "metric", f"paper ({src})", "ours (mean ± std)"],
            rows,
            caption=f"The paper's own numbers next to ours (same metric definitions unless noted). {note}".strip(),
        )
    )


def _figures(
    doc: Document | Details,
    runs: list[dict[str, Any]],
    groups: list[dict[str, Any]],
    agg: Any,
    model: str,
    request: str,
    methods: list[str],
    ranked: dict[str, Any],
    colours: dict[str, tuple[str, str]],
) -> None:
    """Per-class difference heatmap, gap vs time, forgetting vs utility; confusion matrices folded."""
    g0 = next((g for g in groups if g["model"] == model and g["request"] == request), None)
    if g0 is None:
        return
    slug = _slug(model, request)
    retrain = ranked.get("retrain_label") or "retrain"
    class_names = g0["class_names"]
    try:
        by_method: dict[str, list[list[float | None]]] = defaultdict(list)
        for r in runs:
            if r["model"] == model and r["request"] == request:
                by_method[r["method"]].append(r["per_class_test"])
        retrained = _mean_lists(
            [g["retrained"]["per_class_test"] for g in groups if g["model"] == model and g["request"] == request]
        )
        orig = [g["original"]["per_class_test"] for g in groups if g["model"] == model and g["request"] == request]
        series: list[tuple[str, list[float | None]]] = [("original", _mean_lists(orig))]
        series += [(m, _mean_lists(by_method[m])) for m in methods if m in by_method and m != "original"]
        if retrained:
            doc.add(
                Figure(
                    f"per_class_{slug}.png",
                    plots.class_diff_heatmap(series, retrained, class_names, g0.get("forget_classes", [])),
                    "Per-class test accuracy minus the retrained model's, in points (mean over seeds; blue: "
                    "above the retrained model, red: below; forgotten classes framed). Rows in the ranking's "
                    "order, the original first. A method that forgets well is white everywhere.",
                )
            )
        gap = []
        for m in methods:
            v = agg.get((model, request, m), {})
            if (
                m not in ("original", retrain)
                and "gap/avg" in v
                and "efficiency/seconds" in v
                and v["efficiency/seconds"][0] > 0
            ):
                gap.append(
                    (m, v["efficiency/seconds"][0], v["efficiency/seconds"][1], v["gap/avg"][0], v["gap/avg"][1])
                )
        if gap:
            ref = agg.get((model, request, retrain), {})
            orig_v = agg.get((model, request, "original"), {})
            floor = (ranked.get("floor") or {}).get("avg")
            target: Target | None = ranked.get("target")
            doc.add(
                Figure(
                    f"gap_time_{slug}.png",
                    plots.gap_vs_time(
                        gap,
                        colours,
                        retrain_seconds=ref["efficiency/seconds"][0] if "efficiency/seconds" in ref else None,
                        original_gap=orig_v["gap/avg"][0] if "gap/avg" in orig_v else None,
                        floor=floor,
                        target_gap=target.gap_bar(floor) if target is not None else None,
                        target_speedup=target.min_speedup if target is not None else None,
                    ),
                    "Avg. gap to the retrained model against the method's wall time (mean ± std over seeds). Lines: "
                    "retraining's own time, the original's gap (doing nothing), the noise floor; the shaded corner is "
                    "the target.",
                )
            )
        fx = (
            "acc/test_forget"
            if any("acc/test_forget" in agg[(model, request, m)] for m in methods if (model, request, m) in agg)
            else "acc/forget"
        )
        pts = []
        for m in methods + [retrain]:
            v = agg.get((model, request, m), {})
            if fx in v and "acc/test_retain" in v:
                pts.append(
                    (m, 100 * v[fx][0], 100 * v[fx][1], 100 * v["acc/test_retain"][0], 100 * v["acc/test_retain"][1])
                )
        if pts:
            doc.add(
                Figure(
                    f"tradeoff_{slug}.png",
                    plots.scatter_with_errors(
                        pts,
                        f"{fx} (%) — closest to retrain is best",
                        "retain-class test accuracy (%) — higher is better",
                        "Forgetting vs. utility",
                        mark=retrain,
                        colours=colours,
                    ),
                    "Forgetting against utility (mean ± std over seeds); the star is the retrained model.",
                )
            )
        seed0 = g0["seed"]
        first = {r["method"]: r for r in runs if r["model"] == model and r["request"] == request and r["seed"] == seed0}
        panels = [("original", np.asarray(g0["original"]["confusion_test"]))]
        panels += [(m, np.asarray(first[m]["confusion_test"])) for m in methods if m in first and m != "original"]
        doc.add(
            Details(
                f"Confusion matrices, before and after each method (seed {seed0})",
                [
                    Figure(
                        f"confusion_{slug}.png",
                        plots.confusion_grid(panels, class_names),
                        f"Test-set confusion matrices before (original) and after each method, seed {seed0}: "
                        "raw counts and row-normalised.",
                    )
                ],
            )
        )
    except ImportError as e:
        doc.add(Para(f"(figures skipped: {e})"))


def _slug(model: str, request: str) -> str:
    """A figure file name's stem for one (model, request)."""
    return "".join(c if c.isalnum() else "_" for c in f"{model}_{request}")[:80]


def _mean_lists(lists: list[list[float | None]]) -> list[float | None]:
    if not lists:
        return []
    out: list[float | None] = []
    for vals in zip(*lists):
        xs = [v for v in vals if v is not None]
        out.append(float(np.mean(xs)) if xs else None)
    return out


def _all_metrics(
    doc: Document | Details, agg: Any, directions: dict[str, str], model: str, request: str, methods: list[str]
) -> None:
    keys = sorted({k for m in methods for k in agg.get((model, request, m), {})})
    present = [m for m in methods if (model, request, m) in agg]
    rows = []
    for k in keys:
        rows.append(
            [f"{k} {_arrow(directions.get(k, 'info'))}".strip()]
            + [_fmt(k, *agg[(model, request, m)][k][:2]) if k in agg[(model, request, m)] else "–" for m in present]
        )
    doc.add(Table(["metric"] + present, rows, caption="Every metric (accuracies in %, mean ± std over seeds)."))


def _glossary(doc: Document | Details, runs: list[dict[str, Any]]) -> None:
    from ..metrics import METRICS, describe_metric

    rows = []
    for name in METRICS.names():
        if METRICS.get(name).kind != "vision":
            continue
        d = describe_metric(name)
        rows.append([name, d["summary"], d["direction"].replace("_", " "), d["reference"]])
    doc.add(Table(["metric", "meaning", "better when", "reference"], rows))


def _what_ran(doc: Document, study: dict[str, Any], runs: list[dict[str, Any]], groups: list[dict[str, Any]]) -> None:
    doc.add(Heading("What ran"))
    env = study.get("environment", {})
    lines = [f"- scale: {study.get('scale') or 'default'}; device: {study.get('device', env.get('gpu', 'cpu'))}"]
    if "dataset" in study:
        d = study["dataset"]
        lines.append(
            f"- dataset: {d.get('name')} ({d.get('train')} train / {d.get('test')} test, {d.get('classes')} classes, "
            f"image {d.get('image')}); source: {d.get('source')}"
        )
    if groups and all("original" in x and "retrained" in x for x in groups):  # vision groups (LLM ones differ)
        g = groups[0]
        lines.append(
            f"- model parameters: {g.get('num_parameters'):,}; split sizes (seed {g['seed']}): {g.get('split_sizes')}"
        )
        tr = [x["original"]["seconds"] for x in groups if x["original"].get("seconds")]
        rt = [x["retrained"]["seconds"] for x in groups if x["retrained"].get("seconds")]
        if tr:
            lines.append(
                f"- original training: median {np.median(tr):.1f}s; retraining: median {np.median(rt):.1f}s "
                "(cached models keep the time measured when they were trained)"
            )
        sources = [x["retrained"].get("timing_source") for x in groups if x.get("retrained")]
        here = sum(src == "trained by this study run" for src in sources)
        cached = [
            x["retrained"].get("trained_at") or "?"
            for x in groups
            if x.get("retrained", {}).get("timing_source") == "model cache"
        ]
        if sources:
            lines.append(
                f"- speed-ups are against the retrained reference of each group: {here} timed in this run"
                + (
                    f", {len(cached)} taken from the model cache and timed when they were trained "
                    f"({', '.join(sorted(set(cached))[:3])}) — on another load, those ratios are "
                    "less comparable"
                    if cached
                    else ""
                )
            )
    not_applicable = sorted(
        {
            (g["model"], g["request"], label, why)
            for g in groups
            for label, why in (g.get("not_applicable") or {}).items()
        }
    )
    for model, request, label, why in not_applicable:
        lines.append(f"- not run: {label} on {model} / {request}: {why}")
    lines.append(f"- started: {study.get('started', '?')}; versions: " + ", ".join(f"{k} {v}" for k, v in env.items()))
    doc.add(Para("\n".join(lines)))
    spec = study.get("spec")
    if spec:
        import yaml

        doc.add(Heading("Resolved study specification", 3))
        doc.add(Code(yaml.safe_dump(spec, sort_keys=False).strip()))
