"""What a short method's batch-norm handling does on CIFAR-10 : ``bn_stats`` side by side.

    .venv/bin/python bench/bn_stats/bench_bn_stats.py [--data-root ../shared/data/cifar10] [--seed 0]
        [--out bench/bn_stats/results/study] [--cache DIR] [--threads 2]

The frontier's class request (forget *airplane* from the airbench net, full CIFAR-10, 4 epochs)
on one seed, with the frontier's cheap configurations of ``scrub``, ``finetune`` and
``random_label`` — each under every ``bn_stats`` policy (``method``, ``keep``, ``eval``,
``retain``) and nothing else changed — beside ``original`` and ``retrain``. It runs through the
study runner (records under ``--out``, models in the content-addressed cache, resumable) and
prints, per run: forget accuracy, retained-class test accuracy, Avg. gap to the retrained model and
wall time; then writes ``bn_stats.json`` and ``bn_stats.md`` next to ``--out``.

This measures a mechanism on one seed; it tunes nothing. Choosing a policy per method belongs
on tuning requests and seeds, judged on others (the held-out frontier).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent  # this question's folder: its configs, results/ and README
FRONTIER = REPO / "bench" / "frontier" / "frontier.yaml"
POLICIES = ("method", "keep", "eval", "retain")
METHODS = ("scrub", "finetune", "random_label")
KEYS = (
    ("acc/forget", "forget acc %", 100),
    ("acc/test_retain", "retained-class test acc %", 100),
    ("gap/avg", "Avg. gap (pts)", 1),
    ("efficiency/seconds", "time (s)", 1),
)


def study(seed: int, data_root: str) -> dict[str, Any]:
    raw = yaml.safe_load(FRONTIER.read_text())
    frontier = {m["name"]: m.get("config", {}) for m in raw["methods"] if isinstance(m, dict)}
    methods: list[Any] = ["original", "retrain"]
    for name in METHODS:
        for p in POLICIES:
            methods.append({"name": name, "label": f"{name}[{p}]", "config": {**frontier[name], "bn_stats": p}})
    return {
        **{k: v for k, v in raw.items() if k not in ("scales", "runtime", "methods", "requests", "seeds")},
        "name": "bn-stats",
        "dataset": {**raw["dataset"], "root": data_root},
        "requests": [{"kind": "class", "classes": ["airplane"]}],
        "methods": methods,
        "seeds": [seed],
        "description": "bn_stats policies side by side on the frontier's class request (one seed).",
    }


class Printer:
    """The runner's progress, printed to stderr."""

    def stage(self, text: str) -> None:
        print(f"[bench] {text}", file=sys.stderr, flush=True)

    def steps(self, desc: str) -> Any:
        import contextlib

        return contextlib.nullcontext(lambda _ev: None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", default=str(REPO / ".." / "shared" / "data" / "cifar10"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "study")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    from obliviate.api import run_study
    from obliviate.report import aggregate
    from obliviate.study.spec import parse_study

    torch.set_num_threads(args.threads)
    spec = parse_study(study(args.seed, args.data_root))
    run_study(spec, args.out, cache_dir=args.cache, progress=Printer())
    runs = [json.loads(p.read_text()) for p in (args.out / "runs").glob("*.json")]
    runs = [r for r in runs if r.get("status") == "ok"]
    agg = aggregate(runs)
    rows = []
    for label in ["original", "retrain"] + [f"{m}[{p}]" for m in METHODS for p in POLICIES]:
        v = next((vals for (_, _, m), vals in agg.items() if m == label), None)
        if v is None:
            continue
        rows.append({"method": label, **{k: v[k][0] * s for k, _, s in KEYS if k in v}})
    header = "| method | " + " | ".join(t for _, t, _ in KEYS) + " |"
    lines = [
        f"# bn_stats side by side (CIFAR-10 airbench, forget airplane, seed {args.seed})",
        "",
        header,
        "|---|" + "---|" * len(KEYS),
    ]
    for r in rows:
        lines.append(f"| {r['method']} | " + " | ".join(f"{r[k]:.2f}" if k in r else "–" for k, _, _ in KEYS) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out.parent / "bn_stats.md").write_text(text)
    (args.out.parent / "bn_stats.json").write_text(json.dumps({"seed": args.seed, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
