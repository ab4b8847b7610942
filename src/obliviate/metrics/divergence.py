"""Divergences between two models' outputs: KL, Jensen–Shannon, activation distance, ZRF.

Unit: every divergence here is in **bits** (log base 2) unless a ``base`` is passed, so the
Jensen–Shannon divergence of two distributions lies in [0, 1]. Zero probabilities follow
0·log 0 = 0 and never produce NaN; KL(p‖q) is +inf where p > 0 and q = 0.

ZRF (Zero Retrain Forgetting; Chundawat et al., AAAI 2023, "Can Bad Teaching Induce Forgetting?",
eq. for 𝒵𝓇𝒻): ZRF = 1 − (1/n_f) Σ_i JS(M(x_i) ‖ T_d(x_i)) over the forget set, T_d a randomly
initialised model of the same architecture. With JS in bits, ZRF ∈ [0, 1]; 1 means the model
answers like a random network on the forget set.

The public code of that paper (``vikram2000b/bad-teaching-unlearning``, ``metrics.py``, copied
into SSD's repository) computes ``0.5*F.kl_div(log p, m) + 0.5*F.kl_div(log q, m)`` with
PyTorch's default ``reduction="mean"``. ``F.kl_div(input, target)`` is KL(target ‖ exp(input)),
and "mean" averages over all N·K entries, so that code returns
½[KL(m‖p) + KL(m‖q)] / K (nats, averaged over samples) — KL arguments reversed and divided by the
class count K, not the JS divergence. :func:`js_divergence_chundawat_compat` and
:func:`zrf_chundawat_compat` (metric ``zrf_compat``) reproduce it for comparison with published
numbers (e.g. ZRF 0.9941 and "JS" 0.0486); they are never the default.

Activation distance (Chundawat et al. 2023, after Golatkar et al. 2020): the mean over samples of
the L2 distance between the two probability vectors, ‖p − q‖₂ ∈ [0, √2].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeAlias

import numpy as np
import torch

from .base import EvalInputs, Metric, MissingInputError, Outputs, register_metric

# Probabilities (..., K) as a tensor, an array or nested sequences.
ProbsLike: TypeAlias = "torch.Tensor | np.ndarray | Sequence[float] | Sequence[Sequence[float]]"

# Rows of a probability matrix must sum to 1 within this (softmax in float32 is ~1e-7 off).
_SUM_TOL = 1e-5


# -- pure functions --------------------------------------------------------------------------------
def _check_base(base: float) -> float:
    if not (isinstance(base, (int, float)) and math.isfinite(base) and base > 0 and base != 1):
        raise ValueError(f"logarithm base must be a finite number > 0 and != 1, got {base!r}")
    return math.log(base)


def _as_probs(x: ProbsLike, name: str) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=torch.float64)
    if t.ndim == 0:
        raise ValueError(f"{name} must have a class dimension (..., K), got a scalar")
    if t.shape[-1] < 1:
        raise ValueError(f"{name} must have at least one class, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} has non-finite entries")
    if t.numel() and float(t.min()) < 0:
        raise ValueError(f"{name} has negative entries (min {float(t.min())})")
    if t.numel():
        err = float((t.sum(-1) - 1).abs().max())
        if err > _SUM_TOL:
            raise ValueError(f"{name} rows must sum to 1 (off by up to {err:.3g}); pass probabilities, not logits")
    return t


def _pair(p: ProbsLike, q: ProbsLike) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _as_probs(p, "p"), _as_probs(q, "q")
    if a.shape != b.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return a, b


def _plogp_over(p: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Σ_k p_k·log(p_k / r_k) over the last axis with 0·log(0/r) = 0 (natural log)."""
    pos = p > 0
    ratio = torch.where(pos, p, 1.0) / torch.where(pos, r, 1.0)
    return torch.where(pos, p * torch.log(ratio), 0.0).sum(-1)


def kl_divergence(p: ProbsLike, q: ProbsLike, base: float = 2.0) -> torch.Tensor:
    """KL(p‖q) = Σ_k p_k log(p_k/q_k) per row (bits by default); +inf where p_k > 0 = q_k."""
    a, b = _pair(p, q)
    return _plogp_over(a, b) / _check_base(base)


