"""ROC statistics of a membership score, shared by every attack and audit in obliviate.

:func:`auc` is the one ROC AUC of "higher score means member" — the Mann-Whitney U statistic with
average ranks for ties, equal to ``sklearn.metrics.roc_auc_score`` — used by the population
loss attack (:func:`obliviate.attacks.mia.loss_auc`), the per-example attacks, the LLM membership
metrics and the deletion evidence. :func:`tpr_at_fpr` is the low-FPR operating point of Carlini
et al. (S&P 2022); :func:`bootstrap` the percentile interval of any two-sample statistic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import rankdata


def auc(member_scores: Sequence[float] | np.ndarray, nonmember_scores: Sequence[float] | np.ndarray) -> float:
    """ROC AUC of "higher score ⇒ member" (ties count half)."""
    a = np.asarray(member_scores, dtype=np.float64)
    b = np.asarray(nonmember_scores, dtype=np.float64)
    m, n = len(a), len(b)
    if m == 0 or n == 0:
        raise ValueError(f"the AUC needs members and non-members, got {m} and {n}")
    ranks = rankdata(np.concatenate([a, b]))
    return float((ranks[:m].sum() - m * (m + 1) / 2) / (m * n))


def tpr_at_fpr(member_scores: np.ndarray, nonmember_scores: np.ndarray, fpr: float) -> float:
    """The true-positive rate at the threshold whose false-positive rate is at most ``fpr``."""
    if not 0 < fpr < 1:
        raise ValueError(f"fpr must lie in (0, 1), got {fpr}")
    nm = np.sort(np.asarray(nonmember_scores, dtype=np.float64))[::-1]
    k = int(np.floor(fpr * len(nm)))  # at most k non-members may score above the threshold
    thr = nm[k] if k < len(nm) else -np.inf
    return float((np.asarray(member_scores) > thr).mean())


def bootstrap(
    stat: Callable[[np.ndarray, np.ndarray], float],
    members: np.ndarray,
    nonmembers: np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(value, low, high)``: a two-sample statistic with its percentile-bootstrap interval."""
    rng = np.random.default_rng(seed)
    value = stat(members, nonmembers)
    m, n = len(members), len(nonmembers)
    boots = np.array([stat(members[rng.integers(0, m, m)], nonmembers[rng.integers(0, n, n)]) for _ in range(n_boot)])
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(value), float(lo), float(hi)


def bootstrap_auc(
    member_scores: np.ndarray, nonmember_scores: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """``(auc, low, high)``: the AUC and its percentile-bootstrap interval, both groups resampled
    with replacement ``n_boot`` times from ``seed``."""
    return bootstrap(auc, member_scores, nonmember_scores, n_boot=n_boot, level=level, seed=seed)


__all__ = ["auc", "bootstrap", "bootstrap_auc", "tpr_at_fpr"]
