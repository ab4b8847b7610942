"""Forget requests and the splits they induce.

A request says *what* to forget; :func:`split_indices` turns it, with a dataset's labels and a
seed, into disjoint forget/retain training rows plus the matching test-side rows. It is a pure
function of ``(labels, request, seed)``: the same inputs give the same split, seed 0 included.

Four shapes of request:

* :class:`ClassForget` — whole class(es) by name or index (``airplane``, ``[airplane, cat]``);
* :class:`SubclassForget` — a fine class inside its superclass (CIFAR-100 ``rocket`` in
  ``vehicles_2``); needs a dataset with a class hierarchy;
* :class:`RandomForget` — a random fraction of the training set;
* :class:`SampleIdsForget` — explicit training-sample ids, e.g. read from a deletion-request file.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import LabelInfo

_ASCII_INT = re.compile(r"[0-9]+")


class ForgetRequestError(ValueError):
    """A forget request that cannot be honoured; the message names the bad value."""


def _norm(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _resolve_class(value: str | int, names: tuple[str, ...], what: str = "class") -> int:
    if isinstance(value, bool):
        raise ForgetRequestError(f"{what} must be a name or an index, got {value!r}")
    if isinstance(value, (int, np.integer)):
        if not 0 <= int(value) < len(names):
            raise ForgetRequestError(f"{what} index {int(value)} is out of range: allowed 0..{len(names) - 1}")
        return int(value)
    if isinstance(value, str):
        key = _norm(value)
        table = {_norm(n): i for i, n in enumerate(names)}
        if key in table:
            return table[key]
        if key.isdigit() and 0 <= int(key) < len(names) and key not in table:
            return int(key)
        near = difflib.get_close_matches(key, list(table), n=1, cutoff=0.6)
        hint = f" Did you mean {names[table[near[0]]]!r}?" if near else ""
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        raise ForgetRequestError(f"Unknown {what} {value!r}.{hint} Allowed: {shown}")
    raise ForgetRequestError(f"{what} must be a name or an index, got {type(value).__name__} {value!r}")


@dataclass(frozen=True)
class ClassForget:
    """Forget every training sample of the given class(es)."""

    classes: tuple[str | int, ...]

    def __post_init__(self) -> None:
        if isinstance(self.classes, (str, int)):
            object.__setattr__(self, "classes", (self.classes,))
        object.__setattr__(self, "classes", tuple(self.classes))
        if not self.classes:
            raise ForgetRequestError("ClassForget needs at least one class, got none")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "class", "classes": list(self.classes)}

    def describe(self) -> str:
        return "class:" + "+".join(str(c) for c in self.classes)


@dataclass(frozen=True)
class SubclassForget:
    """Forget one fine class, keeping its superclass (e.g. ``rocket`` in ``vehicles_2``).

    ``superclass`` is optional; when given it must be the fine class's real superclass.
    """

    subclass: str | int
    superclass: str | int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "subclass", "subclass": self.subclass, "superclass": self.superclass}

    def describe(self) -> str:
        return f"subclass:{self.subclass}"


@dataclass(frozen=True)
class RandomForget:
    """Forget a uniformly random ``fraction`` of the training set (drawn with the split seed)."""

    fraction: float

    def __post_init__(self) -> None:
        if isinstance(self.fraction, bool) or not isinstance(self.fraction, (int, float)):
            raise ForgetRequestError(f"fraction must be a number in (0, 1), got {self.fraction!r}")
        if not 0.0 < float(self.fraction) < 1.0:
            raise ForgetRequestError(f"fraction must lie strictly between 0 and 1, got {self.fraction!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "random", "fraction": float(self.fraction)}

    def describe(self) -> str:
        return f"random:{self.fraction:g}"


@dataclass(frozen=True)
class SampleIdsForget:
    """Forget explicit training-sample ids: the shape of a real deletion request."""

    ids: tuple[int, ...]
    source: str = ""

    def __post_init__(self) -> None:
        ids = []
        for v in self.ids:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ForgetRequestError(f"sample id must be an integer, got {v!r}")
            ids.append(int(v))
        seen: set[int] = set()
        repeated: set[int] = set()
        for i in ids:
            (repeated if i in seen else seen).add(i)
        dups = sorted(repeated)
        if dups:
            raise ForgetRequestError(f"duplicated sample ids in the request: {dups[:10]}")
        if not ids:
            raise ForgetRequestError("the deletion request holds no sample ids")
        object.__setattr__(self, "ids", tuple(ids))

    @classmethod
    def from_file(cls, path: str | Path) -> SampleIdsForget:
        """Read one id per line (:func:`read_ids_file`); duplicates are refused."""
        return cls(tuple(read_ids_file(path)), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": "ids", "ids": list(self.ids)}
        if self.source:
            d["source"] = self.source
        return d

    def describe(self) -> str:
        return f"ids:{len(self.ids)}" + (f"@{Path(self.source).name}" if self.source else "")


def read_ids_file(path: str | Path) -> list[int]:
    """The ids of a deletion-request file, in file order (duplicates kept: callers decide).

    One id per line: ASCII decimal digits only (``1_0``, ``+11``, ``١٢``, ``1.0`` and ``-3`` are
    refused, naming the line, although Python's ``int`` accepts some of them). Blank lines and
    ``#`` comments are skipped; a UTF-8 byte-order mark and CRLF line ends are accepted.
    """
    path = Path(path)
    if path.is_dir():
        raise ForgetRequestError(f"deletion-request file {str(path)!r} is a directory; give the file of ids")
    if not path.exists():
        raise ForgetRequestError(f"deletion-request file {str(path)!r} does not exist")
    if not path.is_file():
        raise ForgetRequestError(
            f"deletion-request file {str(path)!r} is not a regular file (a pipe, a device or a socket); "
            "give a file of ids"
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")  # strips a BOM
    except UnicodeDecodeError as e:
        raise ForgetRequestError(f"{path} is not UTF-8 text ({e}); write one decimal id per line") from None
    ids: list[int] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not _ASCII_INT.fullmatch(line):
            col = next((i for i, c in enumerate(line, 1) if not ("0" <= c <= "9")), 1)
            raise ForgetRequestError(  # the file's text is not echoed: it may not be an ids file at all
                f"{path}:{lineno}: sample id must be a non-negative decimal integer (ASCII digits only); "
                f"column {col} of this line's {len(line)} characters is not a digit"
            )
        ids.append(int(line))
    return ids


def id_rows(train_ids: Sequence[int] | np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """The training rows of sample ``ids`` (in their order), refusing ids that are not training
    samples with the range of ids that are — the one lookup of every ids request (studies and
    deletion requests alike)."""
    train_ids = np.asarray(train_ids)
    pos = {int(v): i for i, v in enumerate(train_ids)}
    missing = [int(i) for i in ids if int(i) not in pos]
    if missing:
        lo, hi = int(train_ids.min()), int(train_ids.max())
        allowed = (
            f"{lo}..{hi}"
            if len(train_ids) == hi - lo + 1
            else f"the {len(train_ids)} ids of this (subset) training set"
        )
        raise ForgetRequestError(
            f"{len(missing)} sample id(s) not in the training set: {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}; allowed: {allowed}"
        )
    return np.asarray([pos[int(i)] for i in ids], dtype=np.int64)


ForgetRequest = ClassForget | SubclassForget | RandomForget | SampleIdsForget
REQUEST_KINDS = ("class", "subclass", "random", "ids")


def parse_request(spec: ForgetRequest | dict[str, Any] | str) -> ForgetRequest:
    """Build a request from a dict (as in a study YAML) or a short string.

    Dicts: ``{kind: class, classes: [airplane, cat]}``, ``{kind: subclass, subclass: rocket}``,
    ``{kind: random, fraction: 0.1}``, ``{kind: ids, path: ids.txt}`` or ``{kind: ids, ids: [..]}``.
    Strings: ``"airplane"`` / ``"airplane,cat"`` (classes), ``"random:0.1"``, ``"subclass:rocket"``,
    ``"ids:path/to/file.txt"``.
    """
    if isinstance(spec, (ClassForget, SubclassForget, RandomForget, SampleIdsForget)):
        return spec
    if isinstance(spec, str):
        kind, _, rest = spec.partition(":")
        if not rest:
            return ClassForget(tuple(s.strip() for s in spec.split(",") if s.strip()))
        if kind == "random":
            try:
                return RandomForget(float(rest))
            except ValueError:
                raise ForgetRequestError(f"random fraction must be a number, got {rest!r}") from None
        if kind == "subclass":
            return SubclassForget(rest.strip())
        if kind == "ids":
            return SampleIdsForget.from_file(rest.strip())
        if kind == "class":
            return ClassForget(tuple(s.strip() for s in rest.split(",") if s.strip()))
        raise ForgetRequestError(f"Unknown request kind {kind!r}; allowed: {', '.join(REQUEST_KINDS)}")
    if not isinstance(spec, dict):
        raise ForgetRequestError(f"a forget request must be a dict or string, got {type(spec).__name__}")
    spec = dict(spec)
    kind = spec.pop("kind", None)
    allowed_keys = {
        "class": {"classes"},
        "subclass": {"subclass", "superclass"},
        "random": {"fraction"},
        "ids": {"ids", "path", "source"},
    }
    if kind not in allowed_keys:
        raise ForgetRequestError(f"request kind must be one of {', '.join(REQUEST_KINDS)}, got {kind!r}")
    extra = set(spec) - allowed_keys[kind]
    if extra:
        raise ForgetRequestError(
            f"unknown field(s) {sorted(extra)} for a {kind!r} request; allowed: {sorted(allowed_keys[kind])}"
        )
    try:
        if kind == "class":
            classes = spec["classes"]
            return ClassForget(tuple(classes) if isinstance(classes, (list, tuple)) else (classes,))
        if kind == "subclass":
            return SubclassForget(spec["subclass"], spec.get("superclass"))
        if kind == "random":
            return RandomForget(spec["fraction"])
        if "path" in spec:
            return SampleIdsForget.from_file(spec["path"])
        ids = spec["ids"]
        if not isinstance(ids, (list, tuple)):
            raise ForgetRequestError(f"an 'ids' request needs a list of integer ids, got {ids!r}")
        return SampleIdsForget(tuple(ids), source=str(spec.get("source") or ""))
    except KeyError as e:
        raise ForgetRequestError(f"a {kind!r} request needs the field {e.args[0]!r}") from None


@dataclass(frozen=True)
class ForgetSplit:
    """Row positions (into the dataset's train/test tensors) for one request.

    ``forget_classes`` lists the target classes removed whole (empty for random/id requests and
    for sub-classes, whose superclass stays).
    """

    forget: np.ndarray
    retain: np.ndarray
    test_forget: np.ndarray
    test_retain: np.ndarray
    forget_classes: tuple[int, ...] = ()

    def sizes(self) -> dict[str, int]:
        return {
            "forget": len(self.forget),
            "retain": len(self.retain),
            "test_forget": len(self.test_forget),
            "test_retain": len(self.test_retain),
        }


def split_indices(labels: LabelInfo, request: ForgetRequest, seed: int) -> ForgetSplit:
    """Disjoint, exhaustive forget/retain training rows and the test-side rows for ``request``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ForgetRequestError(f"seed must be a non-negative integer, got {seed!r}")
    y_tr = np.asarray(labels.train_labels)
    y_te = np.asarray(labels.test_labels)
    n = len(y_tr)
    forget_classes: tuple[int, ...] = ()
    if isinstance(request, ClassForget):
        idx = sorted({_resolve_class(c, labels.class_names) for c in request.classes})
        forget_classes = tuple(idx)
        in_forget = np.isin(y_tr, idx)
        test_forget = np.isin(y_te, idx)
    elif isinstance(request, SubclassForget):
        h = labels.hierarchy
        if h is None:
            raise ForgetRequestError(
                f"a sub-class request ({request.subclass!r}) needs a dataset with superclasses "
                "(cifar100, cifar20); this dataset has none: use a class request instead"
            )
        fine = _resolve_class(request.subclass, h.fine_names, "sub-class")
        if request.superclass is not None:
            coarse = _resolve_class(request.superclass, h.coarse_names, "superclass")
            if h.fine_to_coarse[fine] != coarse:
                raise ForgetRequestError(
                    f"sub-class {h.fine_names[fine]!r} is in superclass "
                    f"{h.coarse_names[h.fine_to_coarse[fine]]!r}, not {h.coarse_names[coarse]!r}"
                )
        in_forget = np.asarray(h.train_fine) == fine
        test_forget = np.asarray(h.test_fine) == fine
    elif isinstance(request, RandomForget):
        k = int(round(request.fraction * n))
        if k == 0:
            raise ForgetRequestError(f"random fraction {request.fraction} of {n} training samples selects no sample")
        rng = np.random.default_rng(int(seed))
        in_forget = np.zeros(n, dtype=bool)
        in_forget[rng.permutation(n)[:k]] = True
        test_forget = np.zeros(len(y_te), dtype=bool)
    elif isinstance(request, SampleIdsForget):
        ids = np.asarray(labels.train_ids) if labels.train_ids is not None else np.arange(n)
        in_forget = np.zeros(n, dtype=bool)
        in_forget[id_rows(ids, request.ids)] = True
        test_forget = np.zeros(len(y_te), dtype=bool)
    else:
        raise ForgetRequestError(f"not a forget request: {request!r}")

    forget = np.flatnonzero(in_forget)
    retain = np.flatnonzero(~in_forget)
    if len(forget) == 0:
        raise ForgetRequestError(f"request {request.describe()} selects no training sample")
    if len(retain) == 0:
        raise ForgetRequestError(
            f"request {request.describe()} would forget the whole training set ({n} samples); "
            "nothing would be left to retain"
        )
    return ForgetSplit(
        forget=forget,
        retain=retain,
        test_forget=np.flatnonzero(test_forget),
        test_retain=np.flatnonzero(~test_forget),
        forget_classes=forget_classes,
    )
