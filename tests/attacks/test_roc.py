"""The one ROC AUC (obliviate.attacks.roc): equal to scikit-learn's, ties counted half, and what
every attack and audit in obliviate calls."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from obliviate.attacks import mia, roc
from obliviate.attacks.roc import auc


def test_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    a = np.round(rng.normal(0.5, 1, 40), 1)
    b = np.round(rng.normal(0.0, 1, 55), 1)
    want = roc_auc_score(np.r_[np.ones(40), np.zeros(55)], np.r_[a, b])
    assert auc(a, b) == pytest.approx(want, abs=1e-12)
    assert auc([3.0, 4.0], [1.0, 2.0]) == 1.0 and auc([1.0], [1.0]) == 0.5
    with pytest.raises(ValueError, match="members and non-members"):
        auc([], [1.0])


def test_every_attack_and_audit_uses_the_one_auc(monkeypatch: pytest.MonkeyPatch) -> None:
    """The population loss attack, the per-example attacks, the LLM membership metrics and the
    deletion evidence all compute their AUC through attacks.roc (no second implementation)."""
    import obliviate.attacks.per_example as per_example
    import obliviate.deletion.measurements as deletion_audit
    import obliviate.metrics.llm as llm_metrics

    assert per_example.auc is roc.auc and llm_metrics.auc is roc.auc
    assert deletion_audit.bootstrap_auc is roc.bootstrap_auc
    calls: list[int] = []
    real = roc.auc
    monkeypatch.setattr(roc, "auc", lambda a, b: calls.append(1) or real(a, b))
    assert mia.loss_auc([0.1, 0.2], [1.0, 2.0]) == 1.0 and calls
