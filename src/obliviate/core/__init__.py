"""The task-free contract under every other package: typed configs, the method contract and
registry, split guards, and non-finite detection. Imports nothing from obliviate but the
registry; ``data``, ``models``, ``train``, ``methods``, ``llm`` and ``study`` build on it."""

from .faults import NonFiniteError, check_loss, check_model, check_tensor, finite_or_none
from .method import (
    KINDS,
    Choice,
    Range,
    METHODS,
    SPLITS,
    GuardedSplits,
    MethodContext,
    MethodConfig,
    MethodResult,
    RunStats,
    SplitAccessError,
    UnlearningMethod,
    build_method,
    describe_method,
    get_method,
    list_methods,
    param,
    register_method,
    run_method,
    search_space,
)
from .typed import ConfigError, check_fields, coerce, from_mapping

__all__ = [
    "NonFiniteError", "check_loss", "check_model", "check_tensor", "finite_or_none",
    "KINDS", "METHODS", "SPLITS", "GuardedSplits", "MethodContext", "MethodConfig", "MethodResult", "RunStats",
    "SplitAccessError", "UnlearningMethod", "build_method", "describe_method", "get_method",
    "list_methods", "param", "register_method", "run_method", "Range", "Choice", "search_space",
    "ConfigError", "check_fields", "coerce", "from_mapping",
]
