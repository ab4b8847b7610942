"""TOFU's aggregate measures against scipy's statistics and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import hmean, ks_2samp

from obliviate.metrics.tofu import (
    answer_probability,
    forget_quality,
    model_utility,
    rouge_l_recall,
    truth_ratio_score,
    truth_ratios,
)


def test_truth_ratio_is_tofus_curr_stat() -> None:
    para = [1.0, 2.0]
    pert = [[2.0, 3.0, 4.0], [1.0, 1.0, 1.0]]
    r = truth_ratios(para, pert)
    assert r == pytest.approx([math.exp(2.0), math.exp(-1.0)])
    # forget: mean(min(R, 1/R)); elsewhere: mean(max(0, 1 - 1/R))
    assert truth_ratio_score(r, forget=True) == pytest.approx((math.exp(-2.0) + math.exp(-1.0)) / 2)
    assert truth_ratio_score(r, forget=False) == pytest.approx((1 - math.exp(-2.0) + 0.0) / 2)
    with pytest.raises(ValueError, match="one row per paraphrased loss"):
        truth_ratios([1.0], [[1.0], [2.0]])


def test_forget_quality_is_the_ks_p_value() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(0, 1, 40), rng.lognormal(0.5, 1, 40)
    p, stat = forget_quality(a, b)
    ref = ks_2samp(a, b)
    assert p == pytest.approx(ref.pvalue) and stat == pytest.approx(ref.statistic)
    assert forget_quality(a, a)[0] == pytest.approx(1.0)  # the same distribution: cannot be told apart
    with pytest.raises(ValueError, match="at least one forget pair"):
        forget_quality([], a)


def test_probability_rouge_and_utility() -> None:
    assert answer_probability([0.0, math.log(2)]) == pytest.approx(0.75)
    # the true answer's share among true and perturbed: 1 / (1 + 0.5 + 0.5)
    assert answer_probability([0.0], [[math.log(2), math.log(2)]]) == pytest.approx(0.5)
    rec = rouge_l_recall(
        ["Paris is the capital.", "The capital of France is Paris."], ["The capital of France is Paris."] * 2
    )
    assert rec == pytest.approx([2 / 6, 1.0])  # LCS "the capital" of 6 reference tokens; the answer itself
    vals = [0.9, 0.5, 0.7, 0.2]
    assert model_utility(vals) == pytest.approx(hmean(vals))
    assert model_utility([0.9, 0.0]) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        model_utility([-0.1])
