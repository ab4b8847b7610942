"""Unlearning methods: one file each, registered by name.

Every module in this package is imported here so that its ``@register_method`` runs; adding a
method means adding a file (see docs/architecture.md, "Adding a method").
"""

import importlib
import pkgutil

from .base import (
    METHODS,
    SPLITS,
    GuardedSplits,
    MethodConfig,
    MethodResult,
    RunStats,
    SplitAccessError,
    SplitView,
    UnlearnContext,
    UnlearnData,
    UnlearningMethod,
    build_method,
    describe_method,
    get_method,
    list_methods,
    param,
    register_method,
    run_method,
)

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _mod.startswith("_") and _mod != "base":
        importlib.import_module(f"{__name__}.{_mod}")

__all__ = [
    "METHODS",
    "SPLITS",
    "GuardedSplits",
    "MethodConfig",
    "MethodResult",
    "RunStats",
    "SplitAccessError",
    "SplitView",
    "UnlearnContext",
    "UnlearnData",
    "UnlearningMethod",
    "build_method",
    "describe_method",
    "get_method",
    "list_methods",
    "param",
    "register_method",
    "run_method",
]
