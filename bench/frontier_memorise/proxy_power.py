"""How well does a memorisation proxy foretell where a model that never saw a row puts it?

RUM (``methods/rum.py``) splits a forget set by the learning-speed proxy that ``fit`` records (the
original's mean label probability while it trained), and ``loss_match`` ranks forget rows by the
original's loss now. Both bet that the proxy orders the rows as a model retrained without them
does. This script reads a study's group records — per forget row, the proxy, the original's φ
(logit of its label probability) and the φ of every model trained without the request (the
retrained model and the audit's K references) — and prints, per group:

* Spearman's ρ between each proxy and the never-saw-it φ (the mean over those models);
* the AUC with which each proxy picks out the rows those models get below even odds (φ < 0),
  ranking lowest proxy first.

Run: ``python bench/frontier_memorise/proxy_power.py --study bench/frontier_memorise/results/study``
(writes ``results/proxy_power.json`` beside the study folder unless ``--out`` says otherwise).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from obliviate.attacks.roc import auc


def group_power(group: dict[str, Any]) -> dict[str, Any] | None:
    """The proxies' power in one group record (None: the record has no training proxy, or its
    request is a whole class — every model that never saw the class puts each of its rows near
    zero, and the proxies rank rows within a sample-level request)."""
    audit = group.get("audit", {})
    proxy = audit.get("original_training_confidence_forget")
    if proxy is None or str(group.get("request", "")).startswith("class:"):
        return None
    unseen = np.vstack([audit["retrained_phi_forget"], *audit.get("reference_phi_forget", [])]).mean(axis=0)
    proxies = {"learning_speed": np.asarray(proxy), "final_phi": np.asarray(audit["original_phi_forget"])}
    hard = unseen < 0
    out: dict[str, Any] = {
        "request": group["request"],
        "seed": group["seed"],
        "forget_rows": len(unseen),
        "unseen_models": 1 + len(audit.get("reference_phi_forget", [])),
        "rows_below_even_odds": int(hard.sum()),
    }
    for name, p in proxies.items():
        rho = spearmanr(p, unseen).statistic
        out[f"{name}_spearman"] = round(float(rho), 3)
        # lowest proxy first: a hard row should score low
        out[f"{name}_auc_hard"] = round(float(auc(-p[hard], -p[~hard])), 3) if 0 < hard.sum() < len(hard) else None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", type=Path, required=True, help="a study folder (its groups/ records)")
    ap.add_argument("--out", type=Path, help="where to write the JSON (default: beside the study folder)")
    args = ap.parse_args(argv)
    groups = sorted((args.study / "groups").glob("*.json"))
    if not groups:
        ap.error(f"no group records under {args.study / 'groups'}")
    rows = [r for f in groups if (r := group_power(json.loads(f.read_text()))) is not None]
    if not rows:
        ap.error("no group record keeps the training proxy: run the study with code that records it")
    rows.sort(key=lambda r: (r["request"], r["seed"]))
    head = ("request", "seed", "forget_rows", "rows_below_even_odds", "learning_speed_spearman",
            "final_phi_spearman", "learning_speed_auc_hard", "final_phi_auc_hard")  # fmt: skip
    print(" | ".join(head))
    for r in rows:
        print(" | ".join(str(r[h]) for h in head))
    out = args.out or args.study.parent / "proxy_power.json"
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
