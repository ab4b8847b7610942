"""SSD without the oracle: ``alpha_rule: forget_zero`` picks α per request from the forget sample
alone (a model retrained without a class never predicts it), where a fixed α fails on some class."""

from __future__ import annotations

import pytest

from obliviate.core import ConfigError
from obliviate.data import ClassForget
from obliviate.methods import get_method, run_method
from obliviate.testing import TinyProblem, tiny_problem


def _ssd(problem: TinyProblem, **cfg: object):  # type: ignore[no-untyped-def]
    cls = get_method("ssd")
    return run_method(cls(cfg), problem.model, problem.data(cls), problem.context(0))[0]


@pytest.mark.parametrize("klass", ["0", "8"])
def test_forget_zero_forgets_the_class_where_a_fixed_alpha_does_not(klass: str) -> None:
    problem = tiny_problem(ClassForget((klass,)))
    fixed = _ssd(problem, alpha=6.0)  # the default study's digits α
    rule = _ssd(problem, alpha_rule="forget_zero")
    # measured (seed 0): class 0 — fixed forget 0.647, retained test 0.958; rule 0.000 / 0.936 at α 3.40
    #                    class 8 — fixed 0.000 but retained test 0.337;      rule 0.000 / 0.961 at α 6.97
    assert problem.accuracy(rule.model, "forget") <= 0.05
    assert problem.accuracy(rule.model, "test_retain") >= 0.9
    assert (problem.accuracy(fixed.model, "forget") > 0.3) or (problem.accuracy(fixed.model, "test_retain") < 0.5)
    assert rule.info["alpha_reached"] and rule.info["alpha"] < rule.info["selection_ceiling"]
    trials = rule.info["alpha_trials"]
    assert trials[0][0] == pytest.approx(0.95 * rule.info["selection_ceiling"], rel=1e-3)


def test_forget_zero_needs_a_class_request(tiny_random: TinyProblem) -> None:
    with pytest.raises(ConfigError, match="needs a class request"):
        _ssd(tiny_random, alpha_rule="forget_zero")
