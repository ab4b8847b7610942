"""Membership-inference attacks and the privacy metrics, against scikit-learn, scipy and hand values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_entropy
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.svm import SVC

from obliviate.attacks import (
    FeatureAttack,
    balanced_rows,
    best_threshold_accuracy,
    confidence,
    entropy,
    entropy_attack,
    loss_auc,
    mia_efficacy,
    modified_entropy,
    svc_attack,
)
from obliviate.attacks.per_example import matched_nonmembers
from obliviate.metrics import EvalInputs, Outputs, compute_metrics


def _peaked(n: int, k: int, sharpness: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Softmax outputs whose true-class logit is raised by ``sharpness`` (members: large)."""
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), labels] += sharpness
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), labels


# -- features ------------------------------------------------------------------------------------
def test_features_against_references_and_hand_values() -> None:
    rng = np.random.default_rng(0)
    p, y = _peaked(20, 5, 2.0, rng)
    np.testing.assert_allclose(entropy(p), scipy_entropy(p, axis=1), rtol=1e-12)
    np.testing.assert_allclose(confidence(p, y), p[np.arange(20), y])
    assert entropy([[1.0, 0.0, 0.0]])[0] == 0.0  # 0·log 0 = 0
    # Song & Mittal: −(1 − p_y) ln p_y − Σ_{c≠y} p_c ln(1 − p_c)
    hand = -(0.3 * math.log(0.7)) - (0.2 * math.log(0.8) + 0.1 * math.log(0.9))
    assert modified_entropy([[0.7, 0.2, 0.1]], [0])[0] == pytest.approx(hand, rel=1e-12)
    assert modified_entropy([[1.0, 0.0]], [0])[0] == pytest.approx(0.0, abs=1e-12)  # confident, right
    assert modified_entropy([[0.0, 1.0]], [0])[0] > 60  # confident, wrong: the log floor keeps it finite
    with pytest.raises(ValueError, match="labels must lie"):
        confidence([[0.5, 0.5]], [2])


