"""Checkpoints (safetensors weights + JSON metadata) and a content-addressed model cache.

A checkpoint ``NAME`` is two files: ``NAME.safetensors`` and ``NAME.json``. The JSON is written
last and holds the SHA-256 of the weights, so a run killed mid-write never leaves a checkpoint
that loads: either the JSON is missing or the hash does not match. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..utils import atomic_path, environment_info, stable_hash, write_json_atomic
from .registry import create_model

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, corrupt, or does not match what was asked for."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    base = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights and ``meta`` atomically; returns the JSON path.

    ``model.obliviate_spec`` (set by :func:`create_model`) records the architecture.
    """
    spec = getattr(model, "obliviate_spec", None)
    if spec is None:
        raise CheckpointError("model has no obliviate_spec: build it with obliviate.models.create_model")
    weights, meta_path = _paths(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp))
    record = {
        "format": FORMAT_VERSION,
        "model": spec,
        "weights": weights.name,
        "sha256": _sha256(weights),
        "versions": environment_info(),
        **(meta or {}),
    }
    write_json_atomic(meta_path, record)
    return meta_path


def read_meta(path: str | Path) -> dict[str, Any]:
    weights, meta_path = _paths(path)
    if not meta_path.is_file():
        raise CheckpointError(f"no checkpoint metadata at {meta_path} (incomplete or never written)")
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    return meta


def load_checkpoint(
    path: str | Path,
    *,
    expect_model: str | None = None,
    expect_num_classes: int | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model recorded in the checkpoint and load its weights (hash-checked).

    ``expect_model`` / ``expect_num_classes`` guard against loading the wrong checkpoint.
    """
    weights, meta_path = _paths(path)
    meta = read_meta(path)
    spec = dict(meta["model"])
    if expect_model is not None and spec["name"] != expect_model:
        raise CheckpointError(f"{meta_path} holds a {spec['name']!r} model, expected {expect_model!r}")
    if expect_num_classes is not None and spec["num_classes"] != expect_num_classes:
        raise CheckpointError(
            f"{meta_path} was trained for {spec['num_classes']} classes, expected {expect_num_classes}"
        )
    if not weights.is_file():
        raise CheckpointError(f"checkpoint weights {weights} are missing")
    digest = _sha256(weights)
    if digest != meta.get("sha256"):
        raise CheckpointError(f"{weights} does not match the hash in {meta_path.name}: corrupt or partial write")
    name, num_classes, in_chans = spec.pop("name"), spec.pop("num_classes"), spec.pop("in_chans", 3)
    model = create_model(name, num_classes=num_classes, in_chans=in_chans, **spec)
    load_weights(model, weights, map_location=map_location)
    return model, meta


def load_weights(model: nn.Module, path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load safetensors weights into an existing model; a shape or key mismatch is explained."""
    weights, _ = _paths(path)
    state = load_file(str(weights), device=str(map_location))
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        detail = []
        if shapes:
            k = shapes[0]
            detail.append(f"{len(shapes)} shape mismatch(es), e.g. {k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}")
        if missing:
            detail.append(f"missing keys, e.g. {missing[:3]}")
        if unexpected:
            detail.append(f"unexpected keys, e.g. {unexpected[:3]}")
        raise CheckpointError(
            f"checkpoint {weights.name} does not fit this architecture/class count: " + "; ".join(detail)
        )
    model.load_state_dict(state, strict=True)
    return model


class ModelCache:
    """Content-addressed store of trained models: ``key = hash(spec)`` -> checkpoint.

    The spec is everything that determines the weights (model, dataset, request, seed, training
    config), so the same original or retrained model is trained once and reused by every study.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def key(self, spec: dict[str, Any]) -> str:
        return stable_hash(spec, length=20)

    def path(self, spec: dict[str, Any]) -> Path:
        return self.root / self.key(spec)

    def load(self, spec: dict[str, Any], map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]] | None:
        """The cached model for ``spec``, or ``None`` when absent or incomplete."""
        p = self.path(spec)
        try:
            model, meta = load_checkpoint(p, map_location=map_location)
        except CheckpointError:
            return None
        if meta.get("cache_spec_key") != self.key(spec):
            return None
        return model, meta

    def store(self, spec: dict[str, Any], model: nn.Module, meta: dict[str, Any] | None = None) -> Path:
        return save_checkpoint(
            self.path(spec), model, {**(meta or {}), "cache_spec": spec, "cache_spec_key": self.key(spec)}
        )
