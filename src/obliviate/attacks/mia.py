"""Membership-inference attacks on classifier outputs: fit on members/non-members, score a split.

"MIA" names several different procedures in the unlearning literature; each one here is named
after the paper whose public code it follows, so a reported number says which attack made it:

* :func:`entropy_attack` — logistic regression on the entropy of the softmax output, fitted on
  retain-train (members) against test (non-members), ``class_weight="balanced"``; the score is the
  fraction of forget-train rows predicted *member* (Foster et al., AAAI 2024, SSD,
  ``get_membership_attack_prob``; the same features and score as Chundawat et al., AAAI 2023 "Can
  Bad Teaching Induce Forgetting?", whose repository fits ``SVC(C=3)`` there instead, with the
  logistic regression commented out: ``svc_attack("entropy")`` is that variant).
* :func:`svc_attack` — an RBF support-vector classifier (``C=3``, ``gamma="auto"``) on one output
  feature (``confidence`` p_y, ``entropy``, or Song & Mittal's ``m_entropy``), fitted on retain
  (shadow members) against test (shadow non-members); *MIA-efficacy* is the fraction of forget
  rows predicted *non-member* (Jia et al., NeurIPS 2023 "Model Sparsity Can Simplify Machine
  Unlearning", ``SVC_MIA``; Fan et al., ICLR 2024 SalUn, which reports the ``confidence`` one).
* :func:`loss_auc` / :func:`best_threshold_accuracy` — the threshold attack on the per-sample
  loss (Yeom et al., CSF 2018): ROC AUC of "lower loss ⇒ member" between forget-train and
  held-out rows, and the balanced accuracy of the best single threshold.

Inputs are plain arrays (probabilities ``(N, K)``, labels ``(N,)``, losses ``(N,)``), numpy or
torch; nothing here knows about models or metrics. Randomness (subsampling) only from ``seed``.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import numpy as np

FEATURES = ("entropy", "confidence", "m_entropy")
CLASSIFIERS = ("logreg", "svc")
# Below this probability, log(p) is taken at the floor (Song & Mittal's modified entropy needs
# log(1 - p) and log(p) at p = 0 or 1, which are infinite).
_LOG_FLOOR = 1e-30

ArrayLike = Any  # numpy array, torch tensor or nested sequence


def _to_numpy(x: ArrayLike, dtype: type = np.float64) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _probs_labels(
    probs: ArrayLike, labels: ArrayLike | None, need_labels: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    p = _to_numpy(probs)
    if p.ndim != 2:
        raise ValueError(f"probabilities must have shape (N, K), got {p.shape}")
    if not np.all(np.isfinite(p)) or (p.size and p.min() < 0):
        raise ValueError("probabilities must be finite and non-negative")
    if labels is None:
        if need_labels:
            raise ValueError("this feature needs the true labels")
        return p, None
    y = _to_numpy(labels, np.int64)
    if y.shape != (len(p),):
        raise ValueError(f"labels must have shape ({len(p)},), got {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must lie in [0, {p.shape[1] - 1}], got range [{y.min()}, {y.max()}]")
    return p, y


# -- per-sample features ---------------------------------------------------------------------------
def entropy(probs: ArrayLike) -> np.ndarray:
    """Shannon entropy (nats) of each row, with 0·log 0 = 0. Shape (N,)."""
    p, _ = _probs_labels(probs, None, need_labels=False)
    logp = np.log(np.where(p > 0, p, 1.0))
    return -(p * logp).sum(axis=1)


def confidence(probs: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """Probability of the true class, p_y. Shape (N,)."""
    p, y = _probs_labels(probs, labels, need_labels=True)
    y = cast(np.ndarray, y)
    return p[np.arange(len(p)), y]


def modified_entropy(probs: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """Song & Mittal (USENIX Security 2021) modified entropy, Mentr(p, y). Shape (N,).

    Mentr = −(1 − p_y)·log p_y − Σ_{c≠y} p_c·log(1 − p_c): low for confident correct predictions,
    high for confident wrong ones (unlike the entropy, it uses the label). Logarithms are floored at
    1e-30. (SalUn's public ``m_entropy`` indexes ``[:, labels]`` and takes ``log p`` where
    ``log(1 − p)`` is meant; this is the published definition.)
    """
    p, y = _probs_labels(probs, labels, need_labels=True)
    y = cast(np.ndarray, y)
    rows = np.arange(len(p))
    log_p = np.log(np.maximum(p, _LOG_FLOOR))
    log_not_p = np.log(np.maximum(1.0 - p, _LOG_FLOOR))
    terms = p * log_not_p  # p_c·log(1 − p_c) for every class c ≠ y
    terms[rows, y] = (1.0 - p[rows, y]) * log_p[rows, y]  # (1 − p_y)·log p_y for the true class
    return -terms.sum(axis=1)


def attack_feature(kind: str, probs: ArrayLike, labels: ArrayLike | None = None) -> np.ndarray:
    """One scalar feature per sample, shape (N, 1): ``entropy``, ``confidence`` or ``m_entropy``."""
    if kind == "entropy":
        f = entropy(probs)
    elif kind == "confidence":
        f = confidence(probs, labels)
    elif kind == "m_entropy":
        f = modified_entropy(probs, labels)
    else:
        raise ValueError(f"unknown attack feature {kind!r}; allowed: {FEATURES}")
    return f.reshape(-1, 1)


# -- subsampling -----------------------------------------------------------------------------------
def subsample(n: int, k: int, seed: int) -> np.ndarray:
    """Sorted positions of ``k`` of ``n`` rows, drawn from ``seed`` (all rows if k ≥ n)."""
    if n < 0 or k < 0:
        raise ValueError(f"sizes must be >= 0, got n={n}, k={k}")
    if k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def balanced_rows(
    n_members: int, n_nonmembers: int, max_per_side: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Equal-sized seeded subsets of members and non-members, ``min(n_m, n_n, cap)`` each."""
    if n_members == 0 or n_nonmembers == 0:
        raise ValueError(f"an attack needs members and non-members, got {n_members} and {n_nonmembers}")
    if max_per_side is not None and max_per_side < 1:
        raise ValueError(f"max_per_side must be >= 1 or None, got {max_per_side}")
    k = min(n_members, n_nonmembers, max_per_side or max(n_members, n_nonmembers))
    # Two different streams so that the member draw does not mirror the non-member draw.
    return subsample(n_members, k, seed * 2 + 0), subsample(n_nonmembers, k, seed * 2 + 1)