# -- loss-threshold attack -------------------------------------------------------------------------
def test_loss_auc_hand_cases_and_sklearn() -> None:
    # member losses [0.1, 0.2] vs non-member [0.3, 0.05]: 2 of 4 pairs ranked right.
    assert loss_auc([0.1, 0.2], [0.3, 0.05]) == pytest.approx(0.5)
    assert loss_auc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert loss_auc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert loss_auc([0.1], [0.1]) == 0.5  # ties count one half
    rng = np.random.default_rng(1)
    a, b = rng.exponential(0.5, 300), rng.exponential(1.0, 200)
    y = np.r_[np.ones(300), np.zeros(200)]
    assert loss_auc(a, b) == pytest.approx(roc_auc_score(y, -np.r_[a, b]))
    # pairwise count, the AUC's definition
    wins = (a[:, None] < b[None, :]).mean() + 0.5 * (a[:, None] == b[None, :]).mean()
    assert loss_auc(a, b) == pytest.approx(wins)
    assert best_threshold_accuracy([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert 0.5 <= best_threshold_accuracy(a, b) <= 1.0


def test_loss_auc_chance_when_same_distribution_and_one_when_separable() -> None:
    rng = np.random.default_rng(2)
    same = loss_auc(rng.exponential(1.0, 4000), rng.exponential(1.0, 4000))
    assert abs(same - 0.5) < 0.03
    assert loss_auc(rng.uniform(0, 1, 500), rng.uniform(2, 3, 500)) == 1.0
    with pytest.raises(ValueError, match="members and non-members"):
        loss_auc([], [0.1])
    with pytest.raises(ValueError, match="finite"):
        loss_auc([math.nan], [0.1])


# -- fitted attacks --------------------------------------------------------------------------------
def test_balanced_rows_are_seeded_and_capped() -> None:
    a1, b1 = balanced_rows(1000, 300, 200, seed=0)
    a2, b2 = balanced_rows(1000, 300, 200, seed=0)
    a3, _ = balanced_rows(1000, 300, 200, seed=1)
    assert len(a1) == len(b1) == 200
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2) and not np.array_equal(a1, a3)
    assert len(balanced_rows(1000, 300, None, seed=0)[0]) == 300
    with pytest.raises(ValueError, match="members and non-members"):
        balanced_rows(0, 10, None, seed=0)


def test_entropy_attack_equals_sklearn_logistic_regression() -> None:
    rng = np.random.default_rng(3)
    pin, yin = _peaked(400, 10, 4.0, rng)
    pout, yout = _peaked(300, 10, 1.0, rng)
    pf, _ = _peaked(150, 10, 2.5, rng)
    attack = entropy_attack(max_per_side=250, seed=7).fit(pin, yin, pout, yout)
    rows_in, rows_out = balanced_rows(400, 300, 250, seed=7)
    x = np.r_[scipy_entropy(pin[rows_in], axis=1), scipy_entropy(pout[rows_out], axis=1)].reshape(-1, 1)
    ref = LogisticRegression(class_weight="balanced").fit(x, np.r_[np.ones(250), np.zeros(250)])
    np.testing.assert_array_equal(attack.predict(pf), ref.predict(scipy_entropy(pf, axis=1).reshape(-1, 1)))
    assert attack.member_rate(pf) == pytest.approx(ref.predict(scipy_entropy(pf, axis=1).reshape(-1, 1)).mean())


def test_svc_attack_equals_sklearn_svc_on_confidence() -> None:
    rng = np.random.default_rng(4)
    pin, yin = _peaked(300, 10, 4.0, rng)
    pout, yout = _peaked(300, 10, 1.0, rng)
    pf, yf = _peaked(100, 10, 2.5, rng)
    attack = svc_attack("confidence", max_per_side=None, seed=0).fit(pin, yin, pout, yout)
    x = np.r_[pin[np.arange(300), yin], pout[np.arange(300), yout]].reshape(-1, 1)
    ref = SVC(C=3, gamma="auto", kernel="rbf").fit(x, np.r_[np.ones(300), np.zeros(300)])
    expected = 1 - ref.predict(pf[np.arange(100), yf].reshape(-1, 1)).mean()
    assert mia_efficacy(attack, pf, yf) == pytest.approx(expected)


@pytest.mark.parametrize("feature,classifier", [("entropy", "logreg"), ("confidence", "svc"), ("m_entropy", "svc")])
def test_attack_separable_and_chance(feature: str, classifier: str) -> None:
    rng = np.random.default_rng(5)
    attack = FeatureAttack(feature, classifier, max_per_side=400, seed=0)  # type: ignore[arg-type]
    # Separable: members near one-hot on their label, non-members flat.
    pin, yin = _peaked(400, 10, 12.0, rng)
    pout, yout = _peaked(400, 10, 0.0, rng)
    attack.fit(pin, yin, pout, yout)
    new_in, new_yin = _peaked(300, 10, 12.0, rng)
    new_out, new_yout = _peaked(300, 10, 0.0, rng)
    assert attack.member_rate(new_in, new_yin) > 0.97
    assert attack.member_rate(new_out, new_yout) < 0.03
    # Same distribution: on fresh rows the attack's advantage (TPR − FPR) is about zero.
    a, ya = _peaked(400, 10, 2.0, rng)
    b, yb = _peaked(400, 10, 2.0, rng)
    attack.fit(a, ya, b, yb)
    fresh_in, fyin = _peaked(2000, 10, 2.0, rng)
    fresh_out, fyout = _peaked(2000, 10, 2.0, rng)
    advantage = attack.member_rate(fresh_in, fyin) - attack.member_rate(fresh_out, fyout)
    assert abs(advantage) < 0.06


@pytest.mark.bad_input
def test_attack_errors() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        entropy_attack().predict([[0.5, 0.5]])
    with pytest.raises(ValueError, match="feature"):
        FeatureAttack("logits").fit([[0.5, 0.5]], None, [[0.5, 0.5]], None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="C must be"):
        FeatureAttack("entropy", C=math.nan).fit([[0.5, 0.5]], None, [[0.5, 0.5]], None)
    with pytest.raises(ValueError, match="needs the true labels"):
        svc_attack("confidence").fit([[0.5, 0.5]], None, [[0.5, 0.5]], None)
    with pytest.raises(ValueError, match="members and non-members"):
        entropy_attack().fit(np.zeros((0, 2)), None, [[0.5, 0.5]], None)
    fitted = entropy_attack().fit([[0.9, 0.1], [1.0, 0.0]], None, [[0.5, 0.5], [0.6, 0.4]], None)
    with pytest.raises(ValueError, match="empty"):
        fitted.predict(np.zeros((0, 2)))


# -- as metrics ------------------------------------------------------------------------------------
def _outputs_from(probs: np.ndarray, labels: np.ndarray) -> Outputs:
    return Outputs(torch.log(torch.as_tensor(probs).clamp_min(1e-12)), torch.as_tensor(labels))


def _privacy_inputs(forget_like_members: bool, seed: int = 0, class_request: bool = False) -> EvalInputs:
    """Unlearned model: retain outputs sharp (members), test flat; forget sharp or flat.
    Retrained model: forget looks like test (it never saw it)."""
    rng = np.random.default_rng(seed)
    sharp, flat = 6.0, 1.0

    def split(n: int, s: float) -> Outputs:
        return _outputs_from(*_peaked(n, 10, s, rng))

    def model(forget_sharpness: float) -> dict[str, Outputs]:
        # Random requests have no forget-side test rows; class requests do.
        return {
            "retain": split(600, sharp),
            "test": split(400, flat),
            "forget": split(200, forget_sharpness),
            "test_forget": split(100 if class_request else 0, flat),
        }

    outputs = {"unlearned": model(sharp if forget_like_members else flat), "retrained": model(flat)}
    return EvalInputs(outputs, num_classes=10, forget_classes=(0,) if class_request else (), seed=seed)


def test_privacy_metric_keys_and_directions() -> None:
    values, directions = compute_metrics(["mia_entropy", "mia_loss", "mia_efficacy"], _privacy_inputs(True))
    expected = {
        "mia_entropy/forget_member_rate",
        "mia_loss/auc",
        "mia_loss/best_balanced_acc",
        "mia_efficacy/confidence",
        "mia_efficacy/entropy",
        "mia_efficacy/m_entropy",
    }
    intervals = {"mia_loss/auc_lo", "mia_loss/auc_hi"}
    assert set(values) == (expected | intervals) | {f"{k}@retrained" for k in expected | intervals}
    for k in expected:
        assert directions[k] == "closest_to_retrained" and directions[f"{k}@retrained"] == "info"
    for k in intervals:
        assert directions[k] == "info"
    assert values["mia_loss/auc_lo"] < values["mia_loss/auc"] <= values["mia_loss/auc_hi"]
    # The unlearned model still "remembers" the forget set; the retrained one does not.
    assert values["mia_entropy/forget_member_rate"] > 0.9
    assert values["mia_entropy/forget_member_rate@retrained"] < 0.1
    assert values["mia_efficacy/confidence"] < 0.1
    assert values["mia_efficacy/confidence@retrained"] > 0.9
    assert values["mia_loss/auc"] > 0.95 and abs(values["mia_loss/auc@retrained"] - 0.5) < 0.1


def test_privacy_metrics_match_direct_attacks_and_are_seeded() -> None:
    inputs = _privacy_inputs(False, seed=3)
    v1, _ = compute_metrics(["mia_entropy", "mia_efficacy"], inputs)
    v2, _ = compute_metrics(["mia_entropy", "mia_efficacy"], inputs)
    assert v1 == v2
    r, t, f = (inputs.out(s) for s in ("retain", "test", "forget"))
    direct = entropy_attack(seed=3).fit(r.probs, None, t.probs, None).member_rate(f.probs)
    assert v1["mia_entropy/forget_member_rate"] == direct
    svc = svc_attack("m_entropy", seed=3).fit(r.probs, r.labels, t.probs, t.labels)
    assert v1["mia_efficacy/m_entropy"] == mia_efficacy(svc, f.probs, f.labels)


def test_loss_audit_uses_forget_side_test_rows_when_there_are_some() -> None:
    inputs = _privacy_inputs(True, class_request=True)
    values, _ = compute_metrics(["mia_loss"], inputs)
    f, tf = inputs.out("forget"), inputs.out("test_forget")
    rows = torch.as_tensor(matched_nonmembers(f.labels.numpy(), tf.labels.numpy(), seed=0))
    assert values["mia_loss/auc"] == loss_auc(f.loss, tf.loss[rows])
    random_request = _privacy_inputs(True, class_request=False)
    values, _ = compute_metrics(["mia_loss"], random_request)
    f, t = random_request.out("forget"), random_request.out("test")
    rows = torch.as_tensor(matched_nonmembers(f.labels.numpy(), t.labels.numpy(), seed=0))
    assert values["mia_loss/auc"] == loss_auc(f.loss, t.loss[rows])
    # the held-out rows follow the forget set's class proportions (within one row per class)
    fc = np.bincount(f.labels.numpy(), minlength=10) / len(f)
    tc = np.bincount(t.labels[rows].numpy(), minlength=10) / len(rows)
    assert np.abs(fc - tc).max() < 10 / len(rows) + 1 / len(f)


def test_privacy_metrics_skip_without_splits() -> None:
    inputs = _privacy_inputs(True)
    no_test = EvalInputs(
        {r: {s: o for s, o in outs.items() if s != "test"} for r, outs in inputs.outputs.items()},
        num_classes=10,
    )
    values, _ = compute_metrics(["mia_entropy", "mia_efficacy", "mia_loss"], no_test)
    assert values == {}
