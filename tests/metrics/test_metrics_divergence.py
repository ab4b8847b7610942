"""Divergences, activation distance and ZRF against scipy and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as scipy_entropy

from obliviate.metrics import METRICS, EvalInputs, MissingInputError, Outputs, compute_metrics
from obliviate.metrics.divergence import (
    activation_distance,
    js_divergence,
    js_divergence_chundawat_compat,
    kl_divergence,
    mean_activation_distance,
    mean_js_divergence,
    zrf_chundawat_compat,
    zrf_score,
)


def _random_probs(n: int, k: int, seed: int, zeros: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(k, 0.5), size=n)
    if zeros:  # knock out some entries to exercise 0·log 0
        p[rng.random((n, k)) < 0.3] = 0.0
        p[:, 0] += 1e-3  # keep every row non-empty
        p /= p.sum(1, keepdims=True)
    return p


# -- pure functions against references ------------------------------------------------------------
@pytest.mark.parametrize("zeros", [False, True])
def test_js_matches_scipy_squared_distance(zeros: bool) -> None:
    p, q = _random_probs(50, 7, 0, zeros), _random_probs(50, 7, 1, zeros)
    ours = js_divergence(p, q).numpy()
    ref = jensenshannon(p, q, base=2, axis=1) ** 2  # scipy returns the square root (a distance)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    assert np.all((ours >= 0) & (ours <= 1))
    nats = js_divergence(p, q, base=math.e).numpy()
    np.testing.assert_allclose(nats, jensenshannon(p, q, axis=1) ** 2, rtol=1e-10, atol=1e-12)
    assert mean_js_divergence(p, q) == pytest.approx(float(ref.mean()), rel=1e-10)


@pytest.mark.parametrize("zeros", [False, True])
def test_kl_matches_scipy_entropy(zeros: bool) -> None:
    p = _random_probs(30, 5, 2, zeros)
    q = _random_probs(30, 5, 3)  # q strictly positive: KL finite
    np.testing.assert_allclose(kl_divergence(p, q).numpy(), scipy_entropy(p, q, base=2, axis=1), rtol=1e-10)
    np.testing.assert_allclose(kl_divergence(p, q, base=math.e).numpy(), scipy_entropy(p, q, axis=1), rtol=1e-10)


def test_zero_probabilities_give_exact_values_and_no_nan() -> None:
    assert float(js_divergence([1.0, 0.0], [0.0, 1.0])) == pytest.approx(1.0)  # disjoint: 1 bit
    assert float(js_divergence([1.0, 0.0, 0.0], [1.0, 0.0, 0.0])) == 0.0
    assert float(kl_divergence([1.0, 0.0], [0.5, 0.5])) == pytest.approx(1.0)
    assert math.isinf(float(kl_divergence([0.5, 0.5], [1.0, 0.0])))  # p > 0 = q
    both_zero = js_divergence([[0.5, 0.5, 0.0]], [[0.0, 1.0, 0.0]])
    assert not bool(torch.isnan(both_zero).any())
    # hand value: m = (1/4, 3/4, 0); ½[½log(½/¼) + ½log(½/¾)] + ½[log(1/¾)]
    hand = 0.5 * (0.5 * math.log2(2) + 0.5 * math.log2(2 / 3)) + 0.5 * math.log2(4 / 3)
    assert float(both_zero[0]) == pytest.approx(hand, rel=1e-12)


def test_single_class_is_zero_everywhere() -> None:
    one = torch.ones(4, 1, dtype=torch.float64)
    assert torch.equal(js_divergence(one, one), torch.zeros(4, dtype=torch.float64))
    assert torch.equal(kl_divergence(one, one), torch.zeros(4, dtype=torch.float64))
    assert mean_activation_distance(one, one) == 0.0
    assert zrf_score(one, one) == 1.0
    assert zrf_chundawat_compat(one, one) == 1.0


def test_empty_inputs_raise_clearly() -> None:
    empty = torch.zeros(0, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="empty"):
        mean_js_divergence(empty, empty)
    with pytest.raises(ValueError, match="empty"):
        mean_activation_distance(empty, empty)
    with pytest.raises(ValueError, match="non-empty"):
        js_divergence_chundawat_compat(empty, empty)


@pytest.mark.bad_input
def test_rejects_logits_and_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        js_divergence([2.0, 1.0, 0.5], [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="negative"):
        js_divergence([1.5, -0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="same shape"):
        js_divergence([[0.5, 0.5]], [[0.2, 0.3, 0.5]])
    with pytest.raises(ValueError, match="base"):
        js_divergence([0.5, 0.5], [0.5, 0.5], base=1.0)


def test_activation_distance_matches_numpy() -> None:
    p, q = _random_probs(40, 6, 4), _random_probs(40, 6, 5)
    np.testing.assert_allclose(activation_distance(p, q).numpy(), np.linalg.norm(p - q, axis=1), rtol=1e-12)
    assert float(activation_distance([1.0, 0.0], [0.0, 1.0])) == pytest.approx(math.sqrt(2))


# -- ZRF: textbook and the paper-code compatibility variant ---------------------------------------
P_HAND = [[0.5, 0.5]]
Q_HAND = [[0.9, 0.1]]


def test_compat_formula_pinned_by_hand_case() -> None:
    # m = (0.7, 0.3). Public code: ½[KL(m‖p) + KL(m‖q)] / K with natural logs, K = 2.
    kl_m_p = 0.7 * math.log(0.7 / 0.5) + 0.3 * math.log(0.3 / 0.5)
    kl_m_q = 0.7 * math.log(0.7 / 0.9) + 0.3 * math.log(0.3 / 0.1)
    hand = 0.5 * (kl_m_p + kl_m_q) / 2
    assert js_divergence_chundawat_compat(P_HAND, Q_HAND) == pytest.approx(hand, rel=1e-12)
    assert hand == pytest.approx(0.0589866, abs=1e-7)
    assert zrf_chundawat_compat(P_HAND, Q_HAND) == pytest.approx(1 - hand, rel=1e-12)


def test_compat_formula_equals_the_public_code_expression() -> None:
    # The repository's JSDiv: 0.5*F.kl_div(log p, m) + 0.5*F.kl_div(log q, m), reduction "mean".
    p = torch.as_tensor(_random_probs(64, 10, 6) * 0.98 + 0.002)
    q = torch.as_tensor(_random_probs(64, 10, 7) * 0.98 + 0.002)
    m = (p + q) / 2
    with pytest.warns(UserWarning):  # torch warns that "mean" is not the KL definition
        public = float(0.5 * F.kl_div(torch.log(p), m) + 0.5 * F.kl_div(torch.log(q), m))
    assert js_divergence_chundawat_compat(p, q) == pytest.approx(public, rel=1e-10)


def test_compat_differs_from_textbook_js() -> None:
    textbook_nats = float(js_divergence(P_HAND, Q_HAND, base=math.e)[0])
    hand_js = 0.5 * (0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3)) + 0.5 * (
        0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.3)
    )
    assert textbook_nats == pytest.approx(hand_js, rel=1e-12)  # 0.10175
    compat = js_divergence_chundawat_compat(P_HAND, Q_HAND)  # 0.05899
    assert abs(compat - textbook_nats) > 0.04
    # With many classes the /K squeezes the compat ZRF towards 1 whatever the models do.
    p, q = (
        torch.eye(100, dtype=torch.float64) * 0.99 + 0.0001,
        torch.full((100, 100), 0.01, dtype=torch.float64),
    )
    assert zrf_chundawat_compat(p, q) > 0.97
    assert zrf_score(p, q) < 0.5


def test_zrf_bounds() -> None:
    p = _random_probs(20, 4, 8)
    assert zrf_score(p, p) == 1.0
    assert zrf_score(np.eye(2)[[0, 1]], np.eye(2)[[1, 0]]) == 0.0  # one-hot, disjoint
    assert 0.0 <= zrf_score(p, _random_probs(20, 4, 9)) <= 1.0


# -- registered metrics ---------------------------------------------------------------------------
def _outputs(logits: torch.Tensor, labels: torch.Tensor) -> Outputs:
    return Outputs(logits.clone(), labels.clone())


def _inputs(unlearned_equals_retrained: bool = False, test_forget: bool = True) -> EvalInputs:
    g = torch.Generator().manual_seed(0)
    sizes = {
        "forget": 30,
        "retain": 60,
        "test": 40,
        "test_forget": 12 if test_forget else 0,
        "test_retain": 28,
    }
    labels = {s: torch.randint(0, 5, (n,), generator=g) for s, n in sizes.items()}
    logits = {
        r: {s: 3 * torch.randn(n, 5, generator=g) for s, n in sizes.items()}
        for r in ("unlearned", "original", "retrained", "random")
    }
    if unlearned_equals_retrained:
        logits["unlearned"] = logits["retrained"]
    outputs = {r: {s: _outputs(logits[r][s], labels[s]) for s in sizes} for r in logits}
    return EvalInputs(outputs, num_classes=5, forget_classes=(0,) if test_forget else (), seed=0)


def test_metric_keys_directions_and_reference_values() -> None:
    inputs = _inputs()
    values, directions = compute_metrics(["js_to_retrained", "activation_distance", "zrf", "zrf_compat"], inputs)
    for name in ("js_to_retrained", "activation_distance"):
        for s in ("forget", "test", "test_forget"):
            assert directions[f"{name}/{s}"] == "lower"
    u, r = inputs.out("forget"), inputs.out("forget", "retrained")
    assert values["js_to_retrained/forget"] == pytest.approx(
        float((jensenshannon(u.probs, r.probs, base=2, axis=1) ** 2).mean())
    )
    assert values["activation_distance/test"] == pytest.approx(
        float(np.linalg.norm(inputs.out("test").probs - inputs.out("test", "retrained").probs, axis=1).mean())
    )
    rand = inputs.out("forget", "random").probs
    assert values["zrf/forget"] == pytest.approx(1 - float((jensenshannon(u.probs, rand, base=2, axis=1) ** 2).mean()))
    assert values["zrf/forget@retrained"] == pytest.approx(zrf_score(r.probs, rand))
    assert directions["zrf/forget"] == "closest_to_retrained" and directions["zrf/forget@original"] == "info"
    assert values["zrf_compat/js_to_retrained/forget"] == pytest.approx(
        js_divergence_chundawat_compat(r.probs, u.probs)
    )
    assert directions["zrf_compat/js_to_retrained/forget"] == "lower"
    assert {k for k in values if k.startswith("zrf/")} == {
        "zrf/forget",
        "zrf/forget@retrained",
        "zrf/forget@original",
        "zrf/test_forget",
        "zrf/test_forget@retrained",
        "zrf/test_forget@original",
    }
    for k, v in values.items():
        assert math.isfinite(v), k


def test_model_identical_to_reference_scores_zero() -> None:
    values, _ = compute_metrics(["js_to_retrained", "activation_distance"], _inputs(unlearned_equals_retrained=True))
    assert values and all(v == 0.0 for v in values.values())
    zrf_values, _ = compute_metrics(["zrf", "zrf_compat"], _inputs(unlearned_equals_retrained=True))
    assert zrf_values["zrf/forget"] == zrf_values["zrf/forget@retrained"]


def test_empty_split_is_skipped_not_crashed() -> None:
    inputs = _inputs(test_forget=False)
    values, _ = compute_metrics(["js_to_retrained", "zrf"], inputs)
    assert "js_to_retrained/forget" in values and "js_to_retrained/test_forget" not in values
    assert "zrf/test_forget" not in values
    empty = EvalInputs(
        {
            "unlearned": {"forget": Outputs(torch.zeros(0, 3), torch.zeros(0))},
            "random": {"forget": Outputs(torch.zeros(0, 3), torch.zeros(0))},
        },
        num_classes=3,
    )
    with pytest.raises(MissingInputError, match="forget"):
        METRICS.get("zrf")().compute(empty)
    assert compute_metrics(["zrf"], empty)[0] == {}


def test_missing_reference_model_skips_metric() -> None:
    inputs = _inputs()
    no_random = EvalInputs({r: o for r, o in inputs.outputs.items() if r != "random"}, num_classes=5)
    assert compute_metrics(["zrf", "zrf_compat"], no_random)[0] == {}


def test_misaligned_rows_raise() -> None:
    inputs = _inputs()
    bad = dict(inputs.outputs)
    bad["retrained"] = {
        **inputs.outputs["retrained"],
        "forget": inputs.outputs["retrained"]["retain"],
    }
    with pytest.raises(ValueError, match="not on the same rows"):
        compute_metrics(["js_to_retrained"], EvalInputs(bad, num_classes=5))
