"""The efficiency frontier: every vision unlearning method beside retraining, on CIFAR-10.

    .venv/bin/python bench/frontier/bench_frontier.py [--config bench/frontier/frontier.yaml]
        [--out CONFIG_FOLDER/results/study] [--summary-dir DIR]
        [--cache DIR] [--seeds 0 1 2] [--data-root ../shared/data/cifar10] [--threads 2]
        [--scale NAME] [--summary-only]

Runs the study ``bench/frontier/frontier.yaml`` (or ``--config``) through the library
(:func:`obliviate.study.load_study` + :func:`obliviate.api.run_study`): per seed it trains — or
takes from the content-addressed cache — the original and the retrained model of each request,
runs every method on the same original and evaluates everything once. Finished runs in ``--out``
are reused only on an exact content-key match (the runner moves every other record to
``--out/superseded/``), so an interrupted benchmark resumes where it stopped and a changed config
is rerun.

Then, per request, it prints one table (mean ± std over seeds, from
:func:`obliviate.report.aggregate` over the run records): Avg. gap to retrain, forget / retain /
test accuracy, MIA-efficacy, the worst retained class (accuracy, and its drop against the
original), wall time and speed-up over retraining; checks the study's targets (the library's
defaults, :data:`obliviate.study.targets.DEFAULT_TARGETS`, unless the study sets ``targets:``)

* class forgetting: Avg. gap ≤ 0.5 points at ≥ 50× less wall time than retraining, and no
  retained class losing more than 3 points of test accuracy against the original model;
* random forgetting: Avg. gap ≤ 1.0 point at ≥ 20×;
* sample ids: Avg. gap within the request's noise floor at ≥ 20×, no retained class losing more
  than 3 points;

with :func:`obliviate.study.targets.check_target`, and labels every candidate with the report's
verdict (:func:`obliviate.report.verdict.method_verdict`); then writes ``frontier_summary.json``,
``frontier_summary.md`` and ``frontier_gap_time.png`` to ``--summary-dir`` (default: the parent of
``--out``, ``bench/frontier/results/``). Targets are judged on the seed means; the summary also
says whether every seed passes on its own. ``original`` (does nothing) and ``retrain`` (the
reference) are shown but are not candidates.

Wall times: a method's seconds and its group's retrain seconds are both measured by the runner
(:func:`obliviate.methods.run_method`); a retrained model taken from the cache keeps the time
measured when it was trained, so the final benchmark should start from an empty ``--cache``
(the summary records which references were trained in this invocation).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

from obliviate.report.verdict import REFERENCES, method_verdict
from obliviate.study.targets import DEFAULT_TARGETS, Target, check_target, noise_floor_components, request_kind

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent  # this question's folder: its configs, results/ and README
DEFAULT_CONFIG = HERE / "frontier.yaml"
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "cifar10"


# The frontier's targets (the library's defaults, obliviate.study.targets.DEFAULT_TARGETS);
# a study's own ``targets:`` replaces them. The sample-ids target's gap bar is the request's noise floor.
TARGETS: dict[str, Target] = dict(DEFAULT_TARGETS)

# (record key, column title, unit): "pct" values are fractions shown in %, "pts" already points.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("gap/avg", "Avg. gap (pts)", "pts"),
    ("acc/forget", "forget acc", "pct"),
    ("acc/retain", "retain acc", "pct"),
    ("acc/test", "test acc", "pct"),
    ("acc/test_retain", "test acc, retained classes", "pct"),
    ("mia_efficacy/confidence", "MIA-efficacy", "pct"),
    ("worst_class_acc", "worst retained class acc", "pct"),
    ("worst_class_drop", "worst class drop vs original (pts)", "pts"),
    ("efficiency/seconds", "wall time (s)", "s"),
    ("efficiency/speedup", "speed-up vs retrain", "x"),
)


# -- aggregation and targets ---------------------------------------------------------------------


def _stats(values: Sequence[float]) -> dict[str, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n}


def diagnose(method_name: str, runs: Sequence[dict[str, Any]]) -> list[str]:
    """Method-specific observations from run records: SSD's selection ceiling and α, SISA's
    deletion footprint, instance-wise's stop rule. (Whether a method forgets too little, too much or
    loses utility is the report's verdict, :func:`obliviate.report.verdict.method_verdict`.)"""
    notes: list[str] = []
    if not runs:
        return notes
    infos = [r.get("info") or {} for r in runs]
    if all("selection_ceiling" in i for i in infos):
        ceil = min(i["selection_ceiling"] for i in infos)
        chosen = [i["alpha"] for i in infos if "alpha" in i]
        alpha = runs[0].get("method_config", {}).get("alpha")
        if runs[0].get("method_config", {}).get("alpha_rule", "fixed") != "fixed" and chosen:
            alpha = None  # chosen per run by the rule: say which
            notes.append(f"α chosen by the rule: {', '.join(f'{a:.3g}' for a in chosen)}")
        frac = sum(i.get("dampened_fraction", 0.0) for i in infos) / len(infos)
        text = f"selection ceiling (N_r+N_f)/N_f = {ceil:.2f}"
        if alpha is not None:
            text += f", α = {alpha:g}" + (
                " (at or above the ceiling: nothing can be selected)" if alpha >= ceil else ""
            )
        notes.append(text + f"; dampened {100 * frac:.3f} % of the parameters")
    if all(isinstance(i.get("deletion"), dict) for i in infos):
        aff = [i["deletion"].get("affected_shards") for i in infos]
        shards = infos[0].get("shards")
        restarts = sorted({int(s) for i in infos for s in (i["deletion"].get("restart_slice") or {}).values()})
        saved = [i.get("retrain_steps_saved", 0) / max(i.get("full_retrain_steps", 1), 1) for i in infos]
        notes.append(
            f"deletion touched {min(aff)}–{max(aff)} of {shards} shards, restarting at slice(s) "
            f"{restarts}; it saved {100 * sum(saved) / len(saved):.0f} % of a full ensemble retrain"
        )
    if all("all_forget_misclassified" in i for i in infos):
        done = sum(bool(i["all_forget_misclassified"]) for i in infos)
        notes.append(f"stop rule (every forget instance misclassified) reached in {done}/{len(infos)} runs")
    return notes


