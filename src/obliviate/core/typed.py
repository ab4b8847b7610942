"""Typed validation of frozen config dataclasses (method configs, the training config, spec parts).

Every field is checked against its annotation before a config's own ``validate()`` runs: a bool
is not an int, an int field refuses ``3.5`` and ``'3'``, a float field refuses NaN and ±inf,
a ``Literal`` lists its choices, a tuple of strings refuses a bare number. One YAML quirk is
repaired rather than refused: YAML 1.1 (PyYAML) reads ``1e-3`` — no dot — as the *string*
``'1e-3'``, so a float field accepts a string in scientific notation. Errors are
:class:`ConfigError`, which carries the field's path so that a study can name
``methods[2].config.alpha``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any, Literal, Union

# What YAML 1.1 leaves a string although it is a number: scientific notation without a dot or
# without an exponent sign (``1e-3``, ``5e4``, ``1.0e3``). Plain quoted numbers ('1') stay strings.
_FLOAT_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)[eE][+-]?\d+")


class ConfigError(ValueError):
    """A config field is wrong. ``field`` is its dotted path inside the config (``alpha``,
    ``constituent.lr``); the message names the class, the field, the bad value and what is allowed."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class SpecError(ConfigError):
    """A study spec is wrong — either task's. The message starts with the field's path in the
    spec (``methods[2].config.alpha: ...``, ``model.lora.r: ...``) and says what is allowed."""

    @classmethod
    def at(cls, path: str, message: str) -> SpecError:
        return cls(f"{path}: {message}", path)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: mappings merge key by key, anything else replaces."""
    import copy

    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        args = typing.get_args(tp)
        inner = _type_name(args[0]) if args else "values"
        return f"a list of {inner}"
    return {float: "a finite number", int: "an integer", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


class _Mismatch(Exception):
    pass


def coerce(value: Any, tp: Any) -> Any:
    """``value`` checked (and, for YAML's float strings and lists-as-tuples, converted) against
    the annotation ``tp``; raises ``_Mismatch`` when it does not fit."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in typing.get_args(tp)):
            return value
        raise _Mismatch
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _Mismatch
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise _Mismatch
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        items = [coerce(v, inner) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        raise _Mismatch
    if tp is float:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 as a string
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(float(value)):
                raise _Mismatch
            return float(value)
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict) and hasattr(tp, "from_dict"):
            return tp.from_dict(value)
        raise _Mismatch
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _Mismatch
    return value  # an annotation this checker does not model (a Callable, a Protocol)


def check_fields(obj: Any) -> None:
    """Check (and normalise in place) every field of the frozen dataclass instance ``obj``."""
    cls = type(obj)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints.get(f.name, Any)
        value = getattr(obj, f.name)
        try:
            new = coerce(value, tp)
        except _Mismatch:
            shown = repr(value)
            if isinstance(value, str):
                shown += " (a string)"
            raise ConfigError(f"{cls.__name__}.{f.name} must be {_type_name(tp)}, got {shown}", f.name) from None
        except ConfigError as e:  # a nested config
            raise ConfigError(f"{cls.__name__}.{f.name}: {e}", f"{f.name}.{e.field}" if e.field else f.name) from None
        except (ValueError, TypeError) as e:  # a nested part's own check
            raise ConfigError(f"{cls.__name__}.{f.name}: {e}", f.name) from None
        if new is not value:
            object.__setattr__(obj, f.name, new)


class SpecPart:
    """Base of a frozen spec dataclass read from a mapping (a study's ``eval:``, ``model:`` ...):
    :meth:`from_dict` refuses unknown keys and checks every field against its annotation (the
    subclass's ``__post_init__`` calls :func:`check_fields`); :meth:`to_dict` gives the mapping back."""

    @classmethod
    def from_dict(cls, d: Any) -> Any:
        return from_mapping(cls, d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


def from_mapping(cls: type[Any], d: Any, what: str | None = None) -> Any:
    """Build the dataclass ``cls`` from a mapping, refusing unknown keys (with a suggestion)."""
    import difflib

    name = what or cls.__name__
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise ConfigError(f"{name} must be a mapping, got {type(d).__name__} {d!r}")
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(d) - set(known))
    if unknown:
        hints = [
            f"{u!r} (did you mean {m[0]!r}?)" for u in unknown if (m := difflib.get_close_matches(str(u), known, n=1))
        ]
        raise ConfigError(
            f"unknown field(s) {unknown} for {name}"
            + (f" — {'; '.join(hints)}" if hints else "")
            + f"; allowed: {sorted(known)}",
            str(unknown[0]),
        )
    return cls(**d)
