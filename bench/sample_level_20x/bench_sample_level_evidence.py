"""The findings of ``bench/sample_level_20x/README.md``, recomputed from what the repo holds.

    .venv/bin/python bench/sample_level_20x/bench_sample_level_evidence.py
        [--out bench/sample_level_20x/results/sample_level_evidence.json] [--cache DIR]

1. **The forget − retain accuracy spread** (points) of every run record of the 20x sample-level
   work: the tune trials of ``calibrated_neggrad`` and ``loss_match`` (seed 3, random 10 %;
   ``results/tune/{calibrated_neggrad,loss_match}/trials/*/runs/``), the tune seed's original and
   retrained model (``results/tune_summary/references/``) and the held-out verdict
   (``results/study/runs/``, per request and method), all under ``bench/sample_level_20x/``. Retraining
   puts the forget rows below the retain rows; a method that forgets like it must move the spread.
2. **A plain cross-entropy retain term sharpens a net trained with label smoothing.**
   ``tests/methods/test_loss_match.py``'s problem (digits, a small CNN trained 30 epochs with label
   smoothing 0.2, a random 10 % request): ``loss_match`` (40 steps, β 0.5, lr 0.02) with the
   original's smoothing in its retain term, and with plain cross-entropy; the forget rows' mean
   loss before, after each, and the held-out target (≈ 15 s on 2 cores).
3. **Which forget rows does retraining get wrong, and does the original's loss point at them?**
   ``loss_match``'s rank rule gives the held-out tail to the forget rows the original finds
   hardest. From the reference outputs the study runner keeps beside the model cache
   (``--cache``/outputs/GROUP_KEY.safetensors, per group of ``results/study``):
   the forget rows the retrained model misclassifies, how many the original already misclassifies,
   the AUC of the original's per-row loss for telling them apart, and the precision of the rank
   rule's pick (the n rows of highest loss, n = the retrained model's misses). Beside it, the same
   AUC on the test rows (neither model trained on them): how well one model's loss predicts
   another's errors where no memorisation is involved. Skipped, and said so, without the cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import statistics
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent  # this question's folder: its configs, results/ and README
RESULTS = HERE / "results"
# the two tunes (``obliviate tune --out results/tune/METHOD``), named in the output by their studies
TUNES = (("calibrated_stop_random_tune", "calibrated_neggrad"), ("loss_match_tune", "loss_match"))


def _spread(path: str) -> tuple[dict[str, Any], float] | None:
    d = json.loads(Path(path).read_text())
    v = d.get("values") or {}
    if "acc/forget" not in v or "acc/retain" not in v:
        return None
    return d, round(100 * (v["acc/forget"] - v["acc/retain"]), 2)


def spreads() -> dict[str, Any]:
    out: dict[str, Any] = {"tune_trials": {}, "tune_references": {}, "heldout": {}}
    for tune, folder in TUNES:
        vals = []
        for p in sorted(glob.glob(str(RESULTS / "tune" / folder / "trials" / "*" / "runs" / "*.json"))):
            got = _spread(p)
            if got and got[0].get("steps"):  # a trial that took at least one step
                vals.append(got[1])
        out["tune_trials"][tune] = {"n": len(vals), "min": min(vals), "max": max(vals)}
    for p in sorted(glob.glob(str(RESULTS / "tune_summary" / "references" / "*.json"))):
        got = _spread(p)
        if got:
            out["tune_references"][got[0]["method_name"]] = got[1]
    per: dict[str, list[float]] = {}
    for p in sorted(glob.glob(str(RESULTS / "study" / "runs" / "*.json"))):
        got = _spread(p)
        if got:
            per.setdefault(f"{got[0]['request']} {got[0]['method']}", []).append(got[1])
    out["heldout"] = {k: {"runs": v, "mean": round(statistics.mean(v), 2)} for k, v in sorted(per.items())}
    return out


def rank_rule(cache: Path) -> dict[str, Any]:
    import numpy as np
    import torch.nn.functional as F
    from safetensors.torch import load_file
    from sklearn.metrics import roc_auc_score

    out: dict[str, Any] = {}
    for p in sorted(glob.glob(str(RESULTS / "study" / "groups" / "*.json"))):
        g = json.loads(Path(p).read_text())
        f = cache / "outputs" / f"{g['key']}.safetensors"
        if not f.is_file():
            out[f"{g['request']} seed {g['seed']}"] = {"skipped": f"no reference outputs at {f}"}
            continue
        t = load_file(str(f))
        row: dict[str, Any] = {}
        for split in ("forget", "test"):
            y = t[f"original/{split}/labels"].long()
            lo = F.cross_entropy(t[f"original/{split}/logits"].float(), y, reduction="none").numpy()
            miss_o = (t[f"original/{split}/logits"].argmax(1) != y).numpy()
            miss_r = (t[f"retrained/{split}/logits"].argmax(1) != y).numpy()
            n = int(miss_r.sum())
            top = np.argsort(-lo, kind="stable")[:n]
            row[split] = {
                "rows": int(len(y)),
                "retrained_misses": n,
                "of_them_original_misses": int((miss_o & miss_r).sum()),
                "original_misses": int(miss_o.sum()),
                "auc_original_loss_for_retrained_miss": round(float(roc_auc_score(miss_r, lo)), 3),
                "rank_pick_precision": round(float(miss_r[top].mean()), 3) if n else None,
            }
        out[f"{g['request']} seed {g['seed']}"] = row
    return out


def smoothing() -> dict[str, float]:
    import numpy as np
    import torch

    from obliviate.data import RandomForget, load_dataset, split_indices
    from obliviate.methods import get_method, run_method
    from obliviate.methods.calibrate import _losses
    from obliviate.models import create_model
    from obliviate.testing import TINY_TRAIN, TinyProblem
    from obliviate.training import fit, make_loader

    torch.manual_seed(0)
    ds = load_dataset("digits")
    tc = TINY_TRAIN.with_(epochs=30, augment=False, weight_decay=0.0, label_smoothing=0.2)
    model = create_model("small_cnn", num_classes=10, in_chans=1, seed=0, width=0.5)
    fit(model, make_loader(ds, torch.arange(len(ds.train_labels)), tc, 0), tc, device=torch.device("cpu"))
    p = TinyProblem(
        ds,
        split_indices(ds.label_info(), RandomForget(0.1), 0),
        model,
        tc,
        width=0.5,
        validation_rows=np.arange(0, 450, 2),
    )
    m = get_method("loss_match")(steps=40, lr=0.02, beta=0.5, min_gap=0.0)
    ctx = p.context(0)
    out: dict[str, float] = {}
    for name, c in (("smoothed", ctx), ("plain", dataclasses.replace(ctx, train_config=tc.with_(label_smoothing=0.0)))):
        result, _ = run_method(m, p.model, p.data(m), c)
        out["before"] = round(result.info["forget_loss_start"], 3)
        out["target"] = round(result.info["forget_loss_target"], 3)
        out[f"after_{name}"] = round(float(_losses(result.model, p.data(m).forget, ctx.device).mean()), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "sample_level_evidence.json")
    ap.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="the model cache the study ran with (default $OBLIVIATE_CACHE or ~/.cache/obliviate, /models)",
    )
    args = ap.parse_args()
    from obliviate.study.runner import default_cache_dir

    cache = args.cache or default_cache_dir() / "models"
    result = {
        "spread_forget_minus_retain_pts": spreads(),
        "retain_term_label_smoothing_nats": smoothing(),
        "rank_rule": rank_rule(cache),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