def summarise(
    records: Sequence[dict[str, Any]],
    method_order: Sequence[str] | None = None,
    targets: dict[str, Target] = TARGETS,
) -> dict[str, Any]:
    """Per request: mean ± std over seeds of :data:`COLUMNS`, the target checks, the report's
    verdict and notes.

    ``records`` are the runner's ``runs/*.json`` dicts (``request``, ``method``, ``method_name``,
    ``seed``, ``values``, ``info``). Means come from :func:`obliviate.report.aggregate`, target
    checks from :func:`obliviate.study.targets.check_target` and verdicts from
    :func:`obliviate.report.verdict.method_verdict`: this script adds no judgement of its own.
    """
    from obliviate.report import aggregate

    agg = aggregate(list(records))
    order = list(method_order) if method_order is not None else list(dict.fromkeys(r["method"] for r in records))
    out: dict[str, Any] = {}
    for request in dict.fromkeys(r["request"] for r in records):
        kind = request_kind(request)
        target = targets.get(kind)
        runs = [r for r in records if r["request"] == request]
        by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in runs:
            by_method[r["method"]].append(r)
        retrain_runs = sorted((r for r in runs if r.get("method_name") == "retrain"), key=lambda r: r["seed"])
        ref = agg.get((retrain_runs[0]["model"], request, retrain_runs[0]["method"]), {}) if retrain_runs else {}
        floors = noise_floor_components(retrain_runs)
        floor = None if floors is None else floors["avg"]
        rows = []
        for label in [m for m in order if m in by_method] + [m for m in by_method if m not in order]:
            mruns = sorted(by_method[label], key=lambda r: r["seed"])
            model = mruns[0]["model"]
            vals = agg[(model, request, label)]
            name = mruns[0].get("method_name", label)
            row: dict[str, Any] = {
                "method": label,
                "method_name": name,
                "seeds": [r["seed"] for r in mruns],
                "values": {
                    k: {"mean": vals[k][0], "std": vals[k][1], "n": vals[k][2]} for k, _, _ in COLUMNS if k in vals
                },
                "candidate": name not in REFERENCES,
                "notes": diagnose(name, mruns),
            }
            if row["candidate"]:
                label_, why = method_verdict(
                    vals, ref, floors, target, bool(mruns[0].get("exact")), mruns[0].get("info") or {}
                )
                row["verdict"] = label_
                row["notes"].insert(0, f"{label_}: {why}")
            if target is not None and row["candidate"]:
                row["target"] = check_target([r["values"] for r in mruns], target, floor)
            rows.append(row)
        retrain_seconds = [
            r["values"]["efficiency/seconds"] for r in retrain_runs if "efficiency/seconds" in r["values"]
        ]
        entry: dict[str, Any] = {
            "kind": kind,
            "rows": rows,
            "noise_floor": floor,
            "retrain_seconds": _stats(retrain_seconds) if retrain_seconds else None,
        }
        if target is not None:
            entry["target"] = {**asdict(target), "text": target.describe(floor)}
            if retrain_seconds:
                entry["target"]["time_budget_s"] = _stats(retrain_seconds)["mean"] / target.min_speedup
            entry["reached_by"] = [r["method"] for r in rows if r.get("target", {}).get("passes")]
            entry["reached_by_every_seed"] = [r["method"] for r in rows if r.get("target", {}).get("every_seed")]
        out[request] = entry
    return out


