"""The tuning runs of the held-out frontier, apart from its verdict.

    .venv/bin/python bench/frontier_heldout/summarize_tunes.py [--tunes runs/heldout_tune]
        [--out bench/frontier_heldout/results/tune_summary] [--intro FILE]

(``--intro``: another study's title and protocol, e.g. ``bench/frontier_memorise/tune_intro.md``.)

Reads every ``obliviate tune METHOD --study bench/frontier_heldout/frontier_heldout.yaml --out TUNES/METHOD`` folder
(``tune.json`` and each trial's run records under ``trials/<config key>/runs/``) and writes

* ``OUT/METHOD.json`` — the search as ``tune.json`` has it, plus each trial's per-request values;
* ``OUT/references.json`` — the tuning split's original and retrained models' values;
* ``OUT/summary.md`` — the references, then per method: the space searched, the trials (config, mean Avg. gap over the
  tuning groups it reached, per-request Avg. gap and forget accuracy, whether ASHA stopped it),
  the config the tune chose over every tuning group, and the one chosen per kind (the trial with
  the lowest mean Avg. gap over the class requests, and over the random + ids requests, among the
  trials that ran every request of that kind): the settings of the study's ``_tuned_class`` and
  ``_tuned_random_ids`` entries; and, where it differs, the trial the target-aware objective
  (:func:`obliviate.study.targets.tune_score`: the gap plus the points a retained class drops
  beyond the target, which these tunes did not yet use) picks from the same trials.

``--from-json`` re-renders ``summary.md`` from ``OUT/*.json`` alone (the trial folders need not
exist any more).

These are the tuning split's numbers (automobile, dog, a random 10 %, 300 ids inside horse; seed
3): they chose the settings; the held-out frontier (``bench_frontier.py --config
bench/frontier_heldout/frontier_heldout.yaml``) judges them on other classes, another id set and other seeds.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from obliviate.study.targets import DEFAULT_TARGETS, tune_score

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent  # this question's folder: its configs, results/ and README


def _fmt(v: Any, digits: int = 2) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "—"
        return f"{v:.{digits}g}" if abs(v) < 1e-2 and v != 0 else f"{v:.{digits}f}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def trial_records(tune_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """``{trial folder: [record, ...]}`` for every trial that wrote run records."""
    out: dict[str, list[dict[str, Any]]] = {}
    for d in sorted((tune_dir / "trials").glob("*")):
        recs = []
        for f in sorted((d / "runs").glob("*.json")):
            try:
                recs.append(json.loads(f.read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        if recs:
            out[d.name] = recs
    return out


def _config_of(rec: dict[str, Any]) -> dict[str, Any]:
    return dict(rec.get("method_config") or {})


def per_request(recs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{request: {status, gap, forget_acc, worst_drop, seconds}}`` of one trial's records."""
    out = {}
    for r in recs:
        v = r.get("values") or {}
        info = r.get("info") or {}
        out[str(r.get("request"))] = {
            "status": r.get("status"),
            "gap": v.get("gap/avg"),
            "forget_acc": v.get("acc/forget"),
            "worst_drop": v.get("worst_class_drop"),
            "seconds": r.get("seconds"),
            "steps": r.get("steps"),
            **{k: info[k] for k in ("stop_checks", "stop_forget_loss", "stop_heldout_loss") if k in info},
            "reason": r.get("reason") or str(r.get("error") or "")[:200],
        }
    return out


def summarize(tune_dir: Path) -> dict[str, Any] | None:
    path = tune_dir / "tune.json"
    if not path.exists():
        return None
    tune = json.loads(path.read_text())
    recs = trial_records(tune_dir)
    by_config = {}
    for recs_ in recs.values():
        cfg = _config_of(recs_[0])
        by_config[json.dumps(cfg, sort_keys=True)] = per_request(recs_)
    base = tune.get("base") or {}
    for t in tune.get("trials", []):
        full = {**base, **(t.get("config") or {})}
        # a record's method_config is the method's full config: match on the searched fields
        for key, reqs in by_config.items():
            cfg = json.loads(key)
            if all(cfg.get(k) == v for k, v in full.items()):
                t["requests"] = reqs
                break
    return tune


KIND_GROUPS: dict[str, tuple[str, ...]] = {"class": ("class",), "random_ids": ("random", "ids")}


def _target_score_of(tune: dict[str, Any], chosen: dict[str, Any]) -> float:
    """The target-aware score of a trial chosen by gap (to set beside the target-aware choice)."""
    t = next(x for x in tune.get("trials") or [] if x.get("trial") == chosen["trial"])
    reqs = chosen["requests"]
    return sum(_score(t["requests"][r], r, "target") for r in reqs) / len(reqs)


def _score(x: dict[str, Any], request: str, objective: str) -> float:
    values = {"gap/avg": float(x["gap"]), "worst_class_drop": x.get("worst_drop")}
    return tune_score(values, DEFAULT_TARGETS[request.split(":", 1)[0]], objective)