# -- fitted attacks --------------------------------------------------------------------------------
class FeatureAttack:
    """A binary classifier (1 = member) on one scalar output feature, scikit-learn style.

    The constructor stores parameters only; :meth:`fit` sets ``clf_`` and ``n_fit_`` (rows/side).

    Args:
        feature: ``entropy``, ``confidence`` or ``m_entropy`` (see :func:`attack_feature`).
        classifier: ``logreg`` (``LogisticRegression(class_weight="balanced")``) or ``svc``
            (``SVC(kernel="rbf", C=C, gamma="auto")``).
        C: inverse regularisation strength of either classifier.
        max_per_side: members and non-members are subsampled (seeded) to this many rows each.
        seed: drives the subsampling; 0 is a seed like any other.
    """

    def __init__(
        self,
        feature: Literal["entropy", "confidence", "m_entropy"] = "entropy",
        classifier: Literal["logreg", "svc"] = "logreg",
        *,
        C: float = 1.0,
        max_per_side: int | None = 10_000,
        seed: int = 0,
    ) -> None:
        self.feature = feature
        self.classifier = classifier
        self.C = C
        self.max_per_side = max_per_side
        self.seed = seed

    def _validate(self) -> None:
        if self.feature not in FEATURES:
            raise ValueError(f"FeatureAttack.feature must be one of {FEATURES}, got {self.feature!r}")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"FeatureAttack.classifier must be one of {CLASSIFIERS}, got {self.classifier!r}")
        if not (isinstance(self.C, (int, float)) and np.isfinite(self.C) and self.C > 0):
            raise ValueError(f"FeatureAttack.C must be a finite number > 0, got {self.C!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"FeatureAttack.seed must be a non-negative integer, got {self.seed!r}")

    def _make_classifier(self) -> Any:
        if self.classifier == "svc":
            from sklearn.svm import SVC

            return SVC(C=self.C, gamma="auto", kernel="rbf")
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.C, class_weight="balanced", solver="lbfgs")

    def fit(
        self,
        member_probs: ArrayLike,
        member_labels: ArrayLike | None,
        nonmember_probs: ArrayLike,
        nonmember_labels: ArrayLike | None,
    ) -> FeatureAttack:
        """Fit on members (label 1) against non-members (label 0), balanced by subsampling."""
        self._validate()
        x_in = attack_feature(self.feature, member_probs, member_labels)
        x_out = attack_feature(self.feature, nonmember_probs, nonmember_labels)
        rows_in, rows_out = balanced_rows(len(x_in), len(x_out), self.max_per_side, self.seed)
        x = np.concatenate([x_in[rows_in], x_out[rows_out]])
        y = np.concatenate([np.ones(len(rows_in)), np.zeros(len(rows_out))])
        self.clf_ = self._make_classifier().fit(x, y)
        self.n_fit_ = len(rows_in)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "clf_"):
            raise RuntimeError("this attack is not fitted yet: call fit(members..., non_members...) first")

    def predict(self, probs: ArrayLike, labels: ArrayLike | None = None) -> np.ndarray:
        """1 where a row is predicted member, 0 where non-member. Shape (N,)."""
        self._check_fitted()
        x = attack_feature(self.feature, probs, labels)
        if len(x) == 0:
            raise ValueError("cannot score an empty split")
        return self.clf_.predict(x).astype(np.int64)

    def member_rate(self, probs: ArrayLike, labels: ArrayLike | None = None) -> float:
        """Fraction of rows predicted member."""
        return float(self.predict(probs, labels).mean())


