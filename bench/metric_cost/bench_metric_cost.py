"""What each default metric costs per run, at the held-out frontier's sizes.

    .venv/bin/python bench/metric_cost/bench_metric_cost.py [--outputs FILE.safetensors] [--threads 2]

Times :func:`obliviate.metrics.compute_metrics` one metric at a time, twice: the first pass also
computes (and memoises) the reference models' values, the second is what every further run of a
group pays. Inputs: a group's cached reference outputs (``<model cache>/outputs/<group
key>.safetensors``, written by any vision study) when ``--outputs`` names one, else synthetic
logits at the frontier's sizes (5,000 forget, 10,000 retain, 9,000 test rows; 10 classes,
class 0 forgotten). Prints one line per metric and writes ``bench/metric_cost/results/metric_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from obliviate.metrics import compute_metrics
from obliviate.metrics.base import EvalInputs, Outputs
from obliviate.metrics.defaults import DEFAULT_METRICS

HERE = Path(__file__).resolve().parent  # this question's folder: its configs, results/ and README
ROLES = ("original", "retrained", "random")


def synthetic(
    n_forget: int = 5000, n_retain: int = 10000, n_test: int = 9000, k: int = 10
) -> dict[str, dict[str, Outputs]]:
    g = torch.Generator().manual_seed(0)

    def outs(n: int, labels: torch.Tensor, sharp: float) -> Outputs:
        logits = torch.randn(n, k, generator=g)
        logits[torch.arange(n), labels] += sharp
        return Outputs(logits, labels)

    y_test = torch.randint(0, k, (n_test,), generator=g)
    splits = {
        "forget": torch.zeros(n_forget, dtype=torch.long),
        "retain": torch.randint(1, k, (n_retain,), generator=g),
        "test": y_test,
    }
    out = {}
    for role, sharp in zip(ROLES, (4.0, 3.5, 0.0)):
        d = {s: outs(len(y), y, sharp) for s, y in splits.items()}
        d["test_forget"] = d["test"].subset(torch.nonzero(y_test == 0).flatten())
        d["test_retain"] = d["test"].subset(torch.nonzero(y_test != 0).flatten())
        out[role] = d
    return out


def from_file(path: Path) -> dict[str, dict[str, Outputs]]:
    from safetensors.torch import load_file

    t = load_file(str(path))
    splits = sorted({k.split("/")[1] for k in t})
    return {r: {s: Outputs(t[f"{r}/{s}/logits"], t[f"{r}/{s}/labels"]) for s in splits} for r in ROLES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outputs", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "metric_cost.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    outs = from_file(args.outputs) if args.outputs else synthetic()
    sizes = {s: len(o) for s, o in outs["original"].items()}
    memo: dict = {}
    seconds: dict[str, list[float]] = {}
    for _ in range(2):
        for name in DEFAULT_METRICS:
            inputs = EvalInputs(
                outputs={"unlearned": outs["original"], **outs},
                num_classes=10,
                class_names=[str(i) for i in range(10)],
                forget_classes=(0,),
                seed=0,
                run={"seconds": 1.0, "steps": 1.0, "retrain_seconds": 200.0, "retrain_steps": 1.0},
                memo=memo,
            )
            t0 = time.perf_counter()
            compute_metrics([name], inputs)
            seconds.setdefault(name, []).append(time.perf_counter() - t0)
    for name, (first, later) in seconds.items():
        print(f"{name:24s} first run of a group {first:7.2f} s   every further run {later:7.2f} s")
    later = {n: v[1] for n, v in seconds.items()}
    salun = later["mia_efficacy_salun"] + later["gap_to_retrain_salun"]
    print(
        f"all default metrics, a further run: {sum(later.values()):.2f} s, of which SalUn's protocol "
        f"(mia_efficacy_salun + gap_to_retrain_salun) {salun:.2f} s"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "inputs": args.outputs.name if args.outputs else "synthetic",
                "sizes": sizes,
                "threads": args.threads,
                "seconds": {n: {"first": v[0], "further": v[1]} for n, v in seconds.items()},
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
