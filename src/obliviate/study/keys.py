"""Content-addressed keys: what determines a result names it.

A run key is the hash of everything that decides a run's numbers — the dataset's content, the
model spec, the training recipe, the request with the content hash of its forget ids, the seed,
the method's name and full config, the evaluation and metric settings, the record format, and a
*code salt*: the hash of the source files that produce the models and the values (for a method:
its own file and the helper modules of ``methods/`` it uses). Change any of
them and the key changes, so the run is recomputed; nothing else (a label, a file's path, the
output folder) can make a stale record look current. The model cache uses the same scheme.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..utils import stable_hash

RECORD_FORMAT = 2
_PKG = Path(__file__).resolve().parents[1]

# The sources that decide a trained model's weights, per task (relative to the package).
# the causal-LM code every LLM task's models depend on
_LM_CODE = (
    "core",
    "data/prompts.py",
    "models/causal_lm.py",
    "models/tokenizer.py",
    "models/sources.py",
    "models/checkpoint.py",
    "lm_training.py",
    "lm_losses.py",
    "methods/lm_base.py",
    "utils.py",
    "study/tasks/lm_models.py",
)
MODEL_CODE = {
    "vision": (
        "core",
        "data",
        "models",
        "training.py",
        "recipes.py",
        "utils.py",
        "methods/retrain.py",
        "methods/base.py",
        "study/tasks/vision.py",
    ),
    "llm": (*_LM_CODE, "data/text.py", "data/text_requests.py", "metrics/lm_scoring.py", "study/tasks/llm.py"),
    "llm_qa": (*_LM_CODE, "data/fictitious.py", "study/tasks/llm_qa.py"),
}
# ... and those that decide a run's values besides its method's own file.
EVAL_CODE = {
    "vision": ("metrics", "attacks"),
    "llm": ("metrics/llm.py", "metrics/base.py"),
    "llm_qa": ("metrics/lm_rows.py", "metrics/tofu.py", "metrics/lm_scoring.py", "attacks/roc.py"),
}


@functools.cache
def code_salt(*parts: str) -> str:
    """Hash of the Python sources under ``parts`` (files or folders of the package) and of the
    torch version: a fix to ``fit`` or to a metric changes every key that depends on it."""
    h = hashlib.sha256(torch.__version__.encode())
    files: list[Path] = []
    for part in parts:
        p = _PKG / part
        if not p.exists():  # a renamed module must not silently drop out of every key
            raise FileNotFoundError(f"code salt part {part!r} is not in the package ({_PKG})")
        files.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    for f in sorted(set(files)):
        h.update(str(f.relative_to(_PKG)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def model_code_salt(task: str) -> str:
    return code_salt(*MODEL_CODE[task])


def method_source(cls: type) -> str:
    """The package-relative file that defines a method class (its code is part of its key)."""
    import inspect

    try:
        return str(Path(inspect.getfile(cls)).resolve().relative_to(_PKG))
    except (TypeError, ValueError):  # defined outside the package (a user's method)
        return ""


# Helper modules imported inside a function (so not among a module's globals): the batch-norm
# policy every vision method runs through VisionMethod.
_LAZY_IMPORTS: dict[str, tuple[str, ...]] = {"methods.base": ("methods/bn.py",)}


def method_sources(cls: type) -> tuple[str, ...]:
    """The package-relative files of a method: its own module and every module of the package's
    ``methods/`` folder it uses, transitively (a shared loop such as the calibrated stop or the
    retain fine-tune). Empty for a method defined outside the package."""
    import sys
    import types

    own = method_source(cls)
    if not own:
        return ()
    prefix = f"{_PKG.name}.methods."
    seen: dict[str, types.ModuleType] = {}
    stack = [sys.modules.get(cls.__module__)]
    while stack:
        mod = stack.pop()
        if mod is None or mod.__name__ in seen or not mod.__name__.startswith(prefix):
            continue
        seen[mod.__name__] = mod
        for v in vars(mod).values():
            m = v if isinstance(v, types.ModuleType) else sys.modules.get(getattr(v, "__module__", "") or "")
            if m is not None and m.__name__.startswith(prefix) and m.__name__ not in seen:
                stack.append(m)
    files = {own}
    for mod in seen.values():
        files.update(_LAZY_IMPORTS.get(mod.__name__.removeprefix(f"{_PKG.name}."), ()))
        f = getattr(mod, "__file__", None)
        if f:
            try:
                files.add(str(Path(f).resolve().relative_to(_PKG)))
            except ValueError:
                continue
    return tuple(sorted(files))


def run_code_salt(task: str, method_cls: type | None) -> str:
    """Model code + evaluation code + the method's files (:func:`method_sources`); a method defined
    outside the package contributes its source text."""
    own = method_sources(method_cls) if method_cls is not None else ()
    salt = code_salt(*MODEL_CODE[task], *EVAL_CODE[task], *own)
    if method_cls is not None and not own:
        import inspect

        try:
            salt = hashlib.sha256((salt + inspect.getsource(method_cls)).encode()).hexdigest()[:16]
        except (OSError, TypeError):  # no source to read (built in a REPL): key by the class name only
            salt = hashlib.sha256((salt + method_cls.__qualname__).encode()).hexdigest()[:16]
    return salt


def ids_sha256(ids: np.ndarray | list[int] | tuple[int, ...]) -> str:
    """SHA-256 of the sorted ids as int64 little-endian bytes (the request's content, not its file)."""
    arr = np.sort(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype="<i8"))
    return hashlib.sha256(arr.tobytes()).hexdigest()


def key_of(inputs: dict[str, Any]) -> str:
    return stable_hash({"format": RECORD_FORMAT, **inputs}, length=24)
