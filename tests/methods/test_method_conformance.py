"""One conformance suite over every registered method of both kinds (obliviate.conformance):
vision methods on the tiny digits problem, LLM methods on the tiny Llama in LoRA and full mode."""

from __future__ import annotations

import os
import typing
from typing import Any

import pytest
import torch

from obliviate.conformance import check_config, check_contract, check_splits, method_cases
from obliviate.methods import METHODS, list_methods, run_method

CASES = method_cases()
NAMES = sorted({n for n, _ in CASES})


@pytest.fixture(scope="module")
def tiny_llm() -> Any:
    from obliviate.lm_testing import tiny_llm_problem

    return tiny_llm_problem()


def _problem(request: pytest.FixtureRequest, name: str) -> Any:
    if METHODS.get(name).kind == "llm":
        torch.set_num_threads(1)  # tiny matrices: a second thread only adds contention
        return request.getfixturevalue("tiny_llm")
    if "validation" in METHODS.get(name).uses:  # reads held-out rows: a sample-level request that has them
        return request.getfixturevalue("tiny_heldout")
    if METHODS.get(name).sample_level:  # refuses whole classes
        return request.getfixturevalue("tiny_random")
    return request.getfixturevalue("tiny")


def test_every_registered_method_is_a_case() -> None:
    assert {"original", "retrain", "finetune", "relabel", "npo"} <= set(NAMES)
    assert set(NAMES) == set(list_methods())
    assert ("npo", "lora") in CASES and ("npo", "full") in CASES and ("ssd", None) in CASES


@pytest.mark.parametrize("name", NAMES)
def test_config(name: str) -> None:
    check_config(name)


@pytest.mark.parametrize("name", NAMES)
def test_config_is_the_type_parameter(name: str) -> None:
    """``class M(VisionMethod[C])`` sets ``Config = C`` (or a subclass of it): the type mypy gives
    ``self.config`` is the class the method builds its config from."""
    cls = METHODS.get(name)
    params = [
        a
        for c in cls.__mro__
        for b in c.__dict__.get("__orig_bases__", ())
        for a in typing.get_args(b)
        if isinstance(a, type)
    ]
    assert params, f"{cls.__name__} names no config type (UnlearningMethod[ItsConfig])"
    assert issubclass(cls.Config, params[0]), f"{cls.__name__}.Config is not its type parameter {params[0].__name__}"


def test_configs_inherit_from_shared_bases_only() -> None:
    """A method's config derives from shared bases (``VisionConfig``, ``StopConfig``, ``NegGradConfig``
    ...), never from another method's config: one level below the shared bases, so a method's
    defaults are read in its own file and one base."""
    from obliviate.core import MethodConfig

    # (``original`` takes no settings: its config is the base itself)
    configs = {METHODS.get(n).Config: n for n in NAMES if METHODS.get(n).Config is not MethodConfig}
    for cfg, name in configs.items():
        parents = [c for c in cfg.__mro__[1:] if c in configs and c is not cfg]
        assert not parents, f"{name}'s {cfg.__name__} derives from {configs[parents[0]]}'s {parents[0].__name__}"


@pytest.mark.parametrize("name, mode", CASES, ids=[f"{n}-{m or 'vision'}" for n, m in CASES])
def test_contract(request: pytest.FixtureRequest, name: str, mode: str | None) -> None:
    check_contract(name, _problem(request, name), mode)


@pytest.mark.parametrize("name", NAMES)
def test_undeclared_splits_raise(request: pytest.FixtureRequest, name: str) -> None:
    check_splits(name, _problem(request, name))


def test_the_suite_catches_a_broken_method(tiny: Any) -> None:
    """A check that cannot fail is a defect: a method that reads an undeclared split, and one
    that is not deterministic, are both caught."""
    from obliviate.core import MethodResult, UnlearningMethod

    class Sneaky(UnlearningMethod):
        uses = frozenset({"retain"})
        reference = "none"

        def unlearn(self, model, data, ctx):  # type: ignore[no-untyped-def]
            _ = data.forget
            return MethodResult(model)

    with pytest.raises(Exception, match="declared uses"):
        run_method(Sneaky(), tiny.model, tiny.data(Sneaky.uses), tiny.context(0))

    class Noisy(UnlearningMethod):
        uses = frozenset()
        reference = "none"

        def unlearn(self, model, data, ctx):  # type: ignore[no-untyped-def]
            with torch.no_grad():  # randomness from outside every seed
                next(model.parameters()).add_(1e-3 * (1 + int.from_bytes(os.urandom(2), "little")))
            return MethodResult(model)

    METHODS.register("_noisy_test_method")(Noisy)
    try:
        with pytest.raises(AssertionError, match="not deterministic"):
            check_contract("_noisy_test_method", tiny)
    finally:
        METHODS._items.pop("_noisy_test_method")


def test_retrain_never_reads_forget(tiny: Any) -> None:
    cls = METHODS.get("retrain")
    _, stats = run_method(cls(cls.smoke), tiny.model, tiny.data(cls.uses), tiny.context(0))
    assert "forget" not in cls.uses and stats.splits_read == ["retain"]
