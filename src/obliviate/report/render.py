"""Turn a study directory (study.json, runs/, groups/) into report.md and report.html.

The report shows, per (model, request): mean ± std over seeds of every metric; the paper's
Table I layout; the paper's own numbers next to ours; confusion matrices before/after (raw and
normalised); per-class accuracy bars; the forget-vs-test trade-off; gap vs wall time; a glossary
with each metric's direction; over-forgetting flags; and what ran (versions, device, seeds, scale).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from . import plots
from .audit import membership_section
from .blocks import Code, Document, Figure, Heading, Para, Raw, Table

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
        out[g] = {k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)) for k, v in kv.items()}
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
    if study.get("task") == "llm":
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
        rows.append([r["method"], r["model"], r["request"], str(r["seed"]), where, step,
                     str(e.get("value", "")), (e.get("stage") or "")])
    doc.add(Table(["method", "model", "request", "seed", "what", "step", "value", "stage"], rows,
                  caption=f"{len(failed)} run(s) failed and have no metrics: they are not in any table below. "
                          "A non-finite loss, weight or output means the method diverged with this configuration."))


def _llm_section(doc: Document, out_dir: Path, runs: list[dict[str, Any]]) -> None:
    from ..study.store import record_rows

    rows = [row for r in runs for row in record_rows(r, "", None)]
    answers_path = out_dir / "llm_answers.json"
    answers = json.loads(answers_path.read_text()) if answers_path.is_file() else {}
    from ..llm.report import render_llm_section

    doc.add(Raw(render_llm_section(rows, answers), first_table_id="headline"))


def _vision_sections(doc: Document, study: dict[str, Any], runs: list[dict[str, Any]], groups: list[dict[str, Any]]) -> None:
    if not runs:
        doc.add(Para("No finished runs yet."))
        return
    agg = aggregate(runs)
    directions = _directions(runs)
    method_order = list(dict.fromkeys(r["method"] for r in runs))
    pairs = list(dict.fromkeys((r["model"], r["request"]) for r in runs))
    seeds = sorted({r["seed"] for r in runs})
    doc.add(Para(
        f"{len(runs)} runs: {len(pairs)} model × request combination(s), {len(method_order)} method(s), "
        f"seeds {seeds}. Values are mean ± std over seeds (std with ddof=1). Arrows: ↑ higher is better, "
        "↓ lower is better, ≈R closest to the retrained model (the gold standard) is better."
    ))
    for model, request in pairs:
        doc.add(Heading(f"{model} — forget {request}"))
        keys = [(k, t) for k, t in HEADLINE if any(k in agg.get((model, request, m), {}) for m in method_order)]
        header = ["method"] + [f"{t} {_arrow(directions.get(k, 'info'))}".strip() for k, t in keys]
        rows = []
        for m in method_order:
            vals = agg.get((model, request, m))
            if vals is None:
                continue
            rows.append([m] + [_fmt(k, *vals[k][:2]) if k in vals else "–" for k, _ in keys])
        first = not any(isinstance(b, Table) and b.id == "headline" for b in doc.blocks)
        doc.add(Table(header, rows, caption="Headline metrics (accuracies in %).", id="headline" if first else ""))
        _saturation_note(doc, agg, model, request, method_order)
        _flags(doc, agg, model, request, method_order)
        membership_section(doc, runs, groups, model, request, method_order)
        _table_one(doc, agg, model, request, method_order)
        _paper_comparison(doc, study.get("paper") or {}, agg, model, request, method_order)
        _figures(doc, runs, groups, agg, model, request, method_order)
        _all_metrics(doc, agg, directions, model, request, method_order)
    _glossary(doc, runs)


def _saturation_note(doc: Document, agg: Any, model: str, request: str, methods: list[str]) -> None:
    """Say when MIA-efficacy cannot separate methods: the retrained model and most methods at ≥ 99."""
    key = "mia_efficacy/confidence"
    ref = (agg.get((model, request, "retrain")) or {}).get(key)
    vals = [agg[(model, request, m)][key][0] for m in methods
            if m not in ("original", "retrain") and key in agg.get((model, request, m), {})]
    if ref is None or ref[0] < 0.99 or not vals:  # stored as fractions, shown in %
        return
    high = sum(v >= 0.99 for v in vals)
    if high >= len(vals) / 2:
        doc.add(Para(f"MIA-efficacy is {100 * ref[0]:.1f} for the retrained model and ≥ 99 for {high} of {len(vals)} "
                     "methods: on this request it is saturated and does not tell the methods apart; "
                     "read the loss-MIA AUC and the per-example audit below instead."))


def _flags(doc: Document, agg: Any, model: str, request: str, methods: list[str]) -> None:
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
        doc.add(Table(["method", "forget-side values below the retrained model's"], rows,
                      caption=("Over-forgetting flags: a forget-side value far below the retrained model's is itself "
                               "a privacy signal (it tells an attacker the data was removed).")))


def _table_one(doc: Document, agg: Any, model: str, request: str, methods: list[str]) -> None:
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
    doc.add(Table(header, rows, caption="Paper Table I layout (in %): test-set accuracy and macro precision/recall/F1 "
                  "with the target class and without it (retained classes' test images, averaged over those classes)."))


def _paper_comparison(doc: Document, paper: dict[str, Any], agg: Any, model: str, request: str, methods: list[str]) -> None:
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
    doc.add(Table(["method", "metric", f"paper ({src})", "ours (mean ± std)"], rows,
                  caption=f"The paper's own numbers next to ours (same metric definitions unless noted). {note}".strip()))


def _figures(doc: Document, runs: list[dict[str, Any]], groups: list[dict[str, Any]], agg: Any,
             model: str, request: str, methods: list[str]) -> None:
    g0 = next((g for g in groups if g["model"] == model and g["request"] == request), None)
    if g0 is None:
        return
    slug = "".join(c if c.isalnum() else "_" for c in f"{model}_{request}")[:80]
    class_names = g0["class_names"]
    seed0 = g0["seed"]
    first = {r["method"]: r for r in runs if r["model"] == model and r["request"] == request and r["seed"] == seed0}
    panels = [("original", np.asarray(g0["original"]["confusion_test"]))]
    panels += [(m, np.asarray(first[m]["confusion_test"])) for m in methods if m in first and m != "original"]
    try:
        doc.add(Figure(f"confusion_{slug}.png", plots.confusion_grid(panels, class_names),
                       f"Test-set confusion matrices before (original) and after each method, seed {seed0}: "
                       "raw counts and row-normalised."))
        # per-class accuracy, mean over seeds
        series: list[tuple[str, list[float | None]]] = []
        by_method: dict[str, list[list[float | None]]] = defaultdict(list)
        for r in runs:
            if r["model"] == model and r["request"] == request:
                by_method[r["method"]].append(r["per_class_test"])
        orig = [g["original"]["per_class_test"] for g in groups if g["model"] == model and g["request"] == request]
        series.append(("original", _mean_lists(orig)))
        series += [(m, _mean_lists(by_method[m])) for m in methods if m in by_method and m != "original"]
        doc.add(Figure(f"per_class_{slug}.png", plots.per_class_bars(series, class_names, g0.get("forget_classes", [])),
                       "Per-class test accuracy (mean over seeds); forgotten classes shaded."))
        fx = "acc/test_forget" if any("acc/test_forget" in agg[(model, request, m)] for m in methods if (model, request, m) in agg) else "acc/forget"
        pts = []
        for m in methods:
            v = agg.get((model, request, m), {})
            if fx in v and "acc/test_retain" in v:
                pts.append((m, 100 * v[fx][0], 100 * v[fx][1], 100 * v["acc/test_retain"][0], 100 * v["acc/test_retain"][1]))
        if pts:
            doc.add(Figure(f"tradeoff_{slug}.png", plots.scatter_with_errors(
                pts, f"{fx} (%) — closest to retrain is best", "retain-class test accuracy (%) — higher is better",
                "Forgetting vs. utility", mark="retrain"),
                "Forget-vs-test accuracy trade-off (mean ± std over seeds); the star is the retrained model."))
        gap = []
        for m in methods:
            v = agg.get((model, request, m), {})
            if "gap/avg" in v and "efficiency/seconds" in v and v["efficiency/seconds"][0] > 0:
                gap.append((m, v["efficiency/seconds"][0], v["efficiency/seconds"][1], v["gap/avg"][0], v["gap/avg"][1]))
        if gap:
            doc.add(Figure(f"gap_time_{slug}.png", plots.scatter_with_errors(
                gap, "wall time (s, log scale)", "average gap to retrain (points) — lower is better",
                "Efficiency frontier", logx=True, mark="retrain"),
                "Gap to the retrained model against wall time."))
    except ImportError as e:
        doc.add(Para(f"(figures skipped: {e})"))


def _mean_lists(lists: list[list[float | None]]) -> list[float | None]:
    if not lists:
        return []
    out: list[float | None] = []
    for vals in zip(*lists):
        xs = [v for v in vals if v is not None]
        out.append(float(np.mean(xs)) if xs else None)
    return out


def _all_metrics(doc: Document, agg: Any, directions: dict[str, str], model: str, request: str, methods: list[str]) -> None:
    keys = sorted({k for m in methods for k in agg.get((model, request, m), {})})
    present = [m for m in methods if (model, request, m) in agg]
    rows = []
    for k in keys:
        rows.append([f"{k} {_arrow(directions.get(k, 'info'))}".strip()] +
                    [_fmt(k, *agg[(model, request, m)][k][:2]) if k in agg[(model, request, m)] else "–" for m in present])
    doc.add(Table(["metric"] + present, rows, caption="Every metric (accuracies in %, mean ± std over seeds)."))


def _glossary(doc: Document, runs: list[dict[str, Any]]) -> None:
    from ..metrics import METRICS, describe_metric

    used = set()
    for r in runs:
        for k in r["values"]:
            used.add(k.split("/")[0])
    rows = []
    for name in METRICS.names():
        if METRICS.get(name).kind != "vision":
            continue
        d = describe_metric(name)
        rows.append([name, d["summary"], d["direction"].replace("_", " "), d["reference"]])
    doc.add(Heading("Metrics used and how to read them"))
    doc.add(Table(["metric", "meaning", "better when", "reference"], rows))


def _what_ran(doc: Document, study: dict[str, Any], runs: list[dict[str, Any]], groups: list[dict[str, Any]]) -> None:
    doc.add(Heading("What ran"))
    env = study.get("environment", {})
    lines = [f"- scale: {study.get('scale') or 'default'}; device: {study.get('device', env.get('gpu', 'cpu'))}"]
    if "dataset" in study:
        d = study["dataset"]
        lines.append(f"- dataset: {d.get('name')} ({d.get('train')} train / {d.get('test')} test, {d.get('classes')} classes, "
                     f"image {d.get('image')}); source: {d.get('source')}")
    if groups and all("original" in x and "retrained" in x for x in groups):  # vision groups (LLM ones differ)
        g = groups[0]
        lines.append(f"- model parameters: {g.get('num_parameters'):,}; split sizes (seed {g['seed']}): {g.get('split_sizes')}")
        tr = [x["original"]["seconds"] for x in groups if x["original"].get("seconds")]
        rt = [x["retrained"]["seconds"] for x in groups if x["retrained"].get("seconds")]
        if tr:
            lines.append(f"- original training: median {np.median(tr):.1f}s; retraining: median {np.median(rt):.1f}s "
                         "(cached models keep the time measured when they were trained)")
        sources = [x["retrained"].get("timing_source") for x in groups if x.get("retrained")]
        here = sum(src == "trained by this study run" for src in sources)
        cached = [x["retrained"].get("trained_at") or "?" for x in groups
                  if x.get("retrained", {}).get("timing_source") == "model cache"]
        if sources:
            lines.append(f"- speed-ups are against the retrained reference of each group: {here} timed in this run"
                         + (f", {len(cached)} taken from the model cache and timed when they were trained "
                            f"({', '.join(sorted(set(cached))[:3])}) — on another load, those ratios are "
                            "less comparable" if cached else ""))
    not_applicable = sorted({(g["model"], g["request"], label, why) for g in groups
                             for label, why in (g.get("not_applicable") or {}).items()})
    for model, request, label, why in not_applicable:
        lines.append(f"- not run: {label} on {model} / {request}: {why}")
    lines.append(f"- started: {study.get('started', '?')}; versions: " + ", ".join(f"{k} {v}" for k, v in env.items()))
    doc.add(Para("\n".join(lines)))
    spec = study.get("spec")
    if spec:
        import yaml

        doc.add(Heading("Resolved study specification", 3))
        doc.add(Code(yaml.safe_dump(spec, sort_keys=False).strip()))
