"""One conformance suite over every registered vision method (PEFT/scikit-learn style).

Each method runs with its ``smoke`` configuration on the tiny digits problem and must: construct
from defaults, keep the architecture and state-dict keys, keep values finite, give identical
weights for the same seed, read only the splits it declared, and reject a bad config.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from obliviate.methods import (
    METHODS,
    SplitAccessError,
    UnlearnData,
    describe_method,
    list_methods,
    run_method,
)

VISION = list_methods(kind="vision")


def test_registry_is_populated() -> None:
    assert {"original", "retrain", "finetune"} <= set(VISION)


@pytest.mark.parametrize("name", VISION)
def test_defaults_construct_and_describe(name: str) -> None:
    cls = METHODS.get(name)
    m = cls()
    assert isinstance(m.config, cls.Config)
    d = describe_method(name)
    assert d["reference"], f"{name} must cite its paper"
    assert [f["name"] for f in d["fields"]] == [f.name for f in dataclasses.fields(cls.Config)]
    for f in d["fields"]:
        assert f["doc"], f"{name}.{f['name']} needs a meaning for `obliviate describe`"


@pytest.mark.parametrize("name", VISION)
def test_bad_config_raises(name: str) -> None:
    cls = METHODS.get(name)
    with pytest.raises(ValueError, match="unknown field"):
        cls({"no_such_field": 1})
    for f in dataclasses.fields(cls.Config):
        if isinstance(f.default, float) and not isinstance(f.default, bool):
            with pytest.raises(ValueError, match=f.name):
                cls({f.name: math.nan})


def _run(tiny, name: str, seed: int = 0):  # type: ignore[no-untyped-def]
    cls = METHODS.get(name)
    method = cls(cls.smoke)
    data = UnlearnData(tiny.dataset, tiny.split, cls.uses)
    result, stats = run_method(method, tiny.model, data, tiny.context(seed))
    return cls, result, stats


@pytest.mark.parametrize("name", VISION)
def test_contract_on_tiny_problem(tiny, name: str) -> None:  # type: ignore[no-untyped-def]
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    cls, result, stats = _run(tiny, name)
    # the original is never modified in place
    for k, v in tiny.model.state_dict().items():
        assert torch.equal(v, before[k]), f"{name} modified the original model's {k}"
    state = result.model.state_dict()
    if cls.keeps_architecture:
        assert type(result.model) is type(tiny.model)
        assert list(state) == list(before)
        assert all(state[k].shape == before[k].shape for k in state)
    for k, v in state.items():
        if v.is_floating_point():
            assert torch.isfinite(v).all(), f"{name} produced non-finite values in {k}"
    assert set(stats.splits_read) <= set(cls.uses)
    assert stats.steps >= 0 and stats.seconds >= 0
    # same seed -> same weights
    _, again, _ = _run(tiny, name)
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, state[k]), f"{name} is not deterministic under a fixed seed ({k})"


@pytest.mark.parametrize("name", VISION)
def test_undeclared_splits_raise(tiny, name: str) -> None:  # type: ignore[no-untyped-def]
    cls = METHODS.get(name)
    data = UnlearnData(tiny.dataset, tiny.split, cls.uses)
    for split in {"forget", "retain", "validation"} - set(cls.uses):
        with pytest.raises(SplitAccessError):
            getattr(data, split)


def test_retrain_never_reads_forget(tiny) -> None:  # type: ignore[no-untyped-def]
    cls, result, stats = _run(tiny, "retrain")
    assert "forget" not in cls.uses and stats.splits_read == ["retain"]
