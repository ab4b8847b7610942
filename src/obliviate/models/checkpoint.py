"""Checkpoints (safetensors weights + JSON metadata) and a content-addressed model cache.

A checkpoint ``NAME`` is two files: ``NAME.safetensors`` and ``NAME.json``. The JSON is written
last and holds the SHA-256 of the weights, so a run killed mid-write never leaves a checkpoint
that loads: either the JSON is missing or the hash does not match. Nothing is ever unpickled.

The JSON also holds ``spec_sha256``, a hash over what decides how the weights are loaded (the
format, the model spec, the weights' SHA-256): an edited architecture or class count is refused.
The weights are always ``NAME.safetensors`` beside the JSON — the JSON cannot point the loader at
another file — and the model spec reaches :func:`create_model`, which accepts only the arguments
each architecture declares.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..core import check_model
from ..utils import atomic_path, environment_info, file_sha256, stable_hash, write_json_atomic
from .registry import create_model
from .user import FactoryError, build_from_factory, is_factory_spec, untied

FORMAT_VERSION = 2


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, corrupt, or does not match what was asked for."""


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    base = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")


PROTECTED = ("format", "model", "weights", "sha256", "spec_sha256")


def save_state(
    path: str | Path, state: dict[str, torch.Tensor], meta: dict[str, Any] | None = None, spec: Any = None
) -> Path:
    """The one checkpoint format: ``NAME.safetensors`` (written first, atomically) then
    ``NAME.json`` with the weights' SHA-256 and ``spec_sha256`` over (format, ``spec``, SHA-256).
    ``spec`` is what decides how the weights are loaded (a model spec, an adapter's settings).
    ``meta`` may not set the protected fields. Returns the JSON path."""
    clash = sorted(set(PROTECTED) & set(meta or {}))
    if clash:
        raise CheckpointError(f"checkpoint metadata may not set {clash}: those fields are written by save_checkpoint")
    weights, meta_path = _paths(path)
    clean = untied(state)
    with atomic_path(weights) as tmp:
        save_file(clean, str(tmp))
    digest = file_sha256(weights)
    record = {
        **(meta or {}),
        "versions": environment_info(),
        "format": FORMAT_VERSION,
        "model": spec,
        "weights": weights.name,
        "sha256": digest,
        "spec_sha256": _spec_hash(FORMAT_VERSION, spec, digest),
    }
    write_json_atomic(meta_path, record)
    return meta_path


def load_state(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights and metadata of a checkpoint written by :func:`save_state`, hash-checked;
    raises :class:`CheckpointError` naming the file."""
    weights, meta_path = _paths(path)
    meta = _read_meta(meta_path)
    if not weights.is_file():
        raise CheckpointError(f"checkpoint weights {weights} are missing")
    if file_sha256(weights) != meta.get("sha256"):
        raise CheckpointError(f"{weights} does not match the hash in {meta_path.name}: corrupt or partial write")
    try:
        state = load_file(str(weights), device=str(map_location))
    except Exception as e:  # safetensors raises its own error type for a file that is not safetensors
        raise CheckpointError(f"{weights} is not a readable safetensors file ({type(e).__name__}: {e})") from None
    return state, meta


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights and ``meta`` atomically; returns the JSON path.

    ``model.obliviate_spec`` (set by :func:`create_model`) records the architecture.
    """
    spec = getattr(model, "obliviate_spec", None)
    if spec is None:
        raise CheckpointError("model has no obliviate_spec: build it with obliviate.models.create_model")
    return save_state(path, model.state_dict(), meta, spec=spec)


def _spec_hash(fmt: Any, spec: Any, digest: Any) -> str:
    return stable_hash({"format": fmt, "model": spec, "sha256": digest}, length=64)


def _read_meta(meta_path: Path) -> dict[str, Any]:
    if meta_path.is_dir():
        raise CheckpointError(f"{meta_path} is a directory, not checkpoint metadata")
    base = meta_path.with_name(meta_path.name.removesuffix(".json"))
    plain = [p for p in (base, base.with_name(base.name + ".safetensors")) if p.is_file()]
    if not meta_path.is_file() and plain:
        f = plain[0]
        raise CheckpointError(
            f"{f} is a plain weights file, not an obliviate checkpoint (no {meta_path.name} records "
            "its architecture and training data): import it first — obliviate import "
            f"{f} --model-factory MODULE:FUNCTION --dataset NAME [--root DIR] --out CKPT — "
            "then pass CKPT (and the same --model-factory)"
        )
    if not meta_path.is_file():
        raise CheckpointError(f"no checkpoint metadata at {meta_path} (incomplete or never written)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint metadata {meta_path} is damaged (not JSON: {e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint metadata {meta_path} is damaged: not a JSON object")
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path} has checkpoint format {meta.get('format')!r}; this obliviate reads "
            f"format {FORMAT_VERSION}, whose hash also covers the model spec: retrain the model with this version"
        )
    if meta.get("spec_sha256") != _spec_hash(meta.get("format"), meta.get("model"), meta.get("sha256")):
        raise CheckpointError(
            f"{meta_path}: its model spec or weights hash was edited after saving "
            "(spec_sha256 does not match); refusing to load it"
        )
    return dict(meta)


