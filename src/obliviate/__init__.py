"""obliviate: machine unlearning — forget chosen training data and prove it against retraining.

The Python doors (imported on first use, so ``import obliviate`` stays light):

* :func:`obliviate.unlearn` — your model and a deletion request in, the unlearned model and its
  evidence out (:mod:`obliviate.deletion`);
* :func:`obliviate.audit` — measure a model on a forget set against held-out data;
* :func:`obliviate.run_study` — run a study spec and render its report (:mod:`obliviate.api`;
  ``executor=RayExecutor(...)`` runs its groups on Ray);
* :func:`obliviate.tune_method` — search a method's hyperparameters on a study's tuning split
  with Ray Tune (:mod:`obliviate.study.tune`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {"unlearn": "obliviate.deletion", "audit": "obliviate.deletion", "run_study": "obliviate.api",
         "tune_method": "obliviate.api"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'obliviate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", "audit", "run_study", "tune_method", "unlearn"]
