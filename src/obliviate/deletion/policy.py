"""``--method auto``: which method honours a request, and why (the evidence quotes the reason).

The policy follows what this project measured on CIFAR-10 (``bench/results/``), not what papers
promise:

* **exact demanded** (``exact=True``): ``retrain`` — provably no influence of the forget rows
  (``sisa`` when the model is a SISA ensemble: only the affected constituents are retrained).
* **whole classes** (the forget rows hold every training row of their classes): ``ssd`` with
  α = 8 and 640 + 640 importance samples — in the SSD sensitivity study it reached an Avg. gap of 0.23 ± 0.07 points to the
  retrained model at 75–84× less time on held-out seeds (α chosen on seeds 0–1), where α = 5
  broke a retained class. Measured on airplane only: other classes may need another α.
* **samples** (some rows of their classes): ``finetune``, 0.1 epoch on the retain set (the
  frontier's budget, ≈ 1/40 of retraining) — no approximate
  method reached the sample-level target in the frontier benchmark (best: within 2.8 points of
  retraining; doing nothing: 2.9), so the cheap, never-harmful baseline is chosen and the
  evidence's membership audit is the check. When the audit says *distinguishable*, honour the
  request again with ``--exact``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Choice:
    method: str
    config: dict[str, Any]
    reason: str


def choose(*, whole_classes: bool, exact: bool, sisa_model: bool = False) -> Choice:
    """The method for a request (see the module docstring for the evidence behind each rule)."""
    if exact or sisa_model:
        if sisa_model:
            return Choice("sisa", {}, "the model is a SISA ensemble: retraining only the constituents whose "
                                      "shards hold forgotten rows is exact")
        return Choice("retrain", {}, "an exact result was demanded: retraining from scratch on the retain set "
                                     "provably holds no influence of the forgotten rows")
    if whole_classes:
        return Choice("ssd", {"alpha": 8.0, "forget_samples": 640, "retain_samples": 640},
                      "whole classes are forgotten: SSD with α = 8 reached an Avg. gap of 0.23 ± 0.07 points to a "
                      "retrained model at 75–84× less time on held-out seeds of the CIFAR-10 sensitivity study "
                      "(bench/results/frontier_ssd)")
    return Choice("finetune", {"epochs": 0.1},
                  "some rows of their classes are forgotten: no approximate method reached the sample-level target "
                  "in the frontier benchmark, so the cheap baseline runs (0.1 epoch of fine-tuning on the retain set, "
                  "the frontier's budget) and the membership audit below is the check; if it says distinguishable, "
                  "rerun with --exact")