def by_kind(
    records: Sequence[dict[str, Any]], summary: dict[str, Any], targets: dict[str, Target] = TARGETS
) -> dict[str, Any]:
    """Per request kind, each candidate's runs pooled over that kind's requests and seeds: how many
    runs reach the target on their own (each against its own request's noise floor), on which
    requests the seed mean reaches it, the Avg. gap over all runs, the worst class drop and the
    lowest speed-up. ``summary`` is :func:`summarise`'s output for the same records."""
    out: dict[str, Any] = {}
    for kind in dict.fromkeys(e["kind"] for e in summary.values()):
        requests = [q for q, e in summary.items() if e["kind"] == kind]
        target = targets.get(kind)
        labels = list(dict.fromkeys(r["method"] for q in requests for r in summary[q]["rows"] if r["candidate"]))
        rows = []
        for label in labels:
            runs = [r for r in records if r["request"] in requests and r["method"] == label]
            gaps = [r["values"]["gap/avg"] for r in runs if math.isfinite(r["values"].get("gap/avg", math.nan))]
            drops = [r["values"]["worst_class_drop"] for r in runs if "worst_class_drop" in r["values"]]
            speeds = [r["values"]["efficiency/speedup"] for r in runs if "efficiency/speedup" in r["values"]]
            row: dict[str, Any] = {
                "method": label,
                "runs": len(runs),
                "gap": _stats(gaps) if gaps else None,
                "worst_class_drop_max": max(drops) if drops else None,
                "speedup_min": min(speeds) if speeds else None,
            }
            if target is not None:
                row["passing_runs"] = sum(
                    check_target([r["values"]], target, summary[r["request"]]["noise_floor"])["passes"] for r in runs
                )
                row["requests_reached"] = [q for q in requests if label in summary[q].get("reached_by", [])]
            rows.append(row)
        rows.sort(key=lambda r: (-r.get("passing_runs", 0), r["gap"]["mean"] if r["gap"] else math.inf))
        out[kind] = {"requests": requests, "rows": rows}
    return out


