"""Per-example membership statistics against reference models — the audits the field believes.

Population attacks (``mia.py``) score a forget *set*; these score each example against the
distribution of its own statistic under models that never saw it. Inputs are plain arrays; the
caller trains the reference models (retrained on the retain set with different seeds) and runs
every model on the examples once.

* :func:`logit_confidence` — φ = log(p_y / (1 − p_y)), computed stably from logits as
  z_y − logsumexp_{k≠y} z_k (Carlini et al., "Membership Inference Attacks From First
  Principles", S&P 2022, §IV-B); one column per query (the image and its mirror).
* :func:`lira_offline` — offline LiRA (ibid., Algorithm 1 with only OUT models and a *global*
  variance): per example, μ_out from the K reference models; one σ² pooled over every example
  and query; score = mean over queries of log Φ((φ − μ_out)/σ) — large when φ is higher than a
  model that never saw the example would give it.
* :func:`rmia_offline` — RMIA's offline test (Zarifzadeh et al., "Low-Cost High-Power Membership
  Inference Attacks", ICML 2024, §3): Pr(x)/Pr(z) likelihood ratios against a population of
  non-members z, with Pr(x) ≈ ½((1 + a)·mean_OUT p(x) + (1 − a)) from OUT models only;
  score(x) = share of z with LR(x, z) > γ.
* :func:`auc`, :func:`tpr_at_fpr` with :func:`bootstrap` intervals — the figures reported;
  :func:`reference_attacks` computes all of them for one model, :func:`verdict` words them.
* :func:`matched_nonmembers` — held-out rows drawn in the forget set's class proportions, so
  that an attack measures membership and not how hard a class is.
* :func:`epsilon_per_example` — the NeurIPS 2023 machine-unlearning challenge's estimate: for
  each example, the outputs of U unlearned and R retrained models; over every threshold t,
  FPR and FNR of "unlearned if s > t", and ε = max_t max(log((1 − δ − FPR)/FNR),
  log((1 − δ − FNR)/FPR)) (the (ε, δ) hypothesis-testing region of Kairouz et al., ICML 2015,
  as the challenge scores it), rates clipped to [1/(n+1), 1] so that few models stay finite.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm

from .roc import auc, bootstrap, tpr_at_fpr


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """φ = z_y − logsumexp_{k≠y} z_k for logits ``(N, K)`` (or ``(Q, N, K)``: one per query);
    equal to log(p_y / (1 − p_y)) without forming p."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    idx = np.broadcast_to(y[..., None], z.shape[:-1] + (1,))
    zy = np.take_along_axis(z, idx, axis=-1)[..., 0]
    others = z.copy()
    np.put_along_axis(others, idx, -np.inf, axis=-1)
    return zy - logsumexp(others, axis=-1)


def lira_offline(target: np.ndarray, reference_out: np.ndarray, min_std: float = 1e-6) -> np.ndarray:
    """Offline LiRA scores for ``target`` φ of shape ``(N,)`` or ``(N, Q)`` against
    ``reference_out`` φ of shape ``(K, N)`` or ``(K, N, Q)`` (K models that never saw the examples)."""
    t = np.asarray(target, dtype=np.float64)
    ref = np.asarray(reference_out, dtype=np.float64)
    if t.ndim == 1:
        t, ref = t[:, None], ref[..., None]
    if ref.ndim != 3 or ref.shape[1:] != t.shape:
        raise ValueError(f"reference φ must be (K, N[, Q]) matching target {t.shape}, got {ref.shape}")
    if ref.shape[0] < 2:
        raise ValueError(f"offline LiRA needs at least 2 reference models, got {ref.shape[0]}")
    mu = ref.mean(axis=0)  # (N, Q)
    sigma = max(float(np.sqrt(((ref - mu) ** 2).sum() / (ref.size - mu.size))), min_std)  # pooled over N, Q
    return norm.logcdf((t - mu) / sigma).mean(axis=1)