def js_divergence(p: ProbsLike, q: ProbsLike, base: float = 2.0) -> torch.Tensor:
    """Jensen–Shannon divergence per row: ½KL(p‖m) + ½KL(q‖m), m = ½(p + q).

    Bits by default, so each value lies in [0, 1] (in nats: [0, ln 2]). Shape: ``p.shape[:-1]``.
    scipy's ``jensenshannon`` returns the square root of this (the JS *distance*).
    """
    a, b = _pair(p, q)
    m = 0.5 * (a + b)
    js = 0.5 * _plogp_over(a, m) + 0.5 * _plogp_over(b, m)
    upper = math.log(2.0)
    # Rounding can leave ±1e-16 outside the bounds; the divergence itself cannot be.
    return js.clamp(0.0, upper) / _check_base(base)


def mean_js_divergence(p: ProbsLike, q: ProbsLike, base: float = 2.0) -> float:
    """Mean over rows of :func:`js_divergence`."""
    js = js_divergence(p, q, base)
    if js.numel() == 0:
        raise ValueError("cannot average the JS divergence over an empty set of rows")
    return float(js.mean())


def activation_distance(p: ProbsLike, q: ProbsLike) -> torch.Tensor:
    """L2 distance ‖p − q‖₂ between probability vectors, per row."""
    a, b = _pair(p, q)
    return torch.linalg.vector_norm(a - b, dim=-1)


def mean_activation_distance(p: ProbsLike, q: ProbsLike) -> float:
    """Mean over rows of :func:`activation_distance` (Chundawat et al. 2023's ``actv_dist``)."""
    d = activation_distance(p, q)
    if d.numel() == 0:
        raise ValueError("cannot average the activation distance over an empty set of rows")
    return float(d.mean())


def zrf_score(probs: ProbsLike, random_probs: ProbsLike) -> float:
    """ZRF = 1 − mean_i JS(p_i ‖ r_i) in bits: 1 = answers like the random model ``r``."""
    return 1.0 - mean_js_divergence(probs, random_probs, base=2.0)


def js_divergence_chundawat_compat(p: ProbsLike, q: ProbsLike) -> float:
    """The bad-teacher repository's ``JSDiv(p, q)``: ½[KL(m‖p) + KL(m‖q)] / K, nats, row mean.

    Equivalently the mean over all N·K entries of ½m(ln m − ln p) + ½m(ln m − ln q). Not a JS
    divergence (KL arguments reversed, divided by the class count K). Entries with m = 0 count 0
    (the original gives NaN there); an entry with p = 0 < m gives +inf, as the original does.
    """
    a, b = _pair(p, q)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, K) matrix of probabilities, got shape {tuple(a.shape)}")
    m = 0.5 * (a + b)
    pos = m > 0
    log_m = torch.log(torch.where(pos, m, 1.0))
    # Where m > 0 but p = 0, log p = −inf and the term is +inf (faithful to torch.log(p) upstream).
    term = 0.5 * (m * (log_m - torch.log(a))) + 0.5 * (m * (log_m - torch.log(b)))
    return float(torch.where(pos, term, 0.0).mean())


def zrf_chundawat_compat(probs: ProbsLike, random_probs: ProbsLike) -> float:
    """The bad-teacher code's ``UnLearningScore``: 1 − :func:`js_divergence_chundawat_compat`."""
    return 1.0 - js_divergence_chundawat_compat(probs, random_probs)


# -- registered metrics ----------------------------------------------------------------------------
def aligned(a: Outputs, b: Outputs, what: str) -> None:
    """Two models' outputs on one split must be the same rows (same count, same labels)."""
    if len(a) != len(b) or not torch.equal(a.labels, b.labels) or a.logits.shape[1] != b.logits.shape[1]:
        raise ValueError(
            f"{what}: the two models' outputs are not on the same rows/classes "
            f"({tuple(a.logits.shape)} vs {tuple(b.logits.shape)})"
        )


def _paired_splits(inputs: EvalInputs, other: str, splits: tuple[str, ...]) -> list[str]:
    found = [s for s in splits if inputs.has(s) and inputs.has(s, other)]
    if not found:
        raise MissingInputError(f"no split among {splits} has outputs for both 'unlearned' and {other!r}")
    return found


REFERENCE_ROLES = ("retrained", "original")  # reported as key@role next to the method's value


def _to_retrained(inputs: EvalInputs, name: str, fn: Callable[[torch.Tensor, torch.Tensor], float]) -> dict[str, float]:
    """``{name/split: fn(unlearned probs, retrained probs)}`` over forget, test and test_forget."""
    res: dict[str, float] = {}
    for s in _paired_splits(inputs, "retrained", ("forget", "test", "test_forget")):
        a, b = inputs.out(s), inputs.out(s, "retrained")
        aligned(a, b, f"{name} on {s!r}")
        res[f"{name}/{s}"] = fn(a.probs, b.probs)
    return res


