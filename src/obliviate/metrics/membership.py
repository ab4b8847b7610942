"""Per-example membership audits against K reference models, and the linear-probe audit.

The task trains K models that never saw the forget set (retrained on the retain set, other
seeds; cached and shared by every method of a group) and hands each model's per-example logit
confidence φ to these metrics through :class:`AuditInputs` (see :mod:`obliviate.attacks.per_example`):

* ``lira`` — offline LiRA (Carlini et al., S&P 2022): forget rows against held-out rows of the
  same classes, each row judged against its own φ under the K reference models (pooled σ).
* ``rmia`` — RMIA's offline test (Zarifzadeh et al., ICML 2024) on the same rows.

Each gives ``NAME/auc`` with ``NAME/auc_lo`` / ``NAME/auc_hi`` (95 % percentile bootstrap over
rows) and ``NAME/tpr_at_1pct`` / ``NAME/tpr_at_0p1pct`` (TPR at 1 % / 0.1 % FPR) with intervals,
for the unlearned model and, as ``@retrained`` / ``@original``, for the references: the retrained
model — not one of the K — should sit at chance, the original above it when it memorised.

* ``linear_probe`` (class requests) — a multinomial logistic regression fitted on the model's
  frozen penultimate features of training rows of every class (forgotten ones included), scored on
  the forgotten classes' test rows: how much of the class is still linearly decodable. Many class
  methods only misalign the classifier; the features still separate the class. Compare with the
  retrained model's probe (``@retrained``), which learns the class from generic features alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..attacks.per_example import logit_confidence, reference_attacks
from ..training import predict_queries
from .base import EvalInputs, Metric, MissingInputError, register_metric

AUDIT_ROLES = ("unlearned", "retrained", "original")


@dataclass
class AuditInputs:
    """The per-example audit's inputs for one unlearned model, computed once per group.

    ``phi[role] = (φ on forget rows (N, Q), φ on held-out rows (M, Q))`` for ``unlearned``,
    ``retrained`` and ``original``; ``references`` the same for each of the K reference models.
    ``features[role] = {"train": (X, y), "test_forget": (X, y), "test_retain": (X, y)}``
    (penultimate features for the probe; class requests only)."""

    phi: Mapping[str, tuple[np.ndarray, np.ndarray]]
    references: Sequence[tuple[np.ndarray, np.ndarray]]
    queries: tuple[str, ...] = ("image",)
    n_boot: int = 1000
    features: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)


def query_phi(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    rows: np.ndarray,
    *,
    queries: tuple[str, ...],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    channels_last: bool = False,
) -> np.ndarray:
    """φ = log(p_y / (1 − p_y)) of ``model`` per row and query, ``(N, Q)``: the per-example
    audit's statistic (LiRA, Carlini et al., S&P 2022, §VI-A), on ``images[rows]`` as they are
    (``image``) and mirrored (``flip``). Studies and deletion requests both measure it here."""
    from ..core import check_tensor

    t = torch.as_tensor(rows, dtype=torch.long)
    logits = predict_queries(
        model,
        images,
        rows=t,
        queries=queries,
        mean=mean,
        std=std,
        batch_size=batch_size,
        device=device,
        bf16=bf16,
        channels_last=channels_last,
    )
    check_tensor(logits, "logits of the membership audit")
    y = labels[t.to(labels.device)].cpu().numpy()
    return np.moveaxis(logit_confidence(logits.numpy(), np.broadcast_to(y, logits.shape[:2])), 0, 1)


def _audit(inputs: EvalInputs) -> AuditInputs:
    a = getattr(inputs, "audit", None)
    if a is None:
        raise MissingInputError("no reference-model audit inputs (set audit.references >= 2 in the study)")
    return a


def _key(base: str, role: str) -> str:
    return base if role == "unlearned" else f"{base}@{role}"


def attack_values(inputs: EvalInputs, attack: str) -> dict[str, float]:
    """Both attacks for every audited role, memoised per group for the reference roles."""
    a = _audit(inputs)
    if len(a.references) < 2:
        raise MissingInputError(f"the per-example audit needs K >= 2 reference models, got {len(a.references)}")
    out: dict[str, float] = {}
    if "unlearned" not in a.phi:
        raise MissingInputError("no per-example φ for the unlearned model")
    for role in AUDIT_ROLES:
        if role not in a.phi:
            continue

        def attacks(role: str = role) -> dict[str, float]:
            return reference_attacks(a.phi[role], list(a.references), n_boot=a.n_boot, seed=inputs.seed)

        vals = inputs.reference_value("reference_attacks", role, attacks)
        for k, v in vals.items():
            if k.startswith(f"{attack}/"):
                out[_key(k, role)] = v
        out[_key(f"{attack}/k", role)] = vals["k"]
    return out


class _ReferenceAttack(Metric):
    attack = ""
    direction = "closest_to_retrained"

    def direction_of(self, key: str) -> str:
        return "info" if "@" in key or key.endswith(("_lo", "_hi", "/k")) else "closest_to_retrained"

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        return attack_values(inputs, self.attack)


@register_metric("lira")
class LiRA(_ReferenceAttack):
    """Offline LiRA against K reference models retrained without the forget set: AUC of forget
    rows against class-matched held-out rows (0.5 = indistinguishable), with bootstrap intervals
    and TPR at 1 % and 0.1 % FPR; ``@retrained`` / ``@original`` for the two references."""

    attack = "lira"
    summary = "Offline LiRA AUC vs K reference models (0.5 chance); closest to retrained is best."
    reference = "Carlini et al., S&P 2022 (offline LiRA, global variance); Hayes et al. 2024 (U-LiRA)"


@register_metric("rmia")
class RMIA(_ReferenceAttack):
    """RMIA's offline test (a = 0.3, γ = 1) against the same K reference models and rows as ``lira``."""

    attack = "rmia"
    summary = "Offline RMIA AUC vs K reference models (0.5 chance); closest to retrained is best."
    reference = "Zarifzadeh et al., ICML 2024 (RMIA, offline)"


