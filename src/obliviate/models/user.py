"""Architectures the zoo does not know: a user's own ``MODULE:FUNCTION`` factory, and plain
state-dict files (``.pt`` / ``.pth`` / ``.safetensors``) brought into obliviate's checkpoint format.

A factory checkpoint records ``{"name": "factory:MODULE:FUNCTION", "num_classes": K}`` as its
model spec. obliviate never imports code named inside a file: loading such a checkpoint needs the
caller to pass the same ``MODULE:FUNCTION`` (``--model-factory``), which is then imported the way
``python -m`` would (the working directory first on the path).
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

FACTORY_PREFIX = "factory:"
_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class FactoryError(ValueError):
    """A ``MODULE:FUNCTION`` model factory that cannot be imported or does not build a model."""


def is_factory_spec(spec: dict[str, Any]) -> bool:
    return str(spec.get("name", "")).startswith(FACTORY_PREFIX)


def resolve_factory(text: str) -> Callable[..., nn.Module]:
    """The function ``MODULE:FUNCTION`` names (imported from the working directory first)."""
    if not _SPEC.match(text or ""):
        raise FactoryError(
            f"--model-factory takes MODULE:FUNCTION (e.g. mymodels:make_cnn, a function that "
            f"returns your nn.Module), got {text!r}"
        )
    mod_name, fn_name = text.split(":")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise FactoryError(
            f"cannot import module {mod_name!r} for --model-factory {text} ({e}); run from the folder "
            "that holds it, or install it"
        ) from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise FactoryError(f"module {mod_name!r} has no function {fn_name!r} (--model-factory {text})")
    return fn


def build_from_factory(text: str, num_classes: int, seed: int | None = None) -> nn.Module:
    """Call the factory — with ``num_classes=`` when it takes that argument — seeded without
    touching the global RNG; the model records its spec for checkpoints."""
    fn = resolve_factory(text)
    takes = "num_classes" in inspect.signature(fn).parameters
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = fn(num_classes=num_classes) if takes else fn()
    if not isinstance(model, nn.Module):
        raise FactoryError(f"--model-factory {text} returned {type(model).__name__}, not a torch.nn.Module")
    model.obliviate_spec = {"name": FACTORY_PREFIX + text, "num_classes": num_classes}  # type: ignore[assignment]
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict from ``.safetensors`` or a ``torch.save`` file (loaded with
    ``weights_only=True``: nothing is unpickled but tensors); errors say what the file is."""
    p = Path(path)
    if not p.is_file():
        raise FactoryError(f"{p} does not exist or is not a regular file")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except Exception as e:
            raise FactoryError(f"{p} is not a readable safetensors file ({type(e).__name__}: {e})") from None
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise FactoryError(
            f"{p} is not a state dict torch.load can read with weights_only=True ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}); save it with torch.save(model.state_dict(), PATH)"
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # a training checkpoint {"state_dict": ..., "epoch": ...}
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FactoryError(
            f"{p} holds a {type(obj).__name__}, not a state dict of tensors; save it with "
            "torch.save(model.state_dict(), PATH)"
        )
    return obj


def untied(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` on the CPU, contiguous, with tensors that share memory (tied weights: GPT-2's
    embedding and head) copied apart, so that safetensors can write them; the values are unchanged."""
    seen: set[tuple[int, int | torch.SymInt]] = set()  # (storage pointer, offset)
    out = {}
    for k, v in state.items():
        t = v.detach().to("cpu").contiguous()
        key = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else (id(t), 0)
        if key in seen or any(t.untyped_storage().data_ptr() == s for s, _ in seen):
            t = t.clone()
        seen.add((t.untyped_storage().data_ptr(), t.storage_offset()))
        out[k] = t
    return out
