"""Apply the learning-rate rule of ``tune.yaml`` to its results and print every run of the grid.

Rule (fixed before the grid ran): per method, the rate with the highest forget quality among those
keeping model utility at least 95 % of the full model's; on a tie, the lower rate; when no rate
keeps utility, the lowest rate. Writes ``results/tune_seed1.md``.

    obliviate run bench/llm_fictitious/tune.yaml --out bench/work/llm_fictitious_tune
    python bench/llm_fictitious/select_rates.py bench/work/llm_fictitious_tune
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ("forget_quality", "model_utility", "forget_prob", "verbatim", "mia_loss_auc", "retain_prob", "seconds")
UTILITY_KEPT = 0.95


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", type=Path, help="the tune study's output folder")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "tune_seed1.md")
    args = ap.parse_args()
    vals: dict[str, dict[str, float]] = defaultdict(dict)
    with open(args.study / "results.csv") as f:
        for row in csv.DictReader(f):
            vals[row["method"]][row["metric"]] = float(row["value"])
    full = vals["original"]["model_utility"]
    by_method: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for label in vals:
        if "-lr" in label:  # NAME-lrRATE, or NAME-lrRATE-eEPOCHS for a variant with more epochs
            name, rest = label.split("-lr", 1)
            by_method[name].append((float(rest.split("-e")[0]), label))
    chosen = {}
    for name, runs in by_method.items():
        runs.sort()
        kept = [(lr, lab) for lr, lab in runs if vals[lab]["model_utility"] >= UTILITY_KEPT * full]
        # highest forget quality; on a tie the lower rate (max keeps the first maximum)
        chosen[name] = max(kept, key=lambda r: vals[r[1]]["forget_quality"])[1] if kept else runs[0][1]
    lines = [
        "| run | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for label in ["original", "retrained", *sorted(lab for runs in by_method.values() for _, lab in runs)]:
        cells = [f"{vals[label].get(c, float('nan')):.3f}" for c in COLUMNS]
        name = f"**{label}**" if label in chosen.values() else label
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = (
        f"Tuning seed 1, request forget10. Chosen (bold): per method the highest forget quality with model "
        f"utility ≥ {UTILITY_KEPT:.0%} of the full model's ({full:.3f}).\n\n" + "\n".join(lines) + "\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    for name, lab in sorted(chosen.items()):
        print(f"{name}: {lab}")


if __name__ == "__main__":
    main()