def best_per_kind(tune: dict[str, Any], objective: str = "gap") -> dict[str, dict[str, Any]]:
    """``{"class" | "random_ids": {trial, config, score, gap, worst_drop, requests}}``: per kind
    group, the trial with the lowest mean score (``objective``: ``"gap"``, the Avg. gap, as the
    study's entries were chosen; ``"target"``, gap + class drop beyond the target) over that
    group's tuning requests, among the trials that finished all of them (ASHA-stopped trials that
    never reached a request are not candidates)."""
    trials = tune.get("trials") or []
    out: dict[str, dict[str, Any]] = {}
    for label, kinds in KIND_GROUPS.items():
        reqs = sorted({r for t in trials for r in (t.get("requests") or {}) if r.split(":", 1)[0] in kinds})
        best: dict[str, Any] | None = None
        for t in trials:
            got = t.get("requests") or {}
            if not reqs or not all(got.get(r, {}).get("status") == "ok" for r in reqs):
                continue
            score = sum(_score(got[r], r, objective) for r in reqs) / len(reqs)
            if best is None or score < best["score"]:
                best = {
                    "trial": t.get("trial"),
                    "config": t.get("config") or {},
                    "score": score,
                    "gap": sum(float(got[r]["gap"]) for r in reqs) / len(reqs),
                    "worst_drop": max(float(got[r].get("worst_drop") or 0.0) for r in reqs),
                    "requests": reqs,
                }
        if best is not None:
            out[label] = best
    return out


def reference_rows(refs_dir: Path) -> list[dict[str, Any]]:
    """The tuning split's own references (``original``, ``retrain`` per tuning request), from the
    run that trained them (``obliviate run … --seeds 3 --set requests=[the tune requests]``)."""
    rows = []
    for f in sorted((refs_dir / "runs").glob("*.json")):
        r = json.loads(f.read_text())
        if r.get("status") != "ok":
            continue
        v = r.get("values") or {}
        rows.append(
            {
                "request": r.get("request"),
                "method": r.get("method"),
                "seed": r.get("seed"),
                "gap": v.get("gap/avg"),
                "forget_acc": v.get("acc/forget"),
                "worst_drop": v.get("worst_class_drop"),
                "seconds": r.get("seconds"),
            }
        )
    return sorted(rows, key=lambda x: (str(x["request"]), str(x["method"])))


HELDOUT_INTRO = [
    "# The held-out frontier's tuning runs (the tune split, not the verdict)",
    "",
    "Each method's settings for `bench/frontier_heldout/frontier_heldout.yaml` were searched with "
    "`obliviate tune METHOD --study bench/frontier_heldout/frontier_heldout.yaml` on the study's tune "
    "split only: class "
    "*automobile*, class *dog*, a random 10 % and 300 sample ids inside *horse*, seed 3 (airbench, "
    "full CIFAR-10). Objective: the mean Avg. gap to the retrained model over the tuning groups the "
    "method applies to (Optuna TPE, seeded; ASHA stops a poor trial after its first groups; 2 trials "
    "at a time, 1 CPU thread each, so the speed-ups here are not the held-out frontier's). The "
    "held-out frontier judges the chosen settings on *airplane*, *cat*, *ship*, another random "
    "10 % and 300 ids inside *frog*, seeds 0–2.",
    "",
]


