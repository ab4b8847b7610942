"""Metrics: registered, each reading model outputs the runner computed once per model and split.

Every module in this package is imported so that its ``@register_metric`` runs.
"""

import importlib
import pkgutil

from .base import (
    DIRECTIONS,
    EVAL_SPLITS,
    METRICS,
    ROLES,
    EvalInputs,
    Metric,
    MissingInputError,
    Outputs,
    compute_metrics,
    describe_metric,
    list_metrics,
    register_metric,
)

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _mod.startswith("_") and _mod != "base":
        importlib.import_module(f"{__name__}.{_mod}")

__all__ = [
    "DIRECTIONS",
    "EVAL_SPLITS",
    "METRICS",
    "ROLES",
    "EvalInputs",
    "Metric",
    "MissingInputError",
    "Outputs",
    "compute_metrics",
    "describe_metric",
    "list_metrics",
    "register_metric",
]
