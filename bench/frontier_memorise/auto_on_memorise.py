"""What does ``method="auto"`` deliver on the net that memorises, and would the memorising
frontier's best entries pass its guard?

The frontier (``bench/frontier/bench_frontier.py`` with ``frontier_memorise.yaml``) measures every
method with settings fixed in a spec. The product's door is different: ``obliviate.unlearn`` with
``method="auto"`` derives its step from the model in hand and runs every attempt under the guard,
which rolls back a result that costs utility or that the membership audit still recognises. This
script takes the frontier's own originals, forget sets and retrained models (all from its cache:
nothing is trained here) and, per request (``--kinds``; a whole class goes to SSD with α set on the
model in hand, samples to the calibrated NegGrad+) and seed:

* calls ``obliviate.unlearn(original, forget=, retain=, heldout=, method="auto", fallback="refuse")``
  as a production caller would — no reference given; the held-out rows are the study's validation
  rows — so what comes back is what ``auto`` would deliver without falling back to retraining
  (with ``fallback="retrain"`` a refused request is retrained, exact by construction);
* calls ``obliviate.unlearn`` with each candidate entry of the frontier (``--candidates``: the
  spec's labels, their settings as the spec gives them) under the same guard;
* measures each delivered model with ``obliviate.audit`` against the frontier's retrained model and
  its two audit references: the Avg. gap to retraining beside doing nothing's and the noise floor,
  and offline LiRA (K = 3).

Run after the frontier has trained its models::

    python bench/frontier_memorise/auto_on_memorise.py --seeds 0 1 2

(writes ``results/auto_on_memorise.json``, keeping the rows of requests and seeds it does not rerun,
and prints a table; ``--cache`` is the frontier's).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import obliviate
from obliviate.data.loader import normalise
from obliviate.deletion import DeletionRefused
from obliviate.models.checkpoint import ModelCache
from obliviate.study.spec import load_study
from obliviate.study.targets import request_kind
from obliviate.study.tasks.base import QuietProgress
from obliviate.study.tasks.vision import VisionTask

HERE = Path(__file__).resolve().parent
KINDS = ("random", "ids", "class")


class _CachedModels(VisionTask):
    """The frontier's task, reading its models from the cache and refusing to train any; it keeps
    every model it loads, by role (``original``, ``retrained``, then the audit references)."""

    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **k)
        self.loaded: list[nn.Module] = []

    def _cached_or_train(self, key_spec: dict[str, Any], desc: str, progress: Any, train: Any) -> Any:
        def refuse(_cb: Any) -> Any:
            raise SystemExit(f"{desc} is not in the cache: run the memorising frontier for this seed first")

        model, meta = super()._cached_or_train(key_spec, desc, progress, refuse)
        self.loaded.append(model)
        return model, meta


def _rows(images: torch.Tensor, labels: torch.Tensor, rows: np.ndarray, mean: torch.Tensor, std: torch.Tensor):
    idx = torch.as_tensor(rows, dtype=torch.long)
    return normalise(images[idx], mean, std), labels[idx]


def _delivered(call: dict[str, Any]) -> tuple[nn.Module | None, dict[str, Any]]:
    """Run one ``obliviate.unlearn`` call; the model (None when refused) and what its evidence says."""
    t0 = time.perf_counter()
    try:
        res = obliviate.unlearn(**call)
    except DeletionRefused as e:
        ev = e.evidence
        return None, {
            "outcome": "refused",
            "seconds": round(time.perf_counter() - t0, 2),
            "attempts": [
                {"method": a["method"], "passed": a["passed"], "failures": a["failures"], "steps": a["steps"]}
                for a in ev["attempts"]
            ],
        }
    ev = res.evidence
    return res.model, {
        "outcome": ev["outcome"],
        "method": ev["method"]["name"],
        "seconds": round(time.perf_counter() - t0, 2),
        "unlearning_seconds": round(float(ev["wall_seconds"]), 2),
        "attempts": [
            {"method": a["method"], "passed": a["passed"], "failures": a["failures"], "steps": a["steps"]}
            for a in ev["attempts"]
        ],
    }


def _measured(model: nn.Module, against: dict[str, Any]) -> dict[str, Any]:
    """``obliviate.audit`` of a delivered model against the frontier's retrained model and references."""
    a = obliviate.audit(model, **against)
    return {
        "gap": round(a["gap_points"], 2),
        "gap_doing_nothing": round(a["original"]["gap_points"], 2),
        "noise_floor": round(a["noise_floor_points"], 2),
        "forget_acc": round(a["forget"]["accuracy"] * 100, 1),
        "retrained_forget_acc": round(a["reference"]["forget"]["accuracy"] * 100, 1),
        "heldout_acc": round(a["heldout"]["accuracy"] * 100, 1),
        "original_heldout_acc": round(a["original"]["heldout"]["accuracy"] * 100, 1),
        "lira_auc": round(a["per_example"]["auc"], 3),
        "lira_auc_doing_nothing": round(a["original"]["per_example"]["auc"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=HERE / "frontier_memorise.yaml")
    ap.add_argument("--cache", type=Path, default=Path("bench/work/memorise_cache"), help="the frontier's --cache")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--candidates",
        nargs="*",
        default=["salun_tuned_random", "sfron", "loss_match_tuned_random_64steps"],
        help="labels of the spec's method entries to run under the guard beside auto",
    )
    ap.add_argument(
        "--kinds",
        nargs="+",
        choices=KINDS,
        default=list(KINDS),
        help="the spec's requests of these kinds (default: every kind)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "auto_on_memorise.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    spec = load_study(args.config, seeds=args.seeds)
    entries = {m.label: m for m in spec.methods}
    unknown = [c for c in args.candidates if c not in entries]
    if unknown:
        ap.error(f"--candidates {unknown} are not labels of {args.config.name}: choose from {sorted(entries)}")
    task = _CachedModels(spec, ModelCache(args.cache), torch.device("cpu"))
    task.prepare(QuietProgress())
    ds = task.ds
    assert ds is not None
    mean = torch.tensor(ds.mean).view(1, -1, 1, 1)
    std = torch.tensor(ds.std).view(1, -1, 1, 1)
    names = list(ds.class_names)
    # rows of groups this run does not touch (other kinds or seeds) are kept; each group is written
    # as soon as it is done, so an interrupted run loses at most the group in hand
    rows_out: list[dict[str, Any]] = json.loads(args.out.read_text())["rows"] if args.out.exists() else []

    def write() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        seeds = sorted({r["seed"] for r in rows_out})
        args.out.write_text(json.dumps({"seeds": seeds, "rows": rows_out}, indent=1) + "\n")

    for group in task.plan():
        kind = request_kind(group.request)
        if kind not in args.kinds:
            continue
        task.loaded.clear()
        task.open(group, QuietProgress())
        original, retrained, *refs = task.loaded
        split, seed = group.handle.split, group.seed
        validation = task._validation_rows(seed)
        test = np.setdiff1d(np.arange(len(ds.test_labels)), validation)
        forget = _rows(ds.train_images, ds.train_labels, split.forget, mean, std)
        retain = _rows(ds.train_images, ds.train_labels, split.retain, mean, std)
        heldout = _rows(ds.test_images, ds.test_labels, validation, mean, std)
        measured_on = _rows(ds.test_images, ds.test_labels, test, mean, std)
        base = dict(
            forget=forget,
            retain=retain,
            heldout=heldout,
            train_config=spec.train,
            model_factory=task._factory(group.handle.model_spec),
            class_names=names,
            fallback="refuse",
            seed=seed,
        )

        against = dict(
            forget=forget,
            retain=retain,
            heldout=measured_on,
            original=original,
            references=[retrained, *refs],
            class_names=names,
            seed=seed,
        )

        calls: dict[str, dict[str, Any]] = {"auto": {"method": "auto"}}
        for label in args.candidates:
            e = entries[label]
            if not e.applies_to(kind):
                continue
            calls[label] = {"method": e.name, "config": dict(e.config)}
        rows_out = [r for r in rows_out if (r["request"], r["seed"]) != (group.request, seed)]
        for label, extra in calls.items():
            model, ev = _delivered({**base, "model": original, **extra})  # unlearn leaves it untouched
            row = {"request": group.request, "seed": seed, "entry": label, **ev}
            if model is not None:
                row["measured"] = _measured(model, against)
            rows_out.append(row)
            m = row.get("measured", {})
            print(
                f"{group.request:34s} seed {seed} {label:34s} {row['outcome']:9s} "
                f"gap {m.get('gap', '–')} (nothing {m.get('gap_doing_nothing', '–')}, "
                f"floor {m.get('noise_floor', '–')}) "
                f"LiRA {m.get('lira_auc', '–')}  attempts "
                + "; ".join(f"{a['method']} {'passed' if a['passed'] else a['failures']}" for a in ev["attempts"]),
                flush=True,
            )
        write()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