def probe_accuracy(features: Mapping[str, tuple[np.ndarray, np.ndarray]], seed: int = 0) -> dict[str, float]:
    """Fit the probe on ``features["train"]`` (standardised, multinomial logistic regression,
    C = 1, lbfgs) and score it on ``test_forget`` and ``test_retain``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = features["train"]
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
    probe.fit(x, y)
    out = {}
    for split in ("test_forget", "test_retain"):
        xs, ys = features[split]
        if len(ys):
            out[f"probe/{split}_acc"] = float((probe.predict(xs) == ys).mean())
    return out


@register_metric("linear_probe")
class LinearProbe(Metric):
    """Linear-probe audit for class requests: accuracy on the forgotten classes' test rows of a
    linear head fitted on the model's frozen penultimate features (training rows of every class).
    ``probe/test_forget_acc`` closest to the retrained model's is best; far above it, the class
    is still in the features and only the classifier was changed."""

    direction = "closest_to_retrained"
    summary = "Forgotten class still linearly decodable from the features; closest to retrained is best."
    reference = "Alain & Bengio 2016 (linear probes); used for unlearning audits e.g. by Jung et al. 2024"

    def direction_of(self, key: str) -> str:
        return "info" if "@" in key else ("closest_to_retrained" if "forget" in key else "higher")

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        a = _audit(inputs)
        if "unlearned" not in a.features:
            raise MissingInputError("no probe features (class requests with audit.probe only)")
        out: dict[str, float] = {}
        for role in AUDIT_ROLES:
            if role in a.features:

                def probe(role: str = role) -> dict[str, float]:
                    return probe_accuracy(a.features[role], inputs.seed)

                vals = inputs.reference_value("linear_probe", role, probe)
                out.update({_key(k, role): v for k, v in vals.items()})
        return out