def rmia_offline(
    target_p: np.ndarray,
    reference_p: np.ndarray,
    population_target_p: np.ndarray,
    population_reference_p: np.ndarray,
    *,
    a: float = 0.3,
    gamma: float = 1.0,
) -> np.ndarray:
    """RMIA offline scores. ``target_p`` (N,): the target model's p(y|x); ``reference_p`` (K, N): the
    OUT models'; the same for the population of non-members z (M,) and (K, M)."""
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"RMIA's a must lie in [0, 1], got {a}")

    def pr(ref: np.ndarray) -> np.ndarray:
        return 0.5 * ((1 + a) * np.asarray(ref, dtype=np.float64).mean(axis=0) + (1 - a))

    lr_x = np.asarray(target_p, dtype=np.float64) / pr(reference_p)
    lr_z = np.asarray(population_target_p, dtype=np.float64) / pr(population_reference_p)
    lr_z = np.sort(lr_z)
    # share of z with LR(x)/LR(z) > gamma, i.e. LR(z) < LR(x)/gamma
    return np.searchsorted(lr_z, lr_x / gamma, side="left") / len(lr_z)


def epsilon_cap(n_unlearned: int, n_retrained: int, delta: float = 0.05) -> float:
    """The largest ε :func:`epsilon_per_example` can return with these model counts (two fully
    separated groups): an ε at the cap says "as separable as these models can show", not how much."""
    fnr, fpr = 1 / (n_unlearned + 1), 1 / (n_retrained + 1)
    return float(max(np.log((1 - delta - fpr) / fnr), np.log((1 - delta - fnr) / fpr)))