def kind_lines(pooled: dict[str, Any]) -> list[str]:
    """The pooled table of :func:`by_kind`, one markdown table per kind."""
    out: list[str] = []
    for kind, entry in pooled.items():
        out += [f"### {kind} requests: {', '.join(entry['requests'])}", ""]
        header = [
            "method",
            "runs",
            "runs reaching the target",
            "requests reached (seed mean)",
            "Avg. gap over runs (pts)",
            "worst class drop, max (pts)",
            "speed-up, min",
        ]
        rows = []
        for r in entry["rows"]:
            rows.append(
                [
                    r["method"],
                    str(r["runs"]),
                    f"{r['passing_runs']}/{r['runs']}" if "passing_runs" in r else "–",
                    ", ".join(r.get("requests_reached", [])) or "–",
                    fmt_cell("gap/avg", r["gap"]),
                    "–" if r["worst_class_drop_max"] is None else f"{r['worst_class_drop_max']:.2f}",
                    "–" if r["speedup_min"] is None else f"{r['speedup_min']:.1f}×",
                ]
            )
        out += [md_table(header, rows), ""]
    return out


# -- rendering -----------------------------------------------------------------------------------


def fmt_cell(key: str, stat: dict[str, float] | None) -> str:
    """``mean ± std`` in the column's unit (accuracies in %, points, seconds, ×)."""
    if stat is None:
        return "–"
    unit = next((u for k, _, u in COLUMNS if k == key), "")
    scale = 100.0 if unit == "pct" else 1.0
    m, s = stat["mean"] * scale, stat["std"] * scale
    digits = (0 if abs(m) >= 100 else 1) if unit == "x" else (1 if unit == "pct" or abs(m) >= 100 else 2)
    spread = f"{s:.{digits}f}"
    return f"{m:.{digits}f}" + ("×" if unit == "x" else "") + (f" ± {spread}" if float(spread) > 0 else "")


