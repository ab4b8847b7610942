"""The newer methods and rules on the embedded digits data, where everything takes seconds.

    .venv/bin/python bench/digits_methods/bench_digits_methods.py [--out bench/digits_methods/results/digits_methods]

Prints, and writes as ``.md`` / ``.json``:

1. ``ct``, ``msg``, ``challenge_first``, ``delete`` (defaults) and ``sfron`` (50 steps) on the
   tiny problem (small CNN, forget class 3), problem seeds 0 and 1: forget, retain and
   retained-class test accuracy, wall seconds.
2. SSD with a fixed α = 6 (the default study's) against ``alpha_rule: forget_zero`` on classes
   0, 1, 3, 5 and 8 (seed 0): forget accuracy, retained-class test accuracy, the α chosen.
3. The calibrated stop: ``calibrated_neggrad`` at β ∈ {0.95, 0.9, 0.7, 0.5, 0.3, 0.2, 0.1} on a
   digits net trained to memorise (30 epochs, no augmentation, no weight decay), random 10 %
   request, seed 0, every other test row held out: steps taken (10 epochs = 100 is the budget),
   the losses at the stop, forget and retained-class test accuracy.

Nothing here is tuned against a retrained model; section 3 is where ``calibrated_neggrad``'s
default β = 0.3 was read from (so it is to be judged elsewhere).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent  # this question's folder: its configs, results/ and README


def _acc(problem: Any, model: torch.nn.Module, part: str) -> float:
    return round(problem.accuracy(model, part), 3)


def methods_on_class(seeds: tuple[int, ...] = (0, 1)) -> list[dict[str, Any]]:
    from obliviate.methods import get_method, run_method
    from obliviate.testing import tiny_problem

    rows = []
    for seed in seeds:
        tp = tiny_problem(seed=seed)
        rows.append(
            {
                "method": "original",
                "seed": seed,
                "forget": _acc(tp, tp.model, "forget"),
                "retain": _acc(tp, tp.model, "retain"),
                "test_retain": _acc(tp, tp.model, "test_retain"),
            }
        )
        for name, cfg in (("ct", {}), ("msg", {}), ("challenge_first", {}), ("delete", {}), ("sfron", {"iters": 50})):
            cls = get_method(name)
            res, stats = run_method(cls(cfg), tp.model, tp.data(cls), tp.context(0))
            rows.append(
                {
                    "method": name,
                    "seed": seed,
                    "forget": _acc(tp, res.model, "forget"),
                    "retain": _acc(tp, res.model, "retain"),
                    "test_retain": _acc(tp, res.model, "test_retain"),
                    "seconds": round(stats.seconds, 2),
                }
            )
    return rows


def ssd_rule(classes: tuple[str, ...] = ("0", "1", "3", "5", "8")) -> list[dict[str, Any]]:
    from obliviate.data import ClassForget
    from obliviate.methods import get_method, run_method
    from obliviate.testing import tiny_problem

    rows = []
    for c in classes:
        tp = tiny_problem(ClassForget((c,)), seed=0)
        for label, cfg in (("alpha=6", {"alpha": 6.0}), ("forget_zero", {"alpha_rule": "forget_zero"})):
            cls = get_method("ssd")
            res, _ = run_method(cls(cfg), tp.model, tp.data(cls), tp.context(0))
            rows.append(
                {
                    "class": c,
                    "rule": label,
                    "forget": _acc(tp, res.model, "forget"),
                    "test_retain": _acc(tp, res.model, "test_retain"),
                    "alpha": round(res.info["alpha"], 2),
                    "trials": len(res.info.get("alpha_trials", [])),
                    "reached": res.info.get("alpha_reached"),
                }
            )
    return rows


def calibrated_stop(betas: tuple[float, ...] = (0.95, 0.9, 0.7, 0.5, 0.3, 0.2, 0.1)) -> list[dict[str, Any]]:
    from obliviate.data import RandomForget, load_dataset, split_indices
    from obliviate.methods import UnlearnData, get_method, run_method
    from obliviate.models import create_model
    from obliviate.testing import TINY_TRAIN, TinyProblem
    from obliviate.training import fit, make_loader

    ds = load_dataset("digits")
    tc = TINY_TRAIN.with_(epochs=30, augment=False, weight_decay=0.0)
    model = create_model("small_cnn", num_classes=10, in_chans=1, seed=0, width=0.5)
    fit(model, make_loader(ds, torch.arange(len(ds.train_labels)), tc, 0), tc, device=torch.device("cpu"))
    tp = TinyProblem(ds, split_indices(ds.label_info(), RandomForget(0.1), 0), model, tc, width=0.5)
    rows = [
        {
            "beta": "memorised original",
            "forget": _acc(tp, model, "forget"),
            "test_retain": _acc(tp, model, "test_retain"),
        }
    ]
    for beta in betas:
        m = get_method("calibrated_neggrad")({"beta": beta})
        data = UnlearnData(ds, tp.split, m.uses, validation_rows=np.arange(0, len(ds.test_labels), 2))
        res, stats = run_method(m, model, data, tp.context(0))
        rows.append(
            {
                "beta": beta,
                "steps": stats.steps,
                "forget_loss": round(res.info["stop_forget_loss"], 4),
                "heldout_loss": round(res.info["stop_heldout_loss"], 4),
                "stopped": res.info["stop_forget_loss"] >= res.info["stop_heldout_loss"],
                "forget": _acc(tp, res.model, "forget"),
                "test_retain": _acc(tp, res.model, "test_retain"),
            }
        )
    return rows


def _md(title: str, rows: list[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = [f"## {title}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "–")) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "digits_methods")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    results = {
        "methods_on_class_3": methods_on_class(),
        "ssd_alpha_rule": ssd_rule(),
        "calibrated_stop_random_10pct": calibrated_stop(),
    }
    text = "# The newer methods and rules on digits\n\n" + "\n".join(_md(k, v) for k, v in results.items())
    print(text)
    args.out.with_suffix(".md").write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