def entropy_attack(*, max_per_side: int | None = 10_000, seed: int = 0) -> FeatureAttack:
    """The bad-teacher / SSD attack: balanced logistic regression on the output entropy."""
    return FeatureAttack("entropy", "logreg", C=1.0, max_per_side=max_per_side, seed=seed)


def svc_attack(
    feature: Literal["entropy", "confidence", "m_entropy"] = "confidence",
    *,
    max_per_side: int | None = 2_000,
    seed: int = 0,
) -> FeatureAttack:
    """Jia et al. (2023) / SalUn ``SVC_MIA``: ``SVC(C=3, gamma="auto")`` on one output feature.

    The public code uses the whole test set (10,000 rows) and as many retain rows; an RBF SVC
    costs O(n²), so the default here caps each side at 2,000 seeded rows (≈0.5 s per fit on a CPU).
    """
    return FeatureAttack(feature, "svc", C=3.0, max_per_side=max_per_side, seed=seed)


def mia_efficacy(attack: FeatureAttack, probs: ArrayLike, labels: ArrayLike | None) -> float:
    """SalUn's MIA-efficacy: fraction of (forget) rows the fitted attack predicts *non-member*."""
    return 1.0 - attack.member_rate(probs, labels)


# -- threshold attack on the loss ------------------------------------------------------------------
def _two_samples(member_scores: ArrayLike, nonmember_scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a, b = _to_numpy(member_scores).ravel(), _to_numpy(nonmember_scores).ravel()
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"a threshold attack needs members and non-members, got {len(a)} and {len(b)}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("losses must be finite")
    return a, b


def loss_auc(member_loss: ArrayLike, nonmember_loss: ArrayLike) -> float:
    """ROC AUC of the score −loss for separating members (1) from non-members (0).

    0.5: indistinguishable; 1: every member has a lower loss than every non-member; below 0.5:
    the "members" look *less* familiar than held-out data (:func:`obliviate.attacks.roc.auc`).
    """
    from .roc import auc

    a, b = _two_samples(member_loss, nonmember_loss)
    return auc(-a, -b)


def best_threshold_accuracy(member_loss: ArrayLike, nonmember_loss: ArrayLike) -> float:
    """Balanced accuracy of the best rule "loss ≤ t ⇒ member", t chosen on these same rows.

    max over t of (TPR + TNR)/2; it is ≥ 0.5 by construction (an optimistic, in-sample number).
    """
    from sklearn.metrics import roc_curve

    a, b = _two_samples(member_loss, nonmember_loss)
    y = np.concatenate([np.ones(len(a)), np.zeros(len(b))])
    fpr, tpr, _ = roc_curve(y, -np.concatenate([a, b]))
    return float(np.max((tpr + 1.0 - fpr) / 2.0))
