"""Train the ``airbench`` recipes on the real CIFAR-10 and report wall time and test accuracy.

    .venv/bin/python bench/airbench/bench_airbench.py [--data ../shared/data/cifar10]
        [--recipes airbench airbench_quick] [--seed 0] [--threads 2]
        [--out bench/airbench/results/airbench.json]

Training wall time is measured around :func:`obliviate.training.fit` (whitening init included,
evaluation excluded). The load average (``os.getloadavg``) is recorded before and after each run:
on a shared machine a high load inflates the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from obliviate.data import load_dataset
from obliviate.models import create_model, num_parameters
from obliviate.recipes import list_recipes, recipe
from obliviate.training import fit, make_loader, predict_logits
from obliviate.utils import write_json_atomic

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent  # this question's folder: its configs, results/ and README


def run_recipe(name: str, data: Any, seed: int, changes: dict[str, Any], width: float | None) -> dict[str, Any]:
    r = recipe(name)
    cfg = r.config.with_(**changes) if changes else r.config
    kwargs = dict(r.model_kwargs)
    if width is not None:
        kwargs["width"] = width
    model = create_model(r.model, num_classes=data.num_classes, seed=seed, **kwargs)
    loader = make_loader(data, torch.arange(len(data.train_labels)), cfg, seed=seed)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    res = fit(model, loader, cfg, device=torch.device("cpu"))
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()
    acc = {}
    t1 = time.perf_counter()
    for tta in ("none", "flip"):
        logits = predict_logits(
            model,
            data.test_images,
            mean=data.mean,
            std=data.std,
            batch_size=1000,
            bf16=cfg.bf16,
            channels_last=cfg.channels_last,
            tta=tta,
        )
        acc[tta] = float((logits.argmax(1) == data.test_labels).float().mean())
    eval_s = time.perf_counter() - t1
    return {
        "recipe": name,
        "model": r.model,
        "model_kwargs": kwargs,
        "parameters": num_parameters(model),
        "config": cfg.to_dict(),
        "seed": seed,
        "train_wall_s": round(wall, 2),
        "fit_loop_s": round(res.seconds, 2),
        "train_images_per_s": round(res.images / res.seconds, 1),
        "epoch_loss": [round(x, 4) for x in res.epoch_loss],
        "test_acc": round(acc["none"], 4),
        "test_acc_tta_flip": round(acc["flip"], 4),
        "eval_s": round(eval_s, 2),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data" / "cifar10")
    ap.add_argument("--recipes", nargs="+", default=["airbench", "airbench_quick"], choices=list_recipes())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=float, default=None, help="override the recipe's epochs")
    ap.add_argument("--width", type=float, default=None, help="override the recipe's width")
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="override TrainConfig fields (values parsed as JSON, else as strings)",
    )
    ap.add_argument("--out", type=Path, default=HERE / "results" / "airbench.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    changes: dict[str, Any] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            changes[key] = json.loads(value)
        except json.JSONDecodeError:
            changes[key] = value
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    data = load_dataset("cifar10", root=str(args.data))
    runs = []
    for name in args.recipes:
        out = run_recipe(name, data, args.seed, changes, args.width)
        print(
            f"{name:15s} train {out['train_wall_s']:7.1f} s ({out['train_images_per_s']:.0f} img/s)  "
            f"test acc {out['test_acc']:.4f}  with flip TTA {out['test_acc_tta_flip']:.4f}  "
            f"load avg {out['loadavg_before'][0]:.2f} -> {out['loadavg_after'][0]:.2f}",
            flush=True,
        )
        runs.append(out)
    write_json_atomic(
        args.out,
        {
            "torch": torch.__version__,
            "threads": args.threads,
            "machine": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "runs": runs,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