def _against_random(
    inputs: EvalInputs, name: str, fn: Callable[[torch.Tensor, torch.Tensor], float]
) -> dict[str, float]:
    """``{name/split[@role]: fn(role probs, random probs)}`` on forget and test_forget, for the
    unlearned model and the reference models present."""
    res: dict[str, float] = {}
    for s in _paired_splits(inputs, "random", ("forget", "test_forget")):
        rand = inputs.out(s, "random")
        for role in ("unlearned", *REFERENCE_ROLES):
            if not inputs.has(s, role):
                continue
            o = inputs.out(s, role)
            aligned(o, rand, f"{name} on {s!r} ({role})")
            res[f"{name}/{s}" + ("" if role == "unlearned" else f"@{role}")] = fn(o.probs, rand.probs)
    return res


@register_metric("js_to_retrained")
class JSToRetrained(Metric):
    """Mean Jensen–Shannon divergence (bits, in [0, 1]) between the unlearned and the retrained
    model's softmax outputs, per split: ``js_to_retrained/forget``, ``/test`` and ``/test_forget``
    (when present). 0 means the unlearned model answers exactly like the retrained one."""

    needs = frozenset({"retrained"})
    direction = "lower"
    summary = "Mean JS divergence (bits) to the retrained model's outputs; lower is better."
    reference = "Chundawat et al., AAAI 2023; scipy jensenshannon(base=2) squared"

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        return _to_retrained(inputs, self.name, mean_js_divergence)


@register_metric("activation_distance")
class ActivationDistance(Metric):
    """Mean L2 distance between the unlearned and the retrained model's probability vectors, per
    split: ``activation_distance/forget``, ``/test`` and ``/test_forget`` (when present);
    in [0, √2]."""

    needs = frozenset({"retrained"})
    direction = "lower"
    summary = "Mean L2 distance to the retrained model's output probabilities; lower is better."
    reference = "Chundawat et al., AAAI 2023 (actv_dist); Golatkar et al., CVPR 2020"

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        return _to_retrained(inputs, self.name, mean_activation_distance)


@register_metric("zrf")
class ZRF(Metric):
    """Zero Retrain Forgetting, textbook formula: 1 − mean JS (bits) between the model and a
    randomly initialised model of the same architecture, on the forget set (``zrf/forget``) and on
    the forgotten classes' test images (``zrf/test_forget``, where the paper's code measures it).
    ``key@retrained`` / ``key@original`` give the reference models' scores (the paper's "gold" and
    "initial" scores). A score far above the retrained model's is over-forgetting."""

    needs = frozenset({"random"})
    direction = "closest_to_retrained"
    summary = "1 − mean JS to a random-init model on the forget set; closest to retrained is best."
    reference = "Chundawat et al., 'Can Bad Teaching Induce Forgetting?', AAAI 2023 (ZRF)"

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        return _against_random(inputs, self.name, zrf_score)

    def direction_of(self, key: str) -> str:
        return "info" if "@" in key else self.direction


@register_metric("zrf_compat")
class ZRFCompat(Metric):
    """ZRF as the bad-teacher/SSD public code computes it (``UnLearningScore``): 1 − ½[KL(m‖p) +
    KL(m‖q)]/K in nats — for comparing with published numbers only; use ``zrf``. Keys as ``zrf``
    (``zrf_compat/forget``, ``/test_forget``, with ``@retrained``/``@original``), plus the code's
    "JS" between the retrained and the unlearned model, ``zrf_compat/js_to_retrained/<split>``
    (the paper's "JS Div" row is this number)."""

    needs = frozenset({"random"})
    direction = "closest_to_retrained"
    summary = "Public-code ZRF (not true JS), to compare with papers; closest to retrained is best."
    reference = "vikram2000b/bad-teaching-unlearning metrics.py UnLearningScore (compat variant)"

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        res = _against_random(inputs, self.name, zrf_chundawat_compat)
        for s in ("forget", "test_forget"):
            if inputs.has(s) and inputs.has(s, "retrained"):
                a, b = inputs.out(s), inputs.out(s, "retrained")
                aligned(a, b, f"{self.name} on {s!r}")
                # The paper prints 1 − UnLearningScore(gold, student) = JSDiv(gold, student).
                res[f"{self.name}/js_to_retrained/{s}"] = js_divergence_chundawat_compat(b.probs, a.probs)
        return res

    def direction_of(self, key: str) -> str:
        if "/js_to_retrained/" in key:
            return "lower"
        return "info" if "@" in key else self.direction
