"""Named training recipes: a model and the :class:`~obliviate.training.TrainConfig` that trains it well.

Every study can ask for the same recipe by name (``get_recipe("airbench")``) instead of copying
hyperparameters. A recipe's model is built with ``create_model(recipe.model, num_classes=...,
**recipe.model_kwargs)`` and trained with :func:`obliviate.training.fit`; nothing here is a second
training loop.

Recipes:

* ``airbench`` — airbench94 (Jordan 2024, arXiv:2404.00498) shortened to 4 epochs for a CPU:
  batch 1024, Nesterov SGD in airbench's decoupled form (lr 11.5 per 1024 examples, momentum
  0.85, wd 0.0153, BN-shift lr ×64 at the same per-step decay), label smoothing 0.2, the
  triangular schedule (0.2 -> 1 at 23 % -> 0.07), flips and translate-2 crops, flip TTA, bf16
  autocast with channels_last.
* ``airbench_quick`` — the same recipe on a narrower net (``width=0.5``) for 3 epochs, for
  quick studies.

Accuracy and wall time are measured by ``bench/airbench/bench_airbench.py``. The bf16 speed needs a CPU with
AVX512-BF16 (or AMX); elsewhere pass ``bf16=False`` to :func:`get_recipe`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._registry import Registry
from .training import TrainConfig


@dataclass(frozen=True)
class Recipe:
    """A training recipe: the model to build, how to train it, and a one-line summary."""

    name: str
    model: str
    config: TrainConfig
    summary: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)


RECIPES: Registry[Callable[[], Recipe]] = Registry("recipe")


def register_recipe(name: str) -> Callable[[Callable[[], Recipe]], Callable[[], Recipe]]:
    """Decorator registering a zero-argument factory that returns a :class:`Recipe`."""
    return RECIPES.register(name)


def decoupled_sgd(
    batch_size: int = 1024,
    lr: float = 11.5,
    momentum: float = 0.85,
    weight_decay: float = 0.0153,
    bias_scaler: float = 64.0,
) -> dict[str, Any]:
    """TrainConfig fields for airbench's decoupled SGD hyperparameters (batch-mean loss).

    airbench sums the loss over the batch, states ``lr`` per 1024 examples and divides it by
    g = 1 + 1/(1 − μ) (μ = ``momentum``), the long-run gain of Nesterov momentum on a constant
    gradient, so that the mean step does not move with μ; its decay per step is
    ``weight_decay``·B/(1024·g), independent of the lr. With the batch-*mean* loss of
    :func:`~obliviate.training.fit` the same steps are PyTorch ``lr = lr·B/(1024·g)`` and PyTorch
    ``weight_decay = weight_decay/lr`` (so lr_torch·wd_torch is the decay per step). 1-D
    parameters (BN shifts) get ``bias_scaler``× the rate and 1/``bias_scaler``× the decay
    coefficient, so their per-step decay matches the rest.
    """
    for name, value in (("lr", lr), ("weight_decay", weight_decay), ("bias_scaler", bias_scaler)):
        if not value > 0:
            raise ValueError(f"decoupled_sgd {name} must be > 0, got {value!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"decoupled_sgd momentum must be in [0, 1), got {momentum!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"decoupled_sgd batch_size must be a positive integer, got {batch_size!r}")
    gain = 1.0 + 1.0 / (1.0 - momentum)
    return {
        "batch_size": batch_size,
        "optimizer": "sgd",
        "lr": lr * batch_size / (1024 * gain),
        "momentum": momentum,
        "nesterov": True,
        "weight_decay": weight_decay / lr,
        "bias_lr_scale": bias_scaler,
        "bias_wd_scale": 1.0 / bias_scaler,
    }


_AIRBENCH_COMMON: dict[str, Any] = {
    **decoupled_sgd(batch_size=1024),
    "label_smoothing": 0.2,
    "schedule": "triangle",
    "start_factor": 0.2,  # lr at step 0, relative to the peak
    "warmup_frac": 0.23,  # where the peak is, as a fraction of all steps
    "end_factor": 0.07,  # lr at the last step
    "augment": True,
    "crop_pad": 2,  # translate by up to 2 pixels (reflect padding)
    "flip": True,
    "tta": "flip",
    "bf16": True,
    "channels_last": True,
}


@register_recipe("airbench")
def _airbench() -> Recipe:
    return Recipe(
        name="airbench",
        model="airbench",
        model_kwargs={"width": 1.0},
        config=TrainConfig(**_AIRBENCH_COMMON, epochs=4.0),
        summary="airbench94 net, 4 epochs, bf16: ~91 % CIFAR-10 test accuracy (flip TTA) in ~7 min on 2 idle CPU cores",
    )


@register_recipe("airbench_quick")
def _airbench_quick() -> Recipe:
    return Recipe(
        name="airbench_quick",
        model="airbench",
        model_kwargs={"width": 0.5},
        config=TrainConfig(**_AIRBENCH_COMMON, epochs=3.0),
        summary="airbench at width 0.5, 3 epochs, for quick studies: ~86 % (flip TTA) in ~2 min on 2 idle CPU cores",
    )


def recipe(name: str) -> Recipe:
    """The full recipe ``name`` (model, model kwargs, training config)."""
    return RECIPES.get(name)()


def get_recipe(name: str, **changes: Any) -> TrainConfig:
    """The training config of recipe ``name``, with optional field ``changes`` (validated)."""
    cfg = recipe(name).config
    if changes:
        unknown = set(changes) - set(TrainConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown training field(s) {sorted(unknown)} for recipe {name!r}")
        cfg = cfg.with_(**changes)
    return cfg


def list_recipes(pattern: str = "*") -> list[str]:
    """Registered recipe names matching a wildcard."""
    return RECIPES.names(pattern)
