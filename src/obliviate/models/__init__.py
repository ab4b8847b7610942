"""Model zoo (one registry, one factory) and checkpoints."""

from . import airbench, cifar, sisa_ensemble, timm_models  # noqa: F401  (registers the architectures)
from .checkpoint import CheckpointError, ModelCache, load_checkpoint, load_weights, read_meta, save_checkpoint
from .registry import (
    MODELS,
    check_model_kwargs,
    create_model,
    describe_model,
    list_models,
    model_arguments,
    model_summary,
    num_parameters,
    register_model,
)

__all__ = [
    "MODELS",
    "CheckpointError",
    "ModelCache",
    "check_model_kwargs",
    "create_model",
    "describe_model",
    "list_models",
    "load_checkpoint",
    "load_weights",
    "model_arguments",
    "model_summary",
    "num_parameters",
    "read_meta",
    "register_model",
    "save_checkpoint",
]
