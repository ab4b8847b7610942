"""Per-example membership statistics pinned on constructed inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from obliviate.attacks.per_example import (
    auc,
    bootstrap,
    epsilon_per_example,
    lira_offline,
    logit_confidence,
    rmia_offline,
    tpr_at_fpr,
)


def test_logit_confidence_is_the_log_odds_of_the_true_class() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 7)) * 3
    y = rng.integers(0, 7, 50)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    py = p[np.arange(50), y]
    assert np.allclose(logit_confidence(z, y), np.log(py / (1 - py)), atol=1e-10)
    two = logit_confidence(np.stack([z, z + 1.0]), y)  # (Q, N): adding a constant changes nothing
    assert two.shape == (2, 50) and np.allclose(two[0], two[1])
    big = np.array([[1000.0, 0.0, -1000.0]])  # no overflow where p_y -> 1
    assert logit_confidence(big, np.array([0]))[0] == pytest.approx(1000.0)


def test_lira_recovers_a_known_shift_that_the_population_attack_misses() -> None:
    rng = np.random.default_rng(1)
    n, k, s, sigma = 2000, 32, 1.0, 1.0
    mu = rng.normal(0, 3, n)  # examples differ a lot in how confident any model is on them
    members = rng.random(n) < 0.5
    target = mu + s * members + rng.normal(0, sigma, n)
    refs = mu[None, :] + rng.normal(0, sigma, (k, n))
    scores = lira_offline(target, refs)
    truth = norm.cdf(s / (sigma * np.sqrt(2)))  # P(N(s, σ) > N(0, σ)) = Φ(s / σ√2) = 0.760
    got = auc(scores[members], scores[~members])
    assert got == pytest.approx(truth, abs=0.03)
    population = auc(target[members], target[~members])  # φ alone, no per-example reference
    assert population < got - 0.1
    # no shift: chance
    null = mu + rng.normal(0, sigma, n)
    s0 = lira_offline(null, refs)
    assert auc(s0[members], s0[~members]) == pytest.approx(0.5, abs=0.04)
    with pytest.raises(ValueError, match="at least 2 reference"):
        lira_offline(target, refs[:1])


def test_rmia_ranks_members_above_non_members() -> None:
    rng = np.random.default_rng(2)
    n, m, k = 1000, 1000, 8
    base = rng.uniform(0.2, 0.9, n)
    members = rng.random(n) < 0.5
    target = np.clip(base + 0.08 * members + rng.normal(0, 0.03, n), 1e-4, 1)
    refs = np.clip(base[None] + rng.normal(0, 0.03, (k, n)), 1e-4, 1)
    zb = rng.uniform(0.2, 0.9, m)
    z_t = np.clip(zb + rng.normal(0, 0.03, m), 1e-4, 1)
    z_r = np.clip(zb[None] + rng.normal(0, 0.03, (k, m)), 1e-4, 1)
    scores = rmia_offline(target, refs, z_t, z_r)
    assert scores.min() >= 0 and scores.max() <= 1
    got = auc(scores[members], scores[~members])
    population = auc(target[members], target[~members])  # p(x) alone, no reference models
    assert got > 0.65 and got > population + 0.08, (got, population)  # measured 0.722 vs 0.58
    null = rmia_offline(np.clip(base + rng.normal(0, 0.03, n), 1e-4, 1), refs, z_t, z_r)
    assert auc(null[members], null[~members]) == pytest.approx(0.5, abs=0.05)


def test_tpr_at_fpr_and_bootstrap_coverage() -> None:
    rng = np.random.default_rng(3)
    assert tpr_at_fpr(np.array([5.0, 6.0]), np.array([0.0, 1.0, 2.0]), 0.01) == 1.0
    same = tpr_at_fpr(rng.normal(size=20000), rng.normal(size=20000), 0.05)
    assert same == pytest.approx(0.05, abs=0.01)  # identical distributions: TPR = FPR
    truth = norm.cdf(0.5 / np.sqrt(2))
    hits = sum(
        (lambda v: v[1] <= truth <= v[2])(
            bootstrap(auc, rng.normal(0.5, 1, 200), rng.normal(0, 1, 200), n_boot=300, seed=t)
        )
        for t in range(80)
    )
    assert hits / 80 >= 0.88  # the 95 % interval covers the truth at about its rate


def test_epsilon_is_near_zero_for_identical_outputs_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(4)
    n = 200
    same = epsilon_per_example(rng.normal(size=(300, n)), rng.normal(size=(300, n)))
    shifted = epsilon_per_example(rng.normal(1.5, 1, (300, n)), rng.normal(size=(300, n)))
    assert same.mean() < 0.25 and shifted.mean() > 1.0 and (same >= 0).all()
    apart = epsilon_per_example(np.full((4, 3), 10.0), np.zeros((4, 3)))  # fully separable, 4 models each
    assert np.allclose(apart, np.log((1 - 0.05 - 1 / 5) / (1 / 5)))  # the clip bounds ε for few models
    with pytest.raises(ValueError, match="at least 2"):
        epsilon_per_example(np.zeros((1, 3)), np.zeros((2, 3)))