def table_rows(entry: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one request's table (columns absent from every row are left out)."""
    keys = [(k, t) for k, t, _ in COLUMNS if any(k in r["values"] for r in entry["rows"])]
    header = ["method", "seeds"] + [t for _, t in keys] + ["target"]
    rows = []
    for r in entry["rows"]:
        verdict = (
            "reference"
            if not r["candidate"]
            else ("–" if "target" not in r else ("**yes**" if r["target"]["passes"] else "no"))
        )
        rows.append(
            [r["method"], str(len(r["seeds"]))] + [fmt_cell(k, r["values"].get(k)) for k, _ in keys] + [verdict]
        )
    return header, rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    cells = [header] + [[c.replace("**", "") for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict_lines(request: str, entry: dict[str, Any]) -> list[str]:
    """One sentence on the target, then one line per candidate: passes, or why not."""
    if "target" not in entry:
        return [f"No target is defined for {request!r}."]
    t = entry["target"]
    budget = f" (time budget {t['time_budget_s']:.1f} s)" if "time_budget_s" in t else ""
    reached = entry["reached_by"]
    lines = [
        f"Target — {t['text']}{budget}: "
        + (f"reached by {', '.join(reached)}." if reached else "reached by no method.")
    ]
    for r in entry["rows"]:
        if "target" not in r:
            continue
        res = r["target"]
        if res["passes"]:
            line = f"- {r['method']}: reaches it" + (
                "" if res["every_seed"] else " on the seed mean (not on every seed)"
            )
        else:
            line = f"- {r['method']}: misses it — " + "; ".join(res["reasons"])
        if r["notes"]:
            line += " (" + "; ".join(r["notes"]) + ")"
        lines.append(line)
    return lines


def render_markdown(summary: dict[str, Any], meta: dict[str, Any], notes: str = "") -> str:
    out = ["# Efficiency frontier: every unlearning method beside retraining (CIFAR-10)", ""]
    if meta.get("description"):
        out += [meta["description"], ""]
    facts = []
    for key, label in (
        ("recipe", "recipe"),
        ("model", "model"),
        ("seeds", "seeds"),
        ("device", "device"),
        ("threads", "torch threads"),
        ("loadavg_before", "load average (1/5/15 min) before"),
        ("loadavg_after", "load average after"),
        ("benchmark_seconds", "benchmark wall time (s)"),
        ("references", "references"),
    ):
        if meta.get(key) is not None:
            facts.append(f"- {label}: {meta[key]}")
    if facts:
        out += facts + [""]
    out += [
        "Values are mean ± std over seeds (std with ddof = 1). Accuracies in %; Avg. gap = mean of "
        "|Δ| to the retrained model over forget, retain and test accuracy and MIA-efficacy "
        "(SalUn's Avg. Gap; for a class request the test accuracy is on the retained classes), "
        "in points. Speed-up = retrain wall time / method wall time, per seed, then averaged.",
        "",
    ]
    if meta.get("by_kind"):
        out += [
            "## By kind of request (each method's runs pooled over the kind's requests and seeds)",
            "",
            "A run reaches the target when it does on its own, against its own request's noise floor "
            "and retraining time; the requests column says where the mean over seeds does.",
            "",
        ]
        out += kind_lines(meta["by_kind"])
    for request, entry in summary.items():
        out += [f"## Forget {request}", ""]
        if entry.get("retrain_seconds"):
            rs = entry["retrain_seconds"]
            out.append(f"Retraining took {rs['mean']:.1f} ± {rs['std']:.1f} s.")
        if entry.get("noise_floor") is not None:
            out.append(
                f"Noise floor: two retrained models of different seeds sit {entry['noise_floor']:.2f} "
                "points apart on the same Avg.-gap components."
            )
        out.append("")
        header, rows = table_rows(entry)
        out += [md_table(header, rows), ""]
        out += verdict_lines(request, entry) + [""]
    if meta.get("configs"):
        out += ["## Method configurations (what differs from each paper default)", ""]
        for label, info in meta["configs"].items():
            changed = info["changed"]
            text = ", ".join(f"`{k}` = {v!r} (default {info['defaults'][k]!r})" for k, v in changed.items())
            out.append(f"- **{label}** (`{info['name']}`): " + (text or "paper defaults"))
        out.append("")
    if meta.get("figure"):
        out += [
            f"![gap vs wall time]({meta['figure']})",
            "",
            "*Avg. gap to retrain against wall time (log scale), mean ± std over seeds; the shaded box "
            "is the target region; the dashed line is retraining's wall time.*",
            "",
        ]
    if notes.strip():
        out += [notes.strip(), ""]
    return "\n".join(out)


def frontier_figure(summary: dict[str, Any], path: Path) -> bool:
    """Gap vs wall time, one panel per request, target box shaded; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    n = len(summary)
    fig, axes = plt.subplots(1, n, figsize=(6.4 * n, 4.8), squeeze=False)
    for ax, (request, entry) in zip(axes[0], summary.items()):
        rs = (entry.get("retrain_seconds") or {}).get("mean")
        for r in entry["rows"]:
            v = r["values"]
            if "gap/avg" not in v or "efficiency/seconds" not in v or v["efficiency/seconds"]["mean"] <= 0:
                continue
            x, y = v["efficiency/seconds"], v["gap/avg"]
            star = r["method_name"] == "retrain"
            ax.errorbar(
                x["mean"],
                y["mean"],
                xerr=x["std"] or None,
                yerr=y["std"] or None,
                fmt="*" if star else "o",
                ms=12 if star else 6,
                capsize=2,
            )
            ax.annotate(r["method"], (x["mean"], y["mean"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        t = entry.get("target")
        bar = (t or {}).get("max_gap")
        bar = entry.get("noise_floor") if bar is None else bar  # the ids target: within the noise floor
        if t and rs and bar is not None:
            ax.axvline(rs, ls="--", color="grey", lw=1)
            ax.fill_between(
                [1e-3, rs / t["min_speedup"]],
                0,
                bar,
                color="tab:green",
                alpha=0.15,
                label=f"target: ≤ {bar:.2f} pts at ≥ {t['min_speedup']:g}×",
            )
            ax.legend(fontsize=8, loc="best")
        ax.set_xscale("log")
        ax.set_xlim(left=0.1)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("wall time (s, log scale)")
        ax.set_ylabel("Avg. gap to retrain (points)")
        ax.set_title(f"forget {request}", fontsize=10)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# -- running -------------------------------------------------------------------------------------


class StageLog:
    """The runner's progress: stages printed with a timestamp and kept (to tell cache hits)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def stage(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        self.lines.append(text)
        print(line, flush=True)

    def steps(self, desc: str) -> AbstractContextManager[Callable[[dict[str, Any]], None]]:
        return nullcontext(lambda _ev: None)

    def references(self) -> dict[str, list[str]]:
        """Which originals/retrained models were trained now and which came from the cache."""
        out: dict[str, list[str]] = {"trained": [], "cached": []}
        for line in self.lines:
            if line.startswith(("original ", "retrained ")):
                what, _, how = line.partition(": ")
                out["cached" if how.startswith("from cache") else "trained"].append(what)
        return out


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def method_configs(spec: Any) -> dict[str, dict[str, Any]]:
    """Per method label: its configuration and the fields that differ from the paper default."""
    out = {}
    for m in spec.methods:
        method = m.build()
        cfg = _jsonable(method.config.to_dict())
        defaults = _jsonable(type(method.config)().to_dict())
        out[m.label] = {
            "name": m.name,
            "config": cfg,
            "defaults": defaults,
            "changed": {k: v for k, v in cfg.items() if defaults.get(k) != v},
        }
    return out


def study_records(out_dir: Path, spec: Any) -> list[dict[str, Any]]:
    """Finished run records of this study: its models, requests, seeds and method labels.

    After a run, ``runs/`` holds exactly the current spec's content-keyed records (the runner moves
    every other record to ``superseded/``); with ``--summary-only`` the tracked records are read as
    they are (records written before content-addressed keys carry no ``key``)."""
    models = {m.label for m in spec.models}
    requests = {r.describe() for r in spec.requests}
    labels = {m.label for m in spec.methods}
    recs = []
    for path in sorted((out_dir / "runs").glob("*.json")):
        rec = json.loads(path.read_text())
        if rec.get("status", "ok") != "ok":
            continue
        if (
            rec["model"] in models
            and rec["request"] in requests
            and rec["method"] in labels
            and rec["seed"] in spec.seeds
        ):
            recs.append(rec)
    return recs


INVOCATIONS = "bench_invocations.json"


def record_invocation(out_dir: Path, entry: dict[str, Any]) -> None:
    """Append one benchmark invocation (time, load, references trained) to ``out_dir``."""
    path = out_dir / INVOCATIONS
    done = json.loads(path.read_text()) if path.is_file() else []
    path.write_text(json.dumps(done + [entry], indent=1) + "\n")


def invocation_facts(out_dir: Path) -> dict[str, Any]:
    """Summary facts over every invocation that filled ``out_dir`` (a resumed run has several)."""
    path = out_dir / INVOCATIONS
    done = json.loads(path.read_text()) if path.is_file() else []
    if not done:
        return {}
    trained = [t for d in done for t in d["trained"]]
    cached = [t for d in done for t in d["from_cache"]]
    facts: dict[str, Any] = {
        "benchmark_seconds": round(sum(d["seconds"] for d in done), 1),
        "loadavg_before": done[0]["loadavg_before"],
        "loadavg_after": done[-1]["loadavg_after"],
        "references": f"{len(trained)} reference model(s) trained during the benchmark, {len(cached)} from the cache"
        + (f" ({', '.join(cached)})" if cached else ""),
        "invocations": done,
    }
    if len(done) > 1:
        facts["benchmark_seconds_note"] = f"sum over {len(done)} invocations"
    return facts


def _loadavg() -> str:
    try:
        up = subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
        return up.split("load average:")[-1].strip() if "load average" in up else up
    except (OSError, subprocess.CalledProcessError):
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="study file (default bench/frontier/frontier.yaml)"
    )
    ap.add_argument("--scale", default=None, help="a scale of the study file (e.g. 'smoke' for a quick check)")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="study output directory (runs, report; default: results/study beside the study file, "
        "bench/frontier/results/study for the default study)",
    )
    ap.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="model cache (default: $OBLIVIATE_CACHE or ~/.cache/obliviate, /models)",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="override the study's seeds")
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA, help="folder with CIFAR-10 train.npz/test.npz")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (2: this project's CPU machine)")
    ap.add_argument(
        "--summary-dir",
        type=Path,
        default=None,
        help="where frontier_summary.{json,md} go (default: the parent of --out)",
    )
    ap.add_argument(
        "--notes",
        type=Path,
        default=None,
        help="a Markdown file appended to the summary, if it exists (default: none; the reading of "
        "each study is its folder's README.md)",
    )
    ap.add_argument("--summary-only", action="store_true", help="summarise the finished runs in --out; run nothing")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a study field (repeatable)"
    )
    args = ap.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    from obliviate.api import run_study
    from obliviate.study import load_study

    torch.set_num_threads(args.threads)
    spec = load_study(
        args.config, scale=args.scale, data_root=str(args.data_root.resolve()), seeds=args.seeds, overrides=args.set
    )
    out_dir = args.out or args.config.resolve().parent / "results" / "study"
    summary_dir = args.summary_dir or out_dir.parent
    meta: dict[str, Any] = {
        "study": spec.name,
        "description": spec.description.strip(),
        "scale": args.scale,
        "recipe": spec.raw.get("recipe"),
        "model": ", ".join(m.label for m in spec.models),
        "seeds": spec.seeds,
        "device": spec.device,
        "threads": torch.get_num_threads(),
        "configs": method_configs(spec),
    }
    log = StageLog()
    if not args.summary_only:
        before, started = _loadavg(), time.strftime("%Y-%m-%d %H:%M:%S")
        t0 = time.perf_counter()
        run_study(spec, out_dir, cache_dir=args.cache, progress=log)
        refs = log.references()
        record_invocation(
            out_dir,
            {
                "started": started,
                "seconds": round(time.perf_counter() - t0, 1),
                "loadavg_before": before,
                "loadavg_after": _loadavg(),
                "seeds": spec.seeds,
                "threads": torch.get_num_threads(),
                "trained": refs["trained"],
                "from_cache": refs["cached"],
            },
        )
    meta.update(invocation_facts(out_dir))
    records = study_records(out_dir, spec)
    if not records:
        print(f"no finished runs of study {spec.name!r} in {out_dir}", file=sys.stderr)
        return 1
    summary = summarise(records, [m.label for m in spec.methods], spec.targets)
    for request, entry in summary.items():
        header, rows = table_rows(entry)
        print(f"\n== forget {request} ==")
        if entry.get("retrain_seconds"):
            print(
                f"retraining: {entry['retrain_seconds']['mean']:.1f} ± {entry['retrain_seconds']['std']:.1f} s"
                + (
                    f"; retrain seed-to-seed gap (noise floor): {entry['noise_floor']:.2f} pts"
                    if entry.get("noise_floor") is not None
                    else ""
                )
            )
        print(text_table(header, rows))
        print("\n".join(verdict_lines(request, entry)))
    meta["by_kind"] = by_kind(records, summary, spec.targets)
    figure = summary_dir / "frontier_gap_time.png"
    if frontier_figure(summary, figure):
        meta["figure"] = figure.name
    notes = args.notes.read_text() if args.notes is not None and args.notes.is_file() else ""
    summary_dir.mkdir(parents=True, exist_ok=True)
    (summary_dir / "frontier_summary.json").write_text(
        json.dumps({"meta": meta, "requests": summary}, indent=1, default=str) + "\n"
    )
    (summary_dir / "frontier_summary.md").write_text(render_markdown(summary, meta, notes))
    print(f"\nwrote {summary_dir / 'frontier_summary.md'} and .json; report: {out_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
