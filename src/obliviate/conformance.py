"""The one conformance suite every registered method passes, vision and LLM alike
(scikit-learn's ``check_estimator``, shipped in the package so that a method written outside
obliviate can be checked the same way).

``check_config(name)`` needs nothing; ``check_contract(name, problem, mode)`` and
``check_splits(name, problem)`` run the method's ``smoke`` configuration on a tiny problem of its
kind — :func:`obliviate.testing.tiny_problem` (digits, a narrow CNN) for vision methods,
:func:`obliviate.lm_testing.tiny_llm_problem` (a tiny Llama) for LLM methods, in LoRA and in
full-parameter mode. A problem provides ``model``, ``data(uses)`` and ``context(seed)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Protocol

import torch

from .core import METHODS, SplitAccessError, UnlearningMethod, describe_method, list_methods, run_method

LLM_MODES = ("lora", "full")


class Problem(Protocol):
    model: torch.nn.Module

    def data(self, uses: frozenset[str]) -> Any: ...

    def context(self, seed: int = 0) -> Any: ...


def method_cases() -> list[tuple[str, str | None]]:
    """Every registered method with the modes it is checked in: ``(name, None)`` for vision
    methods, ``(name, "lora")`` and ``(name, "full")`` for LLM methods."""
    import obliviate.methods  # noqa: F401  (registers every method file)

    cases: list[tuple[str, str | None]] = []
    for name in list_methods():
        if METHODS.get(name).kind == "llm":
            cases += [(name, m) for m in LLM_MODES]
        else:
            cases.append((name, None))
    return cases


def check_config(name: str) -> None:
    """Defaults construct and describe themselves (a paper reference, a meaning per field); an
    unknown field and NaN / ±inf in every float field are refused, naming the field."""
    cls = METHODS.get(name)
    m = cls()
    assert isinstance(m.config, cls.Config)
    d = describe_method(name)
    assert d["reference"], f"{name} must cite its paper"
    assert [f["name"] for f in d["fields"]] == [f.name for f in dataclasses.fields(cls.Config)]
    for f in d["fields"]:
        assert f["doc"], f"{name}.{f['name']} needs a meaning for `obliviate describe`"
    cls(cls.smoke)  # the smoke configuration is valid
    try:
        cls({"no_such_field": 1})
    except ValueError as e:
        assert "unknown field" in str(e) and "no_such_field" in str(e), e
    else:
        raise AssertionError(f"{name} accepted an unknown field")
    for f in dataclasses.fields(cls.Config):
        if isinstance(f.default, float):
            for bad in (math.nan, math.inf, -math.inf):
                try:
                    cls({f.name: bad})
                except ValueError as e:
                    assert f.name in str(e), e
                else:
                    raise AssertionError(f"{name}.{f.name} accepted {bad}")


def _run(name: str, problem: Problem, mode: str | None, seed: int = 0) -> tuple[type[UnlearningMethod], Any, Any]:
    cls = METHODS.get(name)
    cfg = dict(cls.smoke) if mode is None else {**cls.smoke, "mode": mode}
    result, stats = run_method(cls(cfg), problem.model, problem.data(cls.uses), problem.context(seed))
    return cls, result, stats


def check_contract(name: str, problem: Problem, mode: str | None = None) -> Any:
    """The method leaves the original untouched, keeps the architecture and state-dict keys
    (unless it declares otherwise), keeps values finite, reads only the splits it declared, and
    gives identical weights for the same seed. Returns the result."""
    before = {k: v.clone() for k, v in problem.model.state_dict().items()}
    cls, result, stats = _run(name, problem, mode)
    for k, v in problem.model.state_dict().items():
        assert torch.equal(v, before[k]), f"{name} modified the original model's {k}"
    state = result.model.state_dict()
    if cls.keeps_architecture:
        assert type(result.model) is type(problem.model), f"{name} changed the model class"
        assert list(state) == list(before), f"{name} changed the state-dict keys"
        assert all(state[k].shape == before[k].shape for k in state)
    for k, v in state.items():
        if v.is_floating_point():
            assert torch.isfinite(v).all(), f"{name} produced non-finite values in {k}"
    assert set(stats.splits_read) <= set(cls.uses), f"{name} read {stats.splits_read}, declared {sorted(cls.uses)}"
    assert stats.steps >= 0 and stats.seconds >= 0
    _, again, _ = _run(name, problem, mode)
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, state[k]), f"{name} ({mode or cls.kind}) is not deterministic under a fixed seed ({k})"
    return result


def check_splits(name: str, problem: Problem) -> None:
    """Every split a method did not declare raises :class:`SplitAccessError` when read."""
    cls = METHODS.get(name)
    data = problem.data(cls.uses)
    for split in {"forget", "retain", "validation"} - set(cls.uses):
        try:
            getattr(data, split)
        except SplitAccessError:
            continue
        raise AssertionError(f"{name}: reading the undeclared {split!r} split did not raise")


__all__ = ["LLM_MODES", "Problem", "check_config", "check_contract", "check_splits", "method_cases"]
