"""Membership-inference audits as metrics, each named after the attack it runs (see
:mod:`obliviate.attacks.mia` for the attacks and the papers whose code they follow).

Every audit is run on the unlearned model and, when their outputs are given, on the reference
models: ``key@retrained`` is the target (what a model that never saw the forget set scores) and
``key@original`` the starting point. The attack is fitted separately on each model's own outputs,
on the same seeded rows (``inputs.seed``).

* ``mia_entropy`` — balanced logistic regression on the output entropy, retain-train (members) vs
  test (non-members); ``mia_entropy/forget_member_rate``: fraction of forget-train rows predicted
  member (bad-teacher / SSD papers).
* ``mia_loss`` — loss-threshold attack; ``mia_loss/auc``: ROC AUC of −loss, forget-train (members)
  vs held-out rows of the same distribution: the forgotten (sub-)class's test rows
  (``test_forget``) for class and sub-class requests, else (random, id requests) all test rows;
  ``mia_loss/best_balanced_acc``: balanced accuracy of the best threshold (in-sample, ≥ 0.5).
* ``mia_efficacy`` — Jia et al. / SalUn ``SVC_MIA``: SVC on one feature, retain vs test; the
  fraction of forget rows predicted *non-member*: ``mia_efficacy/confidence`` (the number SalUn
  reports as MIA-Efficacy), ``mia_efficacy/entropy``, ``mia_efficacy/m_entropy``.

All rates and AUCs are fractions in [0, 1]. Each is best when closest to the retrained model's.
"""

from __future__ import annotations

from typing import Literal, cast

from ..attacks.mia import (
    best_threshold_accuracy,
    entropy_attack,
    loss_auc,
    mia_efficacy,
    svc_attack,
)
from .base import EvalInputs, Metric, register_metric

REFERENCE_ROLES = ("retrained", "original")
# Rows per side used to fit the attacks (seeded subsamples). The logistic regression is cheap;
# the RBF SVC is O(n²), so it is capped lower than SalUn's 10,000 (see attacks.mia.svc_attack).
ENTROPY_MAX_PER_SIDE = 10_000
SVC_MAX_PER_SIDE = 2_000
SVC_FEATURES = ("confidence", "entropy", "m_entropy")


def _roles(inputs: EvalInputs, splits: tuple[str, ...]) -> list[str]:
    """The unlearned model (its splits must exist) and every reference model that has ``splits``."""
    for s in splits:
        inputs.out(s)  # raises MissingInputError for the unlearned model
    return ["unlearned"] + [r for r in REFERENCE_ROLES if all(inputs.has(s, r) for s in splits)]


def _key(base: str, role: str) -> str:
    return base if role == "unlearned" else f"{base}@{role}"


def entropy_member_rate(
    inputs: EvalInputs, role: str = "unlearned", max_per_side: int | None = ENTROPY_MAX_PER_SIDE
) -> float:
    """Fraction of forget-train rows that the entropy attack, fitted on ``role``'s retain-train
    (members) vs test (non-members) outputs, predicts member."""
    retain, test, forget = (inputs.out(s, role) for s in ("retain", "test", "forget"))
    attack = entropy_attack(max_per_side=max_per_side, seed=inputs.seed)
    attack.fit(retain.probs, None, test.probs, None)
    return attack.member_rate(forget.probs)


def loss_nonmember_split(inputs: EvalInputs) -> str:
    """Held-out rows from the forget set's distribution: ``test_forget`` where it is not empty
    (class and sub-class requests), else ``test`` (random and id requests)."""
    return "test_forget" if inputs.has("test_forget") else "test"