def write_markdown(
    tunes: dict[str, dict[str, Any]], out: Path, refs: list[dict[str, Any]] = (), intro: str | None = None
) -> None:
    """``intro``: the Markdown that opens the file (its title and protocol), for another study's
    tunes; by default the held-out frontier's."""
    lines = intro.rstrip("\n").split("\n") + [""] if intro is not None else list(HELDOUT_INTRO)
    if refs:
        lines += [
            "## The tuning split's references (seed 3)",
            "",
            "| request | model | Avg. gap to retrain (pts) | forget acc % "
            "| worst retained class drop vs original (pts) | s |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {x['request']} | {x['method']} | {_fmt(x['gap'])} | {_fmt(100 * float(x['forget_acc']), 1)} | "
            f"{_fmt(x['worst_drop'])} | {_fmt(float(x['seconds'] or 0.0), 1)} |"
            for x in refs
        ]
        lines.append("")
    for method, t in sorted(tunes.items()):
        best = t.get("best") or {}
        lines += [
            f"## {method}",
            "",
            f"Searched: {', '.join(f'`{k}` {v}' for k, v in (t.get('space') or {}).items())}; "
            f"fixed: {', '.join(f'`{k}` = {_fmt(v)}' for k, v in (t.get('base') or {}).items()) or 'nothing'}; "
            f"{len(t.get('trials', []))} trials{' (interrupted)' if t.get('interrupted') else ''}.",
            "",
        ]
        reqs = sorted({r for tr in t.get("trials", []) for r in (tr.get("requests") or {})})
        head = ["trial", "config", "mean gap (groups)"] + [f"{r}: gap / forget acc % / steps / s" for r in reqs]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for tr in sorted(t.get("trials", []), key=lambda x: (x.get("gap") is None, x.get("gap") or 0.0)):
            cells = [
                ("**" + str(tr.get("trial")) + "**") if tr.get("trial") == best.get("trial") else str(tr.get("trial")),
                ", ".join(f"{k}={_fmt(v, 3)}" for k, v in (tr.get("config") or {}).items()),
                f"{_fmt(tr.get('gap'))} ({tr.get('groups')})" + (f" — {tr['error']}" if tr.get("error") else ""),
            ]
            for r in reqs:
                x = (tr.get("requests") or {}).get(r)
                if x is None:
                    cells.append("not run (stopped)")
                elif x["status"] == "not_applicable":
                    cells.append("not applicable")
                elif x["status"] != "ok":
                    cells.append(str(x["status"]))
                else:
                    cells.append(
                        f"{_fmt(x['gap'])} / {_fmt(100 * float(x['forget_acc']), 1)} / "
                        f"{x.get('steps')} / {_fmt(float(x.get('seconds') or 0.0), 1)}"
                    )
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            f"Chosen: {', '.join(f'`{k}` = {_fmt(v, 3)}' for k, v in (best.get('config') or {}).items())} "
            f"(mean gap {_fmt(best.get('gap'))} pts on the tuning groups)."
            if best
            else "Chosen: nothing (no trial finished every tuning group).",
            "",
        ]
        aware = best_per_kind(t, "target")
        for label, b in best_per_kind(t).items():
            lines.append(
                f"Chosen per kind, {label.replace('_', ' + ')} ({', '.join(b['requests'])}): trial "
                f"{b['trial']}, {', '.join(f'`{k}` = {_fmt(v, 4)}' for k, v in b['config'].items())} "
                f"(mean gap {_fmt(b['gap'])} pts; worst retained class drop {_fmt(b['worst_drop'])} pts)."
            )
            a = aware.get(label)
            if a is not None and a["trial"] != b["trial"]:
                lines.append(
                    f"The target-aware objective (gap + class drop beyond the target) picks trial "
                    f"{a['trial']} instead: {', '.join(f'`{k}` = {_fmt(v, 4)}' for k, v in a['config'].items())} "
                    f"(score {_fmt(a['score'])}, mean gap {_fmt(a['gap'])} pts; worst retained class drop "
                    f"{_fmt(a['worst_drop'])} pts; the gap-chosen trial scores {_fmt(_target_score_of(t, b))})."
                )
            elif a is not None:
                lines.append(
                    "The target-aware objective (gap + class drop beyond the target) picks the same trial "
                    f"(score {_fmt(a['score'])})."
                )
            lines.append("")
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tunes", type=Path, default=REPO / "runs" / "heldout_tune")
    ap.add_argument(
        "--references",
        type=Path,
        default=REPO / "runs" / "heldout_tune_refs",
        help="the run folder of the tuning split's original and retrained models",
    )
    ap.add_argument("--out", type=Path, default=HERE / "results" / "tune_summary")
    ap.add_argument(
        "--from-json", action="store_true", help="re-render OUT/summary.md from OUT/*.json (no trial folders needed)"
    )
    ap.add_argument(
        "--intro",
        type=Path,
        help="a Markdown file that opens summary.md (title and protocol) for another study's tunes "
        "(default: the held-out frontier's)",
    )
    args = ap.parse_args()
    intro = args.intro.read_text() if args.intro else None
    args.out.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        tunes = {f.stem: json.loads(f.read_text()) for f in sorted(args.out.glob("*.json")) if f.stem != "references"}
        ref_path = args.out / "references.json"
        write_markdown(tunes, args.out, json.loads(ref_path.read_text()) if ref_path.exists() else [], intro)
        for method, t in tunes.items():
            for objective in ("gap", "target"):
                for label, b in best_per_kind(t, objective).items():
                    print(
                        f"{method} {label} by {objective}: trial {b['trial']} {b['config']} mean gap {b['gap']:.2f}, "
                        f"worst drop {b['worst_drop']:.2f}, score {b['score']:.2f}"
                    )
        print(f"wrote {args.out / 'summary.md'}")
        return
    tunes = {}
    for d in sorted(p for p in args.tunes.glob("*") if p.is_dir()):
        t = summarize(d)
        if t is None:
            print(f"{d.name}: no tune.json (not run, or still running)")
            continue
        tunes[d.name] = t
        (args.out / f"{d.name}.json").write_text(json.dumps(t, indent=1, sort_keys=True) + "\n")
        best = t.get("best") or {}
        print(f"{d.name}: {len(t.get('trials', []))} trials, best {best.get('config')} gap {best.get('gap')}")
    refs = reference_rows(args.references) if (args.references / "runs").is_dir() else []
    if refs:
        (args.out / "references.json").write_text(json.dumps(refs, indent=1) + "\n")
    write_markdown(tunes, args.out, refs, intro)
    print(f"wrote {args.out / 'summary.md'}")


if __name__ == "__main__":
    main()