def read_meta(path: str | Path) -> dict[str, Any]:
    """A model checkpoint's metadata, checked (format, spec hash, a model spec present)."""
    _, meta_path = _paths(path)
    meta = _read_meta(meta_path)
    if not isinstance(meta.get("model"), dict):
        raise CheckpointError(f"checkpoint metadata {meta_path} is damaged: no model spec")
    return meta


def load_checkpoint(
    path: str | Path,
    *,
    expect_model: str | None = None,
    expect_num_classes: int | None = None,
    map_location: str | torch.device = "cpu",
    model_factory: str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model recorded in the checkpoint and load its weights (hash-checked).

    ``expect_model`` / ``expect_num_classes`` guard against loading the wrong checkpoint. A
    checkpoint of a user's own architecture (:mod:`obliviate.models.user`) needs its
    ``model_factory`` (``MODULE:FUNCTION``) passed again: code named in a file is never imported.
    """
    weights, meta_path = _paths(path)
    meta = read_meta(path)
    spec = dict(meta["model"])
    if not isinstance(spec.get("name"), str) or not isinstance(spec.get("num_classes"), int):
        raise CheckpointError(f"{meta_path}: the model spec needs a name and an integer num_classes, got {spec!r}")
    if expect_model is not None and spec["name"] != expect_model:
        raise CheckpointError(f"{meta_path} holds a {spec['name']!r} model, expected {expect_model!r}")
    if expect_num_classes is not None and spec["num_classes"] != expect_num_classes:
        raise CheckpointError(
            f"{meta_path} was trained for {spec['num_classes']} classes, expected {expect_num_classes}"
        )
    state, _ = load_state(path, map_location=map_location)  # hash-checked
    if is_factory_spec(spec):
        made_by = spec["name"].split(":", 1)[1]
        if model_factory is None:
            raise CheckpointError(
                f"{meta_path} holds a model built by your factory {made_by}: pass --model-factory "
                f"{made_by} (model_factory=) — obliviate never imports code named inside a file"
            )
        if model_factory != made_by:
            raise CheckpointError(f"{meta_path} holds a model built by {made_by}, not by {model_factory}")
        try:
            model = build_from_factory(model_factory, spec["num_classes"])
        except FactoryError as e:
            raise CheckpointError(str(e)) from None
        _fit_state(model, state, weights.name)
        return model, meta
    name, num_classes, in_chans = spec.pop("name"), spec.pop("num_classes"), spec.pop("in_chans", 3)
    try:
        model = create_model(name, num_classes=num_classes, in_chans=in_chans, **spec)
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{meta_path}: cannot build its model: {e}") from None
    _fit_state(model, state, weights.name)
    return model, meta


def load_weights(model: nn.Module, path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load safetensors weights into an existing model; a shape or key mismatch is explained."""
    weights, _ = _paths(path)
    try:
        state = load_file(str(weights), device=str(map_location))
    except Exception as e:  # safetensors raises its own error type for a file that is not safetensors
        raise CheckpointError(f"{weights} is not a readable safetensors file ({type(e).__name__}: {e})") from None
    return _fit_state(model, state, weights.name)


def _fit_state(model: nn.Module, state: dict[str, torch.Tensor], name: str) -> nn.Module:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        detail = []
        if shapes:
            k = shapes[0]
            detail.append(
                f"{len(shapes)} shape mismatch(es), e.g. {k}: checkpoint {tuple(state[k].shape)} "
                f"vs model {tuple(own[k].shape)}"
            )
        if missing:
            detail.append(f"missing keys, e.g. {missing[:3]}")
        if unexpected:
            detail.append(f"unexpected keys, e.g. {unexpected[:3]}")
        raise CheckpointError(f"checkpoint {name} does not fit this architecture/class count: " + "; ".join(detail))
    model.load_state_dict(state, strict=True)
    return model


class ModelCache:
    """Content-addressed store of trained models: ``key = hash(spec)`` -> checkpoint.

    The spec is everything that determines the weights (model, dataset content, request and its
    forget ids, seed, training config, and the salt of the code that trains), so the same original
    or retrained model is trained once and reused by every study. :meth:`entry` locks one key
    so that two processes never train the same model at once; a damaged entry (truncated JSON,
    weights that fail their hash, an edited spec) is moved to ``damaged/`` and retrained.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def key(self, spec: dict[str, Any]) -> str:
        return stable_hash(spec, length=20)

    def path(self, spec: dict[str, Any]) -> Path:
        return self.root / self.key(spec)

    def load(
        self, spec: dict[str, Any], map_location: str | torch.device = "cpu"
    ) -> tuple[nn.Module, dict[str, Any]] | None:
        """The cached model for ``spec``, or ``None`` when absent; a damaged entry is moved aside."""
        p = self.path(spec)
        _weights, meta_path = _paths(p)
        if not meta_path.exists():
            return None
        try:
            model, meta = load_checkpoint(p, map_location=map_location)
        except CheckpointError as e:
            self._move_aside(p, str(e))
            return None
        if meta.get("cache_spec_key") != self.key(spec):
            self._move_aside(p, "its cache key does not match its name")
            return None
        return model, meta

    def _move_aside(self, p: Path, why: str) -> None:
        import logging
        import time

        dest = self.root / "damaged" / time.strftime("%Y%m%d-%H%M%S")
        dest.mkdir(parents=True, exist_ok=True)
        for f in _paths(p):
            if f.exists():
                os.replace(f, dest / f.name)
        logging.getLogger(__name__).warning(
            "damaged cache entry %s (%s): moved to %s; it will be retrained", p, why, dest
        )

    def store(self, spec: dict[str, Any], model: nn.Module, meta: dict[str, Any] | None = None) -> Path:
        check_model(model, "weights before caching")
        return save_checkpoint(
            self.path(spec), model, {**(meta or {}), "cache_spec": spec, "cache_spec_key": self.key(spec)}
        )

    @contextlib.contextmanager
    def entry(self, spec: dict[str, Any], on_wait: Any = None) -> Iterator[_Entry]:
        """Hold the lock of ``spec``'s entry: load it, or train and store it, without a second
        process doing the same at the same time (it waits, and then finds the model cached)."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        lock = self.root / f"{self.key(spec)}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait(f"waiting for another process that is training cache entry {self.key(spec)}")
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield _Entry(self, spec)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class _Entry:
    def __init__(self, cache: ModelCache, spec: dict[str, Any]) -> None:
        self.cache, self.spec, self.key = cache, spec, cache.key(spec)

    def load(self, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]] | None:
        return self.cache.load(self.spec, map_location=map_location)

    def store(self, model: nn.Module, meta: dict[str, Any] | None = None) -> Path:
        return self.cache.store(self.spec, model, meta)