def epsilon_per_example(unlearned: np.ndarray, retrained: np.ndarray, delta: float = 0.05) -> np.ndarray:
    """The challenge's per-example ε from outputs ``(U, N)`` of unlearned and ``(R, N)`` of
    retrained models (U, R ≥ 2): 0 when the two are indistinguishable at every threshold.

    ``δ`` discards the thresholds in the tails, where a handful of models decide the rates and the
    ratio is noise. Finite models bias ε upward: for two identical distributions, measured mean ε
    0.55 with 50 + 50 models and 0.06 with 300 + 300 at δ = 0.05 (1.0 and 1.1 at δ = 0) — so an ε
    from a few seeds is an upper reading, to be compared with the retrained models' own ε."""
    u, r = np.asarray(unlearned, dtype=np.float64), np.asarray(retrained, dtype=np.float64)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise ValueError(f"need (U, N) and (R, N) outputs, got {u.shape} and {r.shape}")
    if len(u) < 2 or len(r) < 2:
        raise ValueError(f"ε needs at least 2 unlearned and 2 retrained models, got {len(u)} and {len(r)}")
    eps = np.zeros(u.shape[1])
    for i in range(u.shape[1]):
        thresholds = np.unique(np.concatenate([u[:, i], r[:, i]]))
        # "unlearned if s > t": FNR = unlearned at or below t, FPR = retrained above t
        fnr = np.clip((u[:, i][None, :] <= thresholds[:, None]).mean(1), 1 / (len(u) + 1), 1.0)
        fpr = np.clip((r[:, i][None, :] > thresholds[:, None]).mean(1), 1 / (len(r) + 1), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            e1 = np.log(np.clip(1 - delta - fpr, 1e-12, None) / fnr)
            e2 = np.log(np.clip(1 - delta - fnr, 1e-12, None) / fpr)
        eps[i] = max(0.0, float(np.nanmax(np.maximum(e1, e2))))
    return eps


def matched_nonmembers(member_labels: np.ndarray, candidate_labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Indices into ``candidate_labels`` of held-out rows in the members' class proportions.

    For each class c with n_c members, ⌊r · n_c⌋ candidates of class c are drawn (seeded, without
    replacement), r the largest ratio every class can supply. A request of one class gets every
    candidate of that class; a random request gets a near-stratified test set. Classes with no
    candidate are left out (the caller should say so); no match at all raises."""
    m = np.asarray(member_labels, dtype=np.int64)
    c = np.asarray(candidate_labels, dtype=np.int64)
    classes, counts = np.unique(m, return_counts=True)
    avail = np.array([(c == k).sum() for k in classes])
    has = avail > 0
    if not has.any():
        raise ValueError(f"no held-out row has a class of the members ({classes.tolist()})")
    r = float((avail[has] / counts[has]).min())
    rng = np.random.default_rng(seed)
    picked = [
        rng.choice(np.flatnonzero(c == k), max(1, int(np.floor(r * n))), replace=False)
        for k, n, ok in zip(classes, counts, has, strict=True)
        if ok
    ]
    return np.sort(np.concatenate(picked))


FPRS = {"1pct": 0.01, "0p1pct": 0.001}


def attacker(k: int, queries: int) -> str:
    return (
        f"offline, K = {k} reference model{'s' if k != 1 else ''} retrained without the forget rows, "
        f"{queries} quer{'ies' if queries != 1 else 'y'} per example"
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def reference_attacks(
    target: tuple[np.ndarray, np.ndarray],
    references: list[tuple[np.ndarray, np.ndarray]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Offline LiRA and RMIA on one model: forget rows (members, if it still remembers them)
    against held-out non-members, each judged against the K reference models.

    ``target`` = (φ on forget rows, φ on held-out rows), each ``(N, Q)`` or ``(N,)``;
    ``references`` the same for each of K ≥ 2 reference models. Returns flat values:
    ``{lira,rmia}/auc`` with ``/auc_lo``, ``/auc_hi`` (percentile bootstrap at ``level``) and
    ``/tpr_at_1pct``, ``/tpr_at_0p1pct`` (TPR at 1 % and 0.1 % FPR) with their intervals, and
    ``k``. RMIA's population z is the held-out set itself (offline, a = 0.3), p(x) the mean over
    queries of p_y = sigmoid(φ)."""
    if len(references) < 2:
        raise ValueError(f"the per-example attacks need at least 2 reference models, got {len(references)}")

    def two_d(a: np.ndarray) -> np.ndarray:  # (..., N) -> (..., N, 1): one query
        a = np.asarray(a, dtype=np.float64)
        return a if a.ndim == 2 else a[:, None]

    f_phi, h_phi = two_d(target[0]), two_d(target[1])
    f_ref = np.stack([two_d(r[0]) for r in references])
    h_ref = np.stack([two_d(r[1]) for r in references])
    # one pooled σ over the forget and the held-out rows: both sides are judged on the same scale
    both = lira_offline(np.concatenate([f_phi, h_phi]), np.concatenate([f_ref, h_ref], axis=1))
    scores = {"lira": (both[: len(f_phi)], both[len(f_phi) :])}
    f_p, h_p, f_rp, h_rp = (_sigmoid(a).mean(axis=-1) for a in (f_phi, h_phi, f_ref, h_ref))
    scores["rmia"] = (rmia_offline(f_p, f_rp, h_p, h_rp), rmia_offline(h_p, h_rp, h_p, h_rp))
    out: dict[str, float] = {"k": float(len(references))}
    for i, (name, (m, n)) in enumerate(scores.items()):
        a, lo, hi = bootstrap(auc, m, n, n_boot=n_boot, level=level, seed=seed + 10 * i)
        out.update({f"{name}/auc": a, f"{name}/auc_lo": lo, f"{name}/auc_hi": hi})
        for j, (tag, fpr) in enumerate(FPRS.items()):
            t, tlo, thi = bootstrap(
                functools.partial(tpr_at_fpr, fpr=fpr),
                m,
                n,
                n_boot=n_boot,
                level=level,
                seed=seed + 10 * i + j + 1,
            )
            out.update({f"{name}/tpr_at_{tag}": t, f"{name}/tpr_at_{tag}_lo": tlo, f"{name}/tpr_at_{tag}_hi": thi})
    return out


def verdict(value: float, lo: float, hi: float, what: str) -> dict[str, Any]:
    """A plain reading of an AUC interval: ``{level, text}`` with ``level`` one of
    ``indistinguishable`` (0.5 inside), ``distinguishable`` (above: still members) or
    ``over-forgotten`` (below: the rows look *less* familiar than unseen ones)."""
    fig = f"AUC {value:.3f} [{lo:.3f}, {hi:.3f}]"
    if lo <= 0.5 <= hi:
        return {
            "level": "indistinguishable",
            "text": f"indistinguishable from models that never saw the rows ({what}): {fig}",
        }
    if lo > 0.5:
        return {
            "level": "distinguishable",
            "text": f"the forget rows are still recognisable as members ({what}): {fig}",
        }
    return {
        "level": "over-forgotten",
        "text": f"over-forgotten: the forget rows look less familiar than unseen rows ({what}): {fig}",
    }
