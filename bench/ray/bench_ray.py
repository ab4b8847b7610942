"""Ray for studies and searches: the executor's overhead, and a tune of SSD's α judged held out.

    .venv/bin/python bench/ray/bench_ray.py overhead [--repeats 1]
    .venv/bin/python bench/ray/bench_ray.py ssd-tune [--trials 10] [--seeds 0 1 2] [--data-root ../shared/data/cifar10]

``overhead`` runs the embedded default study (digits, every method, 3 seeds: what `obliviate run`
runs) four ways, one after the other in this invocation, each with an empty model cache:
serial with 2 torch threads (the CLI's default here), ``--executor ray`` with 2 one-CPU workers,
serial with 1 thread, and ``--executor ray`` with one one-CPU worker. The last pair isolates Ray's
own cost (same threads, no parallelism); the first pair is what a user of this 2-core machine
gets. It checks that each Ray run wrote the same run keys as the serial runs, with the same
numbers as the 1-thread serial run (every Ray worker computes with one thread), and writes
``bench/ray/results/ray_overhead.{json,md}``.

``ssd-tune`` runs ``obliviate tune ssd --study bench/frontier_heldout/frontier_heldout.yaml`` over α on
the study's tuning *class* requests (automobile, dog; seed 3), then the held-out verdict: ``obliviate run`` of the
written ``best.yaml`` on the study's own class requests (airplane, cat, ship) and ``--seeds``,
beside SSD at the frontier's fixed α = 5 and SSD's oracle-free rule (``alpha_rule: forget_zero``).
Writes ``bench/ray/results/ray_ssd_tune.{json,md}`` (tuning trials and held-out rows apart).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent  # this question's folder: its configs, results/ and README
RESULTS = HERE / "results"
MACHINE = ("efficiency/seconds", "efficiency/speedup", "efficiency/peak_memory_mb")
OBLIVIATE = [sys.executable, "-m", "obliviate.cli"]


def _run(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return wall


def _records(out: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "runs").glob("*.json")}


def _same_numbers(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> bool:
    def strip(r: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in r["values"].items() if k not in MACHINE}

    return sorted(a) == sorted(b) and all(strip(a[k]) == strip(b[k]) for k in a)


def overhead(args: argparse.Namespace) -> None:
    modes = [
        ("serial, 2 threads", [], {}),
        ("ray, 2 workers x 1 CPU", ["--executor", "ray", "--ray-cpus", "2"], {}),
        ("serial, 1 thread", [], {"OMP_NUM_THREADS": "1"}),
        ("ray, 1 worker x 1 CPU", ["--executor", "ray", "--ray-cpus", "1"], {}),
    ]
    walls: dict[str, list[float]] = {m[0]: [] for m in modes}
    keys_ok, numbers_ok = True, True
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        for rep in range(args.repeats):
            recs: dict[str, dict[str, dict[str, Any]]] = {}
            for name, extra, env in modes:
                out, cache = Path(tmp) / f"out{rep}-{len(recs)}", Path(tmp) / f"cache{rep}-{len(recs)}"
                wall = _run(OBLIVIATE + ["run", "--out", str(out), "--cache", str(cache), "-q", *extra], env)
                walls[name].append(wall)
                recs[name] = _records(out)
                print(f"  repeat {rep + 1}: {name}: {wall:.1f} s ({len(recs[name])} runs)", flush=True)
                shutil.rmtree(cache, ignore_errors=True)
            serial1 = recs["serial, 1 thread"]
            for name in ("ray, 2 workers x 1 CPU", "ray, 1 worker x 1 CPU"):
                keys_ok &= sorted(recs[name]) == sorted(recs["serial, 2 threads"]) == sorted(serial1)
                numbers_ok &= _same_numbers(recs[name], serial1)
    med = {k: sorted(v)[len(v) // 2] for k, v in walls.items()}
    res = {
        "study": "default (digits, every method, 3 seeds, audit K = 4), empty model cache per run",
        "repeats": args.repeats,
        "wall_s": walls,
        "median_s": med,
        "ratio_ray2_vs_serial2": med["ray, 2 workers x 1 CPU"] / med["serial, 2 threads"],
        "ratio_ray1_vs_serial1": med["ray, 1 worker x 1 CPU"] / med["serial, 1 thread"],
        "same_keys": keys_ok,
        "same_numbers_as_serial_1_thread": numbers_ok,
        "machine": f"{os.cpu_count()} CPUs",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ray_overhead.json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [
        "# `--executor ray` against serial on the default study (bench/ray/bench_ray.py overhead)",
        "",
        f"{res['study']}; {res['machine']}; {args.repeats} repeat(s), the four modes one after the other "
        "in one invocation (median wall time of the whole command, Ray start-up included).",
        "",
        "| mode | wall time (s) |",
        "|---|---|",
    ]
    lines += [f"| {k} | {med[k]:.1f} |" for k in med]
    lines += [
        "",
        f"- Ray with 2 one-CPU workers / serial with 2 threads: **{res['ratio_ray2_vs_serial2']:.2f}×** "
        "(what a user of this 2-core machine gets)",
        f"- Ray with 1 one-CPU worker / serial with 1 thread: **{res['ratio_ray1_vs_serial1']:.2f}×** "
        "(Ray's own cost: start-up, a data load per worker, the queue)",
        f"- same run keys in every mode: {keys_ok}; same numbers as the 1-thread serial run: {numbers_ok}",
        "",
    ]
    (RESULTS / "ray_overhead.md").write_text("\n".join(lines))
    print("\n".join(lines))


def ssd_tune(args: argparse.Namespace) -> None:
    out = Path(args.out)
    study = REPO / "bench" / "frontier_heldout" / "frontier_heldout.yaml"
    tune_set = [
        "tune.requests=[{kind: class, classes: [automobile]}, {kind: class, classes: [dog]}]",
        "methods=[original, retrain, {name: ssd, config: {alpha: 5.0, forget_samples: 640, retain_samples: 640}},"
        " {name: ssd, label: ssd_forget_zero, config: {alpha_rule: forget_zero, forget_samples: 640,"
        " retain_samples: 640}}]",
        "requests=[{kind: class, classes: [airplane]}, {kind: class, classes: [cat]}, {kind: class, classes: [ship]}]",
    ]
    cmd = OBLIVIATE + [
        "tune",
        "ssd",
        "--study",
        str(study),
        "--param",
        "alpha",
        "--trials",
        str(args.trials),
        "--out",
        str(out / "tune"),
        "--data-root",
        str(args.data_root),
        "--ray-cpus",
        "2",
    ]
    for s in tune_set:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, text=True)  # (its progress lines stream to this terminal)
    tune_wall = time.perf_counter() - t0
    prev = RESULTS / "ray_ssd_tune.json"
    runs = json.loads(prev.read_text()).get("invocations", []) if prev.exists() else []
    if proc.returncode != 0:
        raise SystemExit("the tune failed")
    tune = json.loads((out / "tune" / "tune.json").read_text())
    best = tune["best"]
    # the held-out verdict: the frontier benchmark's own tables and target checks on best.yaml
    summary_dir = RESULTS / "ray_ssd_tune"
    t0 = time.perf_counter()
    _run(
        [
            sys.executable,
            str(REPO / "bench" / "frontier" / "bench_frontier.py"),
            "--config",
            str(out / "tune" / "best.yaml"),
            "--out",
            str(out / "heldout"),
            "--summary-dir",
            str(summary_dir),
            "--data-root",
            str(args.data_root),
            "--notes",
            os.devnull,
            "--seeds",
            *map(str, args.seeds),
        ]
    )
    held_wall = time.perf_counter() - t0
    rows = sorted(tune["trials"], key=lambda t: (t["groups"] != tune["tuning_groups"], t["gap"] or 1e9))
    lines = [
        "# SSD's α tuned with `obliviate tune` on tuning classes, judged on held-out ones "
        "(bench/ray/bench_ray.py ssd-tune)",
        "",
        "Tuning split: forget **automobile** and **dog**, seed **3** (CIFAR-10, airbench, the frontier_heldout "
        f"study's settings; SSD with 640 forget / 640 retain samples). {len(rows)} trials of Optuna TPE over "
        f"α ∈ {tune['space']['alpha']}, ASHA over the 2 tuning groups, 2 trials at a time on 1 CPU each "
        "(their speed-ups are not the verdict's), "
        f"{next(r['tune_wall_s'] for r in runs if not r['tune_resumed']) / 60:.1f} min.",
        "",
        "| trial | α | mean Avg. gap on the tuning groups (pts) | groups | speed-up |",
        "|---|---|---|---|---|",
    ]
    for t in rows:
        gap = "failed" if t["failed"] else f"{t['gap']:.3f}"
        lines.append(
            f"| {t['trial']} | {t['config']['alpha']:.3f} | {gap} | {t['groups']} | "
            f"{'' if t['speedup'] is None else format(t['speedup'], '.0f') + '×'} |"
        )
    summary = json.loads((summary_dir / "frontier_summary.json").read_text())
    held = [
        "| held-out request | method | Avg. gap (pts) | worst class drop (pts) | speed-up | noise floor (pts) |",
        "|---|---|---|---|---|---|",
    ]
    for req, entry in summary["requests"].items():
        for row in entry["rows"]:
            if row["method"] in ("original", "retrain"):
                continue
            v = row["values"]

            def cell(k: str, f: str, v: dict[str, Any] = v) -> str:
                return f"{f.format(v[k]['mean'])} ± {f.format(v[k]['std'])}" if k in v else "–"

            floor = entry.get("noise_floor")
            held.append(
                f"| {req} | {row['method']} | {cell('gap/avg', '{:.2f}')} | {cell('worst_class_drop', '{:.2f}')} | "
                f"{cell('efficiency/speedup', '{:.1f}')}× | {'–' if floor is None else format(floor, '.2f')} |"
            )
    lines += [
        "",
        f"Best: α = {best['config']['alpha']:.3f} ({best['gap']:.3f} pts on the tuning groups).",
        "",
        "Held out (mean ± std over the seeds; serial, 2 torch threads, references trained alone):",
        "",
        *held,
        "",
        f"Held-out verdict: `ssd_tuned` (that α) beside `ssd` (α = 5) and `ssd_forget_zero` on **airplane, "
        f"cat, ship**, seeds **{', '.join(map(str, args.seeds))}** — none of them seen by the tune — in "
        f"[ray_ssd_tune/frontier_summary.md](ray_ssd_tune/frontier_summary.md). Wall time per invocation (held out): "
        + "; ".join(f"seeds {r['seeds']}: {r['heldout_wall_s'] / 60:.1f} min" for r in runs)
        + ".",
        "",
    ]
    (RESULTS / "ray_ssd_tune.md").write_text("\n".join(lines))
    runs.append(
        {"seeds": args.seeds, "tune_resumed": tune["resumed"], "tune_wall_s": tune_wall, "heldout_wall_s": held_wall}
    )  # (a rerun reads finished work back: every invocation is kept)
    (RESULTS / "ray_ssd_tune.json").write_text(
        json.dumps({"tune": tune, "invocations": runs}, indent=2, default=str) + "\n"
    )
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("overhead")
    s.add_argument("--repeats", type=int, default=1)
    s = sub.add_parser("ssd-tune")
    s.add_argument("--trials", type=int, default=10)
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    s.add_argument("--data-root", type=Path, default=REPO / ".." / "shared" / "data" / "cifar10")
    s.add_argument("--out", default=str(REPO / "runs" / "bench-ray-ssd"))
    args = ap.parse_args()
    overhead(args) if args.what == "overhead" else ssd_tune(args)


if __name__ == "__main__":
    main()
