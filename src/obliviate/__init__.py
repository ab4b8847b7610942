"""obliviate: machine unlearning — forget chosen training data and prove it against retraining.

The Python doors (imported on first use, so ``import obliviate`` stays light):

* :func:`obliviate.unlearn` — your model and a deletion request in, the unlearned model and its
  evidence out (:mod:`obliviate.deletion`);
* :func:`obliviate.audit` — measure a model on a forget set against held-out data;
* :func:`obliviate.train` — train a zoo model (optionally without a forget request: the retrained
  reference) into a checkpoint that records its data's provenance;
* :func:`obliviate.evaluate` — accuracy, macro P/R/F1, per-class accuracy and confusion of a
  checkpoint on its own data's splits;
* :func:`obliviate.run_study` — run a study spec and render its report (:mod:`obliviate.api`;
  ``executor=RayExecutor(...)`` runs its groups on Ray);
* :func:`obliviate.tune_method` — search a method's hyperparameters on a study's tuning split
  with Ray Tune (:mod:`obliviate.study.tune`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "unlearn": "obliviate.deletion",
    "audit": "obliviate.deletion",
    "run_study": "obliviate.api",
    "tune_method": "obliviate.api",
    "train": "obliviate.api",
    "evaluate": "obliviate.api",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'obliviate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", "audit", "evaluate", "run_study", "train", "tune_method", "unlearn"]
