"""The paper presets at their full scale and the memorising frontier at the literature's scale,
one command, for a machine with a GPU.

Every job is an obliviate study run as a user would run it (``obliviate run PRESET --scale full``;
the frontier through ``bench/frontier/bench_frontier.py``, which adds its summary). Each job writes
its own study folder under ``--out``; this script writes ``full_scale.json`` and ``full_scale.md``
beside them: per job the command, exit status, seconds and the study's headline rows. A job that
fails is recorded and the next one runs. Already finished runs are reused (the studies resume).

    python bench/full_scale/run_full_scale.py --device cuda --data-root ../shared/data/cifar10
    python bench/full_scale/run_full_scale.py --only frontier_memorise --device cuda
    python bench/full_scale/run_full_scale.py --smoke      # every job, shrunk, on the CPU (minutes)

``--smoke`` runs each job at its quick scale with a few images per class, a fraction of an epoch
and one seed: it checks that the command, the data paths and the summaries work end to end, not
what they measure. ``bad_teacher_resnet18`` at full scale reads CIFAR-100 (torchvision downloads
it where the machine can reach the internet; pass ``--download``).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PRESETS = ("retrain_table4", "resnet9_airplane_cat", "vgg16_neuron_mask", "bad_teacher_resnet18")
FRONTIER = ROOT / "bench" / "frontier_memorise" / "frontier_memorise.yaml"
JOBS = (*PRESETS, "frontier_memorise")
# --smoke: the quick scale, shrunk to a check of the plumbing
SMOKE_SET = ("dataset.train_per_class=6", "dataset.test_per_class=4", "train.epochs=0.05", "train.bf16=false")


def command(job: str, args: argparse.Namespace, out: Path) -> list[str]:
    """The command line of one job."""
    sets = [*SMOKE_SET] if args.smoke else []
    if job == "frontier_memorise":
        cmd = [sys.executable, str(ROOT / "bench" / "frontier" / "bench_frontier.py"), "--config", str(FRONTIER)]
        cmd += [*(() if args.smoke else ("--scale", "full")), "--out", str(out / "study"), "--summary-dir", str(out)]
        if args.data_root:
            cmd += ["--data-root", str(args.data_root)]
        if args.smoke:  # the id files name rows of the 500-per-class subset, absent from a shrunk one
            cmd += ["--seeds", "0"]
            sets += [
                "requests=[{kind: random, fraction: 0.1}, {kind: class, classes: [airplane]}]",
                "tune.requests=[{kind: random, fraction: 0.1}]",
            ]
        if args.device:
            sets.append(f"device={args.device}")
        for s in sets:
            cmd += ["--set", s]
        return cmd
    scale = "quick" if args.smoke else "full"  # a preset's CPU scale is its quick one
    cmd = [sys.executable, "-m", "obliviate.cli", "run", job, "--scale", scale, "--out", str(out), "-q"]
    if args.device:
        cmd += ["--device", args.device]
    if args.data_root and (args.smoke or job != "bad_teacher_resnet18"):  # its full scale is CIFAR-100
        cmd += ["--data-root", str(args.data_root)]
    if args.smoke:
        cmd += ["--seeds", "0"]
        if job == "bad_teacher_resnet18":  # CIFAR-100 at full scale; its quick scale is CIFAR-10
            sets.append("dataset.download=false")
    if args.download and not args.smoke:
        sets.append("dataset.download=true")
    for s in sets:
        cmd += ["--set", s]
    return cmd


# forget and test accuracy, obliviate's and SalUn's Avg. gap, the speed-up (results.csv's metric keys)
HEADLINE = ("acc/forget", "acc/test", "acc/test_retain", "gap/avg", "gap_salun/avg", "efficiency/speedup")


def headline(out: Path, job: str) -> list[dict[str, Any]]:
    """Per (model, request, method, seed) of the study's results.csv (one row per metric), the
    headline metrics: forget and test accuracy, both Avg. gaps, the speed-up."""
    path = out / ("study" if job == "frontier_memorise" else "") / "results.csv"
    if not path.is_file():
        return []
    runs: dict[tuple[str, ...], dict[str, Any]] = {}
    with path.open() as f:
        for r in csv.DictReader(f):
            if r["metric"] in HEADLINE:
                key = (r["model"], r["request"], r["method"], r["seed"])
                row = runs.setdefault(key, dict(zip(("model", "request", "method", "seed"), key)))
                row[r["metric"]] = float(r["value"])
    return list(runs.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=JOBS, help="run these jobs only (default: all)")
    ap.add_argument("--device", default=None, help="the studies' device (default: each study's own, 'auto')")
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--download", action="store_true", help="let torchvision download datasets (CIFAR-100)")
    ap.add_argument("--smoke", action="store_true", help="every job shrunk, on the CPU: a check of the plumbing")
    ap.add_argument("--timeout", type=float, default=None, help="seconds one job may take (default: no limit)")
    args = ap.parse_args(argv)
    if args.smoke and args.device is None:
        args.device = "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"scale": "smoke" if args.smoke else "full", "device": args.device, "jobs": {}}
    for job in args.only or JOBS:
        out = args.out / job
        cmd = command(job, args, out)
        print(f"[{job}] {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        try:
            rc = subprocess.run(cmd, cwd=ROOT, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
        report["jobs"][job] = {
            "command": cmd,
            "returncode": rc,
            "seconds": round(time.perf_counter() - t0, 1),
            "rows": headline(out, job),
        }
        print(f"[{job}] exit {rc} in {report['jobs'][job]['seconds']} s", flush=True)
    (args.out / "full_scale.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Full-scale runs ({report['scale']}, device {args.device or 'each study’s own'})", ""]
    lines += ["| job | exit | seconds | runs |", "|---|---|---|---|"]
    lines += [f"| {j} | {r['returncode']} | {r['seconds']} | {len(r['rows'])} |" for j, r in report["jobs"].items()]
    (args.out / "full_scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["returncode"] == 0 for r in report["jobs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
