"""Forget requests over statements, and the forget / retain / held-out split they induce.

Two shapes of request:

* :class:`StatementForget` (``kind: ids``) — a deletion request: forget these statement ids.
  There is no requested answer; the model should behave as if it never saw them.
* :class:`LabelFlip` (``kind: flip``) — the model must stop giving its learned judgement for
  chosen statements and give ``to`` instead (``"not biased"``). Statements are chosen by ``ids``
  and/or a filter (``from_label``, ``categories``) from which ``count`` or ``fraction`` are drawn
  with the split seed. A model tuned without them still gives its judgement (they are genuinely
  biased): "closest to the reference" and "reached the requested answer" disagree.
* :class:`LabelNoise` (``kind: mislabelled``) — the paper's own example (§V.A: a factual chest
  X-ray report the tuned model called biased): chosen statements carry a *wrong* label,
  ``injected``, in the tuning data (recorded in the split), and unlearning must remove what the
  model learned from them: the requested answer is their true label, which a model tuned without
  them gives, so the two criteria agree. Selection as for ``flip``.

:func:`split_statements` is a pure function of ``(dataset, request, seed)``. The held-out
(validation) rows are whole groups (minimal-edit pairs stay together) drawn from groups that hold
no forget statement, so a forgotten statement's neutral twin stays in the retain set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .text import TextDataError, TextDataset


class LLMRequestError(ValueError):
    """A forget request over statements that cannot be honoured; names the bad value."""


@dataclass(frozen=True)
class StatementForget:
    """Forget explicit statement ids (no requested answer)."""

    ids: tuple[str, ...]

    def __post_init__(self) -> None:
        ids = tuple(str(i) for i in (self.ids if isinstance(self.ids, (list, tuple)) else (self.ids,)))
        if not ids:
            raise LLMRequestError("an ids request needs at least one statement id")
        dups = sorted({i for i in ids if ids.count(i) > 1})
        if dups:
            raise LLMRequestError(f"duplicated statement ids in the request: {dups[:10]}")
        object.__setattr__(self, "ids", ids)

    @property
    def target(self) -> str | None:
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "ids", "ids": list(self.ids)}

    def describe(self) -> str:
        return f"ids:{len(self.ids)}"


@dataclass(frozen=True)
class LabelFlip:
    """Make the model answer ``to`` for the chosen statements (the paper's "biased" → "not biased").

    Selection: the union of ``ids`` and (when any filter or amount is given) ``count`` or
    ``fraction`` of the statements matching ``from_label`` and ``categories``, drawn with the seed.
    """

    to: str
    ids: tuple[str, ...] = ()
    from_label: str | None = None
    categories: tuple[str, ...] = ()
    count: int | None = None
    fraction: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(str(i) for i in self.ids))
        cats = self.categories
        object.__setattr__(self, "categories", tuple([cats] if isinstance(cats, str) else cats))
        if not isinstance(self.to, str) or not self.to:
            raise LLMRequestError(f"flip.to must be an answer string or label, got {self.to!r}")
        if self.count is not None and (
            isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1
        ):
            raise LLMRequestError(f"flip.count must be a positive integer, got {self.count!r}")
        if self.fraction is not None:
            f = self.fraction
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < float(f) <= 1.0:
                raise LLMRequestError(f"flip.fraction must lie in (0, 1], got {f!r}")
        if self.count is not None and self.fraction is not None:
            raise LLMRequestError("flip: give count or fraction, not both")
        if (
            not self.ids
            and self.from_label is None
            and not self.categories
            and self.count is None
            and self.fraction is None
        ):
            raise LLMRequestError("flip needs ids and/or a selection (from_label, categories, count, fraction)")

    @property
    def target(self) -> str | None:
        return self.to

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": "flip", "to": self.to}
        for k in ("ids", "from_label", "categories", "count", "fraction"):
            v = getattr(self, k)
            if v not in (None, ()):
                d[k] = list(v) if isinstance(v, tuple) else v
        return d

    def describe(self) -> str:
        sel = []
        if self.from_label is not None:
            sel.append(self.from_label)
        if self.categories:
            sel.append("+".join(self.categories))
        if self.count is not None:
            sel.append(f"n={self.count}")
        if self.fraction is not None:
            sel.append(f"{self.fraction:g}")
        if self.ids:
            sel.append(f"ids={len(self.ids)}")
        return f"flip:{','.join(sel)}->{self.to}"


@dataclass(frozen=True)
class LabelNoise:
    """Statements whose tuning-data label is wrong (``injected``); forget what was learned from them.

    Selection as for :class:`LabelFlip` over statements whose true label is not ``injected``; the
    requested answer is each statement's true label (one label: the selection must not mix)."""

    injected: str
    ids: tuple[str, ...] = ()
    from_label: str | None = None
    categories: tuple[str, ...] = ()
    count: int | None = None
    fraction: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.injected, str) or not self.injected:
            raise LLMRequestError(f"mislabelled.injected must be a label or answer string, got {self.injected!r}")
        sel = self.as_flip()  # the selection rules are LabelFlip's (validated there)
        object.__setattr__(self, "ids", sel.ids)
        object.__setattr__(self, "categories", sel.categories)

    @property
    def target(self) -> str | None:
        return None  # the true label, resolved by split_statements

    def to_dict(self) -> dict[str, Any]:
        flip = self.as_flip().to_dict()
        del flip["kind"], flip["to"]
        return {"kind": "mislabelled", "injected": self.injected, **flip}

    def as_flip(self) -> LabelFlip:
        """The same selection as a flip to ``injected`` (what picks the statements)."""
        return LabelFlip(
            to=self.injected,
            ids=self.ids,
            from_label=self.from_label,
            categories=self.categories,
            count=self.count,
            fraction=self.fraction,
        )

    def describe(self) -> str:
        flip = self.as_flip().describe()
        return "mislabelled:" + flip.split(":", 1)[1].rsplit("->", 1)[0] + f"<-{self.injected}"


