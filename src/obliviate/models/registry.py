"""One door to every model: ``create_model(name, num_classes=...)`` and ``list_models(pattern)``.

Each architecture registers a factory with :func:`register_model`. Factories take
``num_classes``, ``in_chans`` and optional keyword arguments (``width`` for the CIFAR nets).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    factory: Callable[..., nn.Module]
    summary: str
    family: str  # "cifar", "timm", "small", "llm"
    input_size: tuple[int, int] | None = (32, 32)  # (H, W) it is built for; None: its constituents'


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(
    name: str, summary: str, family: str = "cifar", input_size: tuple[int, int] | None = (32, 32)
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.register(name)(ModelEntry(fn, summary, family, input_size))
        return fn

    return deco


def create_model(name: str, num_classes: int, in_chans: int = 3, seed: int | None = None, **kwargs: Any) -> nn.Module:
    """Build model ``name`` with ``num_classes`` outputs.

    ``seed`` (if given) makes the initialisation reproducible without touching the global RNG.
    The model records how it was built in ``model.obliviate_spec`` (used by checkpoints).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    entry = MODELS.get(name)
    kwargs = check_model_kwargs(name, kwargs)
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = entry.factory(num_classes=num_classes, in_chans=in_chans, **kwargs)
    else:
        model = entry.factory(num_classes=num_classes, in_chans=in_chans, **kwargs)
    model.obliviate_spec = {"name": name, "num_classes": num_classes, "in_chans": in_chans, **kwargs}  # type: ignore[assignment]
    return model


def model_arguments(name: str) -> dict[str, tuple[Any, Any]]:
    """The keyword arguments model ``name`` declares besides ``num_classes`` / ``in_chans``:
    ``{arg: (annotation, default)}``."""
    fn = MODELS.get(name).factory
    hints = typing.get_type_hints(fn)
    out = {}
    for p in inspect.signature(fn).parameters.values():
        if p.name in ("num_classes", "in_chans") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        out[p.name] = (hints.get(p.name, Any), p.default)
    return out


def check_model_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` checked against model ``name``'s declared arguments and their types (before any
    training, and before a checkpoint's metadata reaches a constructor); raises ``ValueError``
    naming the argument and what is allowed."""
    from ..core.typed import _Mismatch, _type_name, coerce

    declared = model_arguments(name)
    unknown = sorted(set(kwargs) - set(declared))
    if unknown:
        raise ValueError(
            f"model {name!r} takes no argument(s) {unknown}; it declares "
            f"{sorted(declared) or 'none besides num_classes and in_chans'}"
        )
    out = {}
    for k, v in kwargs.items():
        tp = declared[k][0]
        try:
            out[k] = coerce(v, tp)
        except _Mismatch:
            raise ValueError(f"model {name!r} argument {k} must be {_type_name(tp)}, got {v!r}") from None
    return out


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a wildcard, e.g. ``list_models("resnet*")``."""
    return MODELS.names(pattern)


def model_summary(name: str) -> str:
    return MODELS.get(name).summary


def describe_model(name: str, num_classes: int = 10, **kwargs: Any) -> dict[str, Any]:
    """What model ``name`` is: its summary, declared arguments (annotation, default), input size,
    and — built with ``num_classes`` and ``kwargs`` — its parameter count and output shape on one
    zero input."""
    entry = MODELS.get(name)
    args = {
        k: (getattr(tp, "__name__", str(tp).replace("typing.", "")), default)
        for k, (tp, default) in model_arguments(name).items()
    }
    in_chans = inspect.signature(entry.factory).parameters["in_chans"].default
    out: dict[str, Any] = {
        "name": name,
        "summary": entry.summary,
        "family": entry.family,
        "arguments": args,
        "in_chans": in_chans,
        "input_size": entry.input_size,
        "num_classes": num_classes,
        "kwargs": kwargs,
    }
    model = create_model(name, num_classes=num_classes, in_chans=in_chans, seed=0, **kwargs)
    out["num_parameters"] = num_parameters(model)
    if entry.input_size is not None:
        model.eval()
        with torch.no_grad():
            y = model(torch.zeros(1, in_chans, *entry.input_size))
        out["output_shape"] = tuple(y.shape)
    return out


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
