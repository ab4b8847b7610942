"""TOFU's measures of forgetting and utility, from per-answer losses (Maini et al., COLM 2024).

Every input is a per-token average negative log-likelihood of an answer given its question
(TOFU's ``avg_gt_loss``, ``avg_paraphrased_loss`` and ``average_perturb_loss``: one value per
pair, and one per pair and perturbed answer). The functions follow TOFU's
``aggregate_eval_stat.py``:

* :func:`truth_ratios` — per pair ``exp(mean perturbed loss − paraphrased loss)``: how much more
  likely the paraphrased true answer is than the wrong ones (per token, geometric means);
* :func:`forget_quality` — the two-sample Kolmogorov–Smirnov test between the unlearned model's
  truth ratios on the forget pairs and the retain model's (the model never tuned on them); its
  p-value is the forget quality (high: the two cannot be told apart);
* :func:`truth_ratio_score` — the truth ratio as a number in [0, 1]: on forget pairs
  ``mean(min(R, 1/R))``, elsewhere ``mean(max(0, 1 − 1/R))``;
* :func:`answer_probability` — ``mean(exp(−loss))`` on question/answer pairs, or the true answer's
  share of the probability among the true and the perturbed answers (TOFU's real-author and
  world-fact sets);
* :func:`rouge_l_recall` — ROUGE-L recall of a generated answer against the true one, by the
  ``rouge-score`` package with Porter stemming, as TOFU computes it;
* :func:`model_utility` — the harmonic mean of the utility numbers (TOFU: probability, ROUGE-L
  and truth ratio on the retain set, the real authors and the world facts).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike


def truth_ratios(paraphrased_loss: ArrayLike, perturbed_loss: ArrayLike) -> np.ndarray:
    """Per pair ``exp(mean_j perturbed_loss[i, j] − paraphrased_loss[i])`` (TOFU's
    ``curr_stat_1``); above 1 when the paraphrased true answer is the more likely."""
    para = np.asarray(paraphrased_loss, dtype=np.float64)
    pert = np.asarray(perturbed_loss, dtype=np.float64)
    if pert.ndim != 2 or pert.shape[0] != para.shape[0] or para.ndim != 1:
        raise ValueError(
            f"perturbed_loss must be (pairs, perturbed answers) with one row per paraphrased loss; "
            f"got {pert.shape} against {para.shape}"
        )
    return np.exp(pert.mean(axis=1) - para)


def forget_quality(unlearned_ratios: ArrayLike, retain_ratios: ArrayLike) -> tuple[float, float]:
    """``(p-value, KS statistic)`` of the two-sample KS test between the unlearned and the retain
    model's truth ratios on the forget pairs (TOFU's ``get_forget_quality``)."""
    from scipy.stats import ks_2samp

    a, b = np.asarray(unlearned_ratios, dtype=np.float64), np.asarray(retain_ratios, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("forget quality needs truth ratios of both models on at least one forget pair")
    res = ks_2samp(a, b)
    return float(res.pvalue), float(res.statistic)


def truth_ratio_score(ratios: ArrayLike, forget: bool) -> float:
    """TOFU's reported truth ratio: ``mean(min(R, 1/R))`` on forget pairs (1: the model cannot tell
    true from wrong), ``mean(max(0, 1 − 1/R))`` on the others (high: it prefers the truth)."""
    r = np.asarray(ratios, dtype=np.float64)
    return float(np.mean(np.minimum(r, 1 / r)) if forget else np.mean(np.maximum(0.0, 1 - 1 / r)))


def answer_probability(answer_loss: ArrayLike, perturbed_loss: ArrayLike | None = None) -> float:
    """Mean ``exp(−loss)`` of the true answers; with ``perturbed_loss``, the mean share of the true
    answer in the probability of the true and the perturbed answers (TOFU's real-author and
    world-fact sets)."""
    true = np.exp(-np.asarray(answer_loss, dtype=np.float64))
    if perturbed_loss is None:
        return float(true.mean())
    false = np.exp(-np.asarray(perturbed_loss, dtype=np.float64)).sum(axis=1)
    return float(np.mean(true / (true + false)))


def rouge_l_recall(generated: Sequence[str], reference: Sequence[str]) -> np.ndarray:
    """Per pair, ROUGE-L recall of ``generated`` against ``reference`` (``rouge-score``,
    ``use_stemmer=True``, as TOFU)."""
    try:
        from rouge_score import rouge_scorer
    except ImportError as e:  # pragma: no cover - the llm extra installs it
        raise ImportError("ROUGE-L needs the rouge-score package: pip install 'obliviate[llm]'") from e
    if len(generated) != len(reference):
        raise ValueError(f"{len(generated)} generated answers against {len(reference)} references")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return np.array([scorer.score(ref, gen)["rougeL"].recall for gen, ref in zip(generated, reference)])


def model_utility(values: ArrayLike) -> float:
    """Harmonic mean of the utility numbers (each in [0, 1]); 0 when any of them is 0."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or np.any(v < 0):
        raise ValueError(f"model utility is the harmonic mean of non-negative numbers, got {v.tolist()}")
    if np.any(v == 0):
        return 0.0
    return float(v.size / np.sum(1 / v))