LLMRequest = StatementForget | LabelFlip | LabelNoise
_SELECT = {"ids", "from_label", "categories", "count", "fraction"}
_KEYS = {"ids": {"ids"}, "flip": {"to"} | _SELECT, "mislabelled": {"injected"} | _SELECT}


def parse_llm_request(spec: LLMRequest | dict[str, Any]) -> LLMRequest:
    """``{kind: ids, ids: [cb-0002, ...]}`` or
    ``{kind: flip, from_label: biased, fraction: 0.1, to: "not biased"}``."""
    if isinstance(spec, (StatementForget, LabelFlip, LabelNoise)):
        return spec
    if not isinstance(spec, dict):
        raise LLMRequestError(f"an LLM forget request must be a mapping, got {type(spec).__name__} {spec!r}")
    d = dict(spec)
    kind = d.pop("kind", None)
    if kind not in _KEYS:
        raise LLMRequestError(f"request kind must be one of {sorted(_KEYS)}, got {kind!r}")
    extra = sorted(set(d) - _KEYS[kind])
    if extra:
        raise LLMRequestError(f"unknown field(s) {extra} for a {kind!r} request; allowed: {sorted(_KEYS[kind])}")
    if kind == "ids":
        if "ids" not in d:
            raise LLMRequestError("an 'ids' request needs the field 'ids'")
        return StatementForget(tuple(d["ids"]) if isinstance(d["ids"], (list, tuple)) else (d["ids"],))
    ids = d.get("ids") or ()
    selection: dict[str, Any] = {
        "ids": tuple(ids) if isinstance(ids, (list, tuple)) else (ids,),
        "from_label": d.get("from_label"),
        "categories": tuple(d.get("categories") or ()),
        "count": d.get("count"),
        "fraction": d.get("fraction"),
    }
    if kind == "mislabelled":
        if "injected" not in d:
            raise LLMRequestError(
                "a 'mislabelled' request needs the field 'injected' (the wrong label in the tuning data)"
            )
        return LabelNoise(injected=d["injected"], **selection)
    if "to" not in d:
        raise LLMRequestError("a 'flip' request needs the field 'to' (the new answer, e.g. 'not biased')")
    return LabelFlip(to=d["to"], **selection)


@dataclass(frozen=True)
class StatementSplit:
    """Row positions into ``dataset.records``: disjoint forget / retain / validation (held-out).

    ``target_label`` is the label the request asks the model to give on the forget rows (``None``
    for a plain deletion request). ``noise`` maps forget rows to the wrong label injected into the
    tuning data (a ``mislabelled`` request; empty otherwise): train and evaluate on
    ``dataset.with_labels(split.noise)``.
    """

    forget: np.ndarray
    retain: np.ndarray
    validation: np.ndarray
    target_label: str | None = None
    noise: dict[int, str] = field(default_factory=dict)

    @property
    def train(self) -> np.ndarray:
        """What the original model is trained on: forget ∪ retain, sorted."""
        return np.sort(np.concatenate([self.forget, self.retain]))

    def sizes(self) -> dict[str, int]:
        return {"forget": len(self.forget), "retain": len(self.retain), "validation": len(self.validation)}