def svc_mia_efficacy(
    inputs: EvalInputs,
    role: str = "unlearned",
    feature: str = "confidence",
    max_per_side: int | None = SVC_MAX_PER_SIDE,
) -> float:
    """SalUn's MIA-efficacy for ``role``: SVC fitted on retain (members) vs test (non-members),
    fraction of forget rows predicted non-member."""
    retain, test, forget = (inputs.out(s, role) for s in ("retain", "test", "forget"))
    kind = cast(Literal["entropy", "confidence", "m_entropy"], feature)
    attack = svc_attack(kind, max_per_side=max_per_side, seed=inputs.seed)
    attack.fit(retain.probs, retain.labels, test.probs, test.labels)
    return mia_efficacy(attack, forget.probs, forget.labels)


def audit_direction(key: str) -> str:
    """Reference keys (``key@role``) are information; the method's keys: closest to retrained."""
    return "info" if "@" in key else "closest_to_retrained"


@register_metric("mia_entropy")
class EntropyMIA(Metric):
    """Entropy logistic-regression attack (bad-teacher / SSD): fitted on retain-train (members) vs
    test (non-members), balanced; ``mia_entropy/forget_member_rate`` is the fraction of forget-train
    rows predicted member (with ``@retrained`` / ``@original`` when those models are given)."""

    summary = "Entropy-LR attack: forget rows predicted member; closest to retrained is best."
    reference = "Chundawat et al., AAAI 2023; Foster et al., AAAI 2024 (get_membership_attack_prob)"
    direction = "closest_to_retrained"

    def direction_of(self, key: str) -> str:
        return audit_direction(key)

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        return {
            _key("mia_entropy/forget_member_rate", role): inputs.reference_value(
                "mia_entropy", role, lambda role=role: entropy_member_rate(inputs, role))
            for role in _roles(inputs, ("retain", "test", "forget"))
        }


@register_metric("mia_loss")
class LossMIA(Metric):
    """Loss-threshold attack (Yeom et al., CSF 2018): ``mia_loss/auc`` is the ROC AUC of −loss for
    telling forget-train rows (members) from held-out rows (``test_forget`` for class and sub-class
    requests, else ``test``); 0.5 = indistinguishable. ``mia_loss/best_balanced_acc`` is the
    balanced accuracy of the best threshold on the same rows (≥ 0.5)."""

    summary = (
        "Loss-threshold AUC, forget vs held-out rows (0.5 chance); closest to retrained is best."
    )
    reference = "Yeom et al., CSF 2018; sklearn.metrics.roc_auc_score"
    direction = "closest_to_retrained"

    def direction_of(self, key: str) -> str:
        return audit_direction(key)

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        held_out = loss_nonmember_split(inputs)
        res: dict[str, float] = {}
        for role in _roles(inputs, ("forget", held_out)):
            f, t = inputs.out("forget", role), inputs.out(held_out, role)
            res[_key("mia_loss/auc", role)] = loss_auc(f.loss, t.loss)
            res[_key("mia_loss/best_balanced_acc", role)] = best_threshold_accuracy(f.loss, t.loss)
        return res


@register_metric("mia_efficacy")
class SVCMIAEfficacy(Metric):
    """SalUn's MIA-efficacy (Jia et al. 2023 ``SVC_MIA``): an RBF SVC (C=3) on one output feature,
    fitted on retain (shadow members) vs test (non-members); the value is the fraction of forget
    rows predicted NON-member. ``mia_efficacy/confidence`` is the number SalUn reports;
    ``/entropy`` and ``/m_entropy`` use the other features (Song & Mittal's modified entropy)."""

    summary = "SalUn MIA-efficacy: forget rows called non-member; closest to retrained is best."
    reference = (
        "Fan et al., SalUn, ICLR 2024; Jia et al., NeurIPS 2023 (SVC_MIA, SVC(C=3, gamma='auto'))"
    )
    direction = "closest_to_retrained"

    def direction_of(self, key: str) -> str:
        return audit_direction(key)

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        return {
            _key(f"mia_efficacy/{feat}", role): inputs.reference_value(
                f"mia_efficacy/{feat}", role, lambda role=role, feat=feat: svc_mia_efficacy(inputs, role, feat))
            for role in _roles(inputs, ("retain", "test", "forget"))
            for feat in SVC_FEATURES
        }
