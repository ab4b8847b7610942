"""Parts of a study spec that both tasks read the same way: the seeds and the methods.

:func:`parse_methods` builds every method's config while the spec is read, so a bad field fails
before anything trains, with its path (``methods[2].config.alpha``)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core import SpecError
from ..methods import METHODS, UnlearningMethod
from .targets import REQUEST_KINDS


def _err(path: str, msg: str) -> SpecError:
    return SpecError.at(path, msg)


def _a(kind: str) -> str:
    return f"an {kind}" if kind == "llm" else f"a {kind}"


def config_error(path: str, e: Exception) -> SpecError:
    """A config error under ``path``, naming the field inside it: ``methods[2].config.alpha``."""
    field_path = getattr(e, "field", "")
    return _err(f"{path}.{field_path}" if field_path else path, str(e))


@dataclass(frozen=True)
class MethodSpec:
    """One method entry of a study. ``kinds``: the request kinds it runs on (empty: every kind);
    on the others its runs are *not applicable* — so one method can carry one setting for class
    requests and another for sample-level ones."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    kinds: tuple[str, ...] = ()

    def applies_to(self, kind: str) -> bool:
        return not self.kinds or kind in self.kinds

    def build(self) -> UnlearningMethod:
        return METHODS.get(self.name)(self.config)


def parse_seeds(seeds: Any) -> list[int]:
    """``seeds:`` of either task: a non-empty list of distinct non-negative integers."""
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise _err("seeds", f"must be a non-empty list of non-negative integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise _err("seeds", f"has duplicates: {seeds}")
    return list(seeds)


def parse_methods(
    methods_raw: Any, kind: str, defaults: dict[str, Any] | None = None, reserved: Sequence[str] = ()
) -> list[MethodSpec]:
    """``methods:`` of either task: ``'all'`` (every registered method of ``kind``) or a list of
    names or ``{name, config, label, kinds}``. ``defaults``: config fields every entry starts from
    (an LLM study's ``model.lora``); ``reserved``: labels a method may not take (the reference rows).
    Every config is built now, so a bad field fails before anything trains."""
    from ..methods import list_methods

    available = list_methods(kind=kind)
    if methods_raw == "all":
        # the references first, in the order reports read best
        methods_raw = [m for m in ("original", "retrain") if m in available] + [
            m for m in available if m not in ("original", "retrain")
        ]
    if not isinstance(methods_raw, list) or not methods_raw:
        raise _err(
            "methods",
            f"must be 'all' or a non-empty list of method names or {{name, config, label}}; "
            f"{kind} methods: {', '.join(available)}",
        )
    methods: list[MethodSpec] = []
    for i, m in enumerate(methods_raw):
        m = {"name": m} if isinstance(m, str) else m
        if not isinstance(m, dict) or "name" not in m or set(m) - {"name", "config", "label", "kinds"}:
            raise _err(f"methods[{i}]", f"must be a name or {{name, config, label, kinds}}, got {m!r}")
        kinds = m.get("kinds") or []
        if isinstance(kinds, str):
            kinds = [kinds]
        if not isinstance(kinds, list) or any(k not in REQUEST_KINDS for k in kinds):
            raise _err(
                f"methods[{i}].kinds",
                f"must be a list of request kinds ({', '.join(REQUEST_KINDS)}), got {m.get('kinds')!r}",
            )
        if m["name"] not in METHODS:
            near = difflib.get_close_matches(str(m["name"]), available, n=1, cutoff=0.5)
            raise _err(
                f"methods[{i}].name",
                f"Unknown {kind} method {m['name']!r}."
                + (f" Did you mean {near[0]!r}?" if near else "")
                + f" Available: {', '.join(available)}.",
            )
        cls = METHODS.get(m["name"])
        if cls.kind != kind:
            raise _err(
                f"methods[{i}].name",
                f"{m['name']!r} is {_a(cls.kind)} method; this is {_a(kind)} study "
                f"({kind} methods: {', '.join(available)})",
            )
        if not isinstance(m.get("config") or {}, dict):
            raise _err(f"methods[{i}].config", f"must be a mapping of config fields, got {m['config']!r}")
        spec = MethodSpec(
            m["name"],
            {**(defaults or {}), **dict(m.get("config") or {})},
            str(m.get("label") or m["name"]),
            tuple(dict.fromkeys(kinds)),
        )
        try:
            spec.build()
        except (ValueError, TypeError) as e:
            raise config_error(f"methods[{i}].config", e) from None
        methods.append(spec)
    resolved = [(m.name, m.build().config) for m in methods]
    for i, pair in enumerate(resolved):
        j = resolved.index(pair)
        if j != i:  # same name and config: the same run under two labels
            raise _err(f"methods[{i}]", f"is methods[{j}] ({methods[j].label!r}) again: same method, same config")
    labels = [m.label for m in methods]
    dup = sorted({x for x in labels if labels.count(x) > 1} | (set(reserved) & set(labels)))
    if dup:
        taken = f" and not one of {list(reserved)}" if reserved else ""
        raise _err("methods", f"labels must be unique{taken}: {dup}; give each a `label`")
    return methods
