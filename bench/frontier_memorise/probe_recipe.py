"""How close does a recipe come to memorising the frontier's 5,000-image CIFAR-10 subset? Trains
airbench on it once and prints train and test accuracy and loss (no augmentation at evaluation)
and the seconds taken, as one JSON line (appended to ``results/recipe_probe.jsonl``).

    python bench/frontier_memorise/probe_recipe.py --epochs 20 --crop-pad 0
    python bench/frontier_memorise/probe_recipe.py --epochs 24 --crop-pad 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from obliviate.data import load_dataset
from obliviate.models import create_model
from obliviate.recipes import get_recipe
from obliviate.training import fit, make_loader, predict_logits

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=str(HERE.parents[2] / "shared" / "data" / "cifar10"))
    ap.add_argument("--per-class", type=int, default=500)
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--epochs", type=float, default=20.0)
    ap.add_argument("--crop-pad", type=int, default=0, help="0: flips only (no crops)")
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset("cifar10", root=args.data_root).subset(args.per_class, 500, seed=0)
    cfg = get_recipe(
        "airbench", epochs=args.epochs, label_smoothing=args.label_smoothing, crop_pad=args.crop_pad, bf16=False
    )
    model = create_model("airbench", num_classes=10, in_chans=3, seed=0, width=args.width)
    t0 = time.perf_counter()
    fit(model, make_loader(ds, torch.arange(len(ds.train_labels)), cfg, seed=0), cfg, device=torch.device("cpu"))
    seconds = time.perf_counter() - t0

    def measure(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        logits = predict_logits(model, x, mean=ds.mean, std=ds.std)
        return {
            "acc": float((logits.argmax(1) == y).float().mean()),
            "loss": float(torch.nn.functional.cross_entropy(logits, y)),
        }

    row = {
        **{k: v for k, v in vars(args).items() if k != "data_root"},
        "seconds": round(seconds, 1),
        "train": measure(ds.train_images, ds.train_labels),
        "test": measure(ds.test_images, ds.test_labels),
    }
    print(json.dumps(row))
    with (HERE / "results" / "recipe_probe.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