def split_statements(
    dataset: TextDataset, request: LLMRequest, seed: int, validation_fraction: float = 0.2
) -> StatementSplit:
    """Forget rows from ``request``; held-out groups drawn from the rest; retain = everything else."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise LLMRequestError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= float(validation_fraction) < 1.0:
        raise LLMRequestError(f"validation_fraction must lie in [0, 1), got {validation_fraction!r}")
    rng = np.random.default_rng([int(seed), 0x5EED])
    recs = dataset.records
    n = len(recs)

    def rows_of(ids: tuple[str, ...]) -> list[int]:
        missing = [i for i in ids if not dataset.has_id(i)]
        if missing:
            raise LLMRequestError(
                f"statement id(s) not in {dataset.name!r}: {missing[:10]}{' ...' if len(missing) > 10 else ''}"
                f"; ids look like {recs[0].id!r}"
            )
        return [dataset.row_of(i) for i in ids]

    target_label: str | None = None
    if isinstance(request, LabelNoise):
        try:
            injected = (
                dataset.label_of_answer(request.injected)
                if request.injected not in dataset.answers
                else request.injected
            )
        except TextDataError as e:
            raise LLMRequestError(f"mislabelled.injected: {e}") from None
        picked = split_statements(dataset, request.as_flip(), seed, validation_fraction)
        truth = sorted({recs[i].label for i in picked.forget})
        if len(truth) != 1:
            raise LLMRequestError(f"mislabelled: the selection mixes true labels {truth}; select one (from_label)")
        return StatementSplit(
            picked.forget, picked.retain, picked.validation, truth[0], {int(i): injected for i in picked.forget}
        )
    if isinstance(request, StatementForget):
        forget = set(rows_of(request.ids))
    elif isinstance(request, LabelFlip):
        try:
            target_label = dataset.label_of_answer(request.to)
        except TextDataError as e:
            raise LLMRequestError(f"flip.to: {e}") from None
        forget = set(rows_of(request.ids))
        if (
            request.from_label is not None
            or request.categories
            or request.count is not None
            or request.fraction is not None
        ):
            from_label: str | None
            if request.from_label is not None and request.from_label not in dataset.answers:
                try:
                    from_label = dataset.label_of_answer(request.from_label)
                except TextDataError as e:
                    raise LLMRequestError(f"flip.from_label: {e}") from None
            else:
                from_label = request.from_label
            cats = set(request.categories)
            known_cats = {r.category for r in recs}
            bad = sorted(cats - known_cats)
            if bad:
                raise LLMRequestError(
                    f"flip.categories {bad} not in {dataset.name!r}; known: {sorted(c for c in known_cats if c)}"
                )
            pool = [
                i
                for i, r in enumerate(recs)
                if (from_label is None or r.label == from_label)
                and (not cats or r.category in cats)
                and r.label != target_label
            ]
            if not pool:
                raise LLMRequestError(
                    f"flip selection {request.describe()} matches no statement whose label differs from the target"
                )
            if request.count is not None:
                k = request.count
                if k > len(pool):
                    raise LLMRequestError(f"flip.count={k} but only {len(pool)} statements match the selection")
            elif request.fraction is not None:
                k = max(1, round(float(request.fraction) * len(pool)))
            else:
                k = len(pool)
            forget |= {pool[j] for j in rng.permutation(len(pool))[:k]}
        already = sorted(recs[i].id for i in forget if recs[i].label == target_label)
        if already:
            raise LLMRequestError(
                f"flip to {request.to!r}: statement(s) {already[:10]} already carry that label; nothing to unlearn"
            )
    else:
        raise LLMRequestError(f"not an LLM forget request: {request!r}")

    forget_rows = np.array(sorted(forget), dtype=np.int64)
    if len(forget_rows) == 0:
        raise LLMRequestError(f"request {request.describe()} selects no statement")
    # held-out: whole groups that contain no forget row, drawn with the seed
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(recs):
        groups.setdefault(r.group if r.group is not None else f"__row{i}", []).append(i)
    free = [g for g, rows in groups.items() if not forget.intersection(rows)]
    free.sort()
    n_val_target = round(float(validation_fraction) * n)
    val: list[int] = []
    for gi in rng.permutation(len(free)):
        if len(val) >= n_val_target:
            break
        val.extend(groups[free[gi]])
    val_rows = np.array(sorted(val), dtype=np.int64)
    taken = set(forget) | set(val)
    retain_rows = np.array([i for i in range(n) if i not in taken], dtype=np.int64)
    if len(retain_rows) == 0:
        raise LLMRequestError(f"request {request.describe()} leaves no statement to retain")
    return StatementSplit(forget_rows, retain_rows, val_rows, target_label)
