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
  vs held-out test rows drawn in the forget set's class proportions (every test row of the
  forgotten class for a class request; against the whole test set the attack measures how hard
  a class is, not membership), with ``/auc_lo`` / ``/auc_hi``, a 95 % bootstrap interval over
  rows; ``mia_loss/best_balanced_acc``: balanced accuracy of the best threshold (in-sample, ≥ 0.5).
* ``mia_efficacy`` — Jia et al. / SalUn ``SVC_MIA``: SVC on one feature, retain vs test; the
  fraction of forget rows predicted *non-member*: ``mia_efficacy/confidence`` (the number SalUn
  reports as MIA-Efficacy), ``mia_efficacy/entropy``, ``mia_efficacy/m_entropy``.

* ``mia_efficacy_salun`` — SalUn's protocol exactly (``main_forget.py``): for class requests the
  forgotten class is removed from the test set the SVC is fitted on, the shadow members are as
  many retain rows as there are test rows (a seeded draw; SalUn takes the first ones in dataset
  order) and nothing is capped. Use it (and ``gap_to_retrain_salun``) to compare with SalUn's
  published numbers; ``mia_efficacy`` is obliviate's cheaper protocol (all test rows, 2,000 per side).

The fitted attacks subsample rows (seeded), and their value moves with the draw: with
``draws = D > 1`` (``audit.draws`` in a study) each is repeated over D seeded draws, the value is
their mean and ``/draws_lo`` / ``/draws_hi`` their range.

All rates and AUCs are fractions in [0, 1]. Each is best when closest to the retrained model's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, cast

import numpy as np
import torch

from ..attacks.mia import (
    best_threshold_accuracy,
    entropy_attack,
    loss_auc,
    mia_efficacy,
    svc_attack,
)
from ..attacks.per_example import auc, bootstrap, matched_nonmembers
from .base import EvalInputs, Metric, Outputs, register_metric

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


def draw_seeds(inputs: EvalInputs) -> list[int]:
    """The row-draw seeds of the fitted attacks: ``inputs.seed`` first, then one per extra draw."""
    return [inputs.seed + 7919 * d for d in range(max(1, int(inputs.draws)))]


def over_draws(inputs: EvalInputs, name: str, role: str, one: Callable[[int], float]) -> list[float]:
    """``one(seed)`` for every draw seed, memoised across methods for reference roles."""
    return inputs.reference_value(f"{name}#draws", role, lambda: [one(s) for s in draw_seeds(inputs)])


def with_range(key: str, values: list[float]) -> dict[str, float]:
    """``{key: mean}``, plus ``key/draws_lo`` and ``key/draws_hi`` when there is more than one draw."""
    out = {key: float(np.mean(values))}
    if len(values) > 1:
        base, _, role = key.partition("@")
        tail = f"@{role}" if role else ""
        out[f"{base}/draws_lo{tail}"] = float(min(values))
        out[f"{base}/draws_hi{tail}"] = float(max(values))
    return out


def entropy_member_rate(
    inputs: EvalInputs,
    role: str = "unlearned",
    max_per_side: int | None = ENTROPY_MAX_PER_SIDE,
    seed: int | None = None,
) -> float:
    """Fraction of forget-train rows that the entropy attack, fitted on ``role``'s retain-train
    (members) vs test (non-members) outputs, predicts member."""
    retain, test, forget = (inputs.out(s, role) for s in ("retain", "test", "forget"))
    attack = entropy_attack(max_per_side=max_per_side, seed=inputs.seed if seed is None else seed)
    attack.fit(retain.probs, None, test.probs, None)
    return attack.member_rate(forget.probs)


def loss_nonmember_split(inputs: EvalInputs) -> str:
    """Where the held-out rows come from: ``test_forget`` where it is not empty (class and
    sub-class requests), else ``test`` (random and id requests; class-matched by :func:`loss_nonmembers`)."""
    return "test_forget" if inputs.has("test_forget") else "test"


def loss_nonmembers(inputs: EvalInputs, role: str) -> Outputs:
    """Held-out rows of ``role`` in the forget set's class proportions (the same rows for every model)."""
    split = loss_nonmember_split(inputs)
    held = inputs.out(split, role)
    rows = matched_nonmembers(inputs.out("forget", role).labels.numpy(), held.labels.numpy(), seed=inputs.seed)
    return held.subset(torch.as_tensor(rows, dtype=torch.long))


def svc_mia_efficacy(
    inputs: EvalInputs,
    role: str = "unlearned",
    feature: str = "confidence",
    max_per_side: int | None = SVC_MAX_PER_SIDE,
    seed: int | None = None,
    test_split: str = "test",
) -> float:
    """SalUn's MIA-efficacy for ``role``: SVC fitted on retain (members) vs ``test_split``
    (non-members), fraction of forget rows predicted non-member."""
    retain, test, forget = (inputs.out(s, role) for s in ("retain", test_split, "forget"))
    kind = cast(Literal["entropy", "confidence", "m_entropy"], feature)
    attack = svc_attack(kind, max_per_side=max_per_side, seed=inputs.seed if seed is None else seed)
    attack.fit(retain.probs, retain.labels, test.probs, test.labels)
    return mia_efficacy(attack, forget.probs, forget.labels)


def svc_efficacy_draws(inputs: EvalInputs, role: str, feature: str = "confidence") -> list[float]:
    """:func:`svc_mia_efficacy` over every row draw (obliviate's protocol)."""
    return over_draws(
        inputs, f"mia_efficacy/{feature}", role, lambda s: svc_mia_efficacy(inputs, role, feature, seed=s)
    )


def salun_test_split(inputs: EvalInputs, role: str) -> str:
    """SalUn's test set: without the forgotten class(es) for a class request, else all test rows."""
    return "test_retain" if inputs.forget_classes and inputs.has("test_retain", role) else "test"


def salun_efficacy_draws(inputs: EvalInputs, role: str) -> list[float]:
    """MIA-efficacy under SalUn's protocol (see the module docstring) over every row draw."""
    return over_draws(
        inputs,
        "mia_efficacy_salun",
        role,
        lambda s: svc_mia_efficacy(
            inputs, role, "confidence", max_per_side=None, seed=s, test_split=salun_test_split(inputs, role)
        ),
    )


N_BOOT = 1000  # bootstrap resamples of the loss-threshold AUC's interval


def audit_direction(key: str) -> str:
    """Reference keys (``key@role``) and intervals are information; the method's keys: closest to retrained."""
    return "info" if "@" in key or key.endswith(("_lo", "_hi")) or "/draws_" in key else "closest_to_retrained"


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
        out: dict[str, float] = {}
        for role in _roles(inputs, ("retain", "test", "forget")):

            def member_rate(s: int, role: str = role) -> float:
                return entropy_member_rate(inputs, role, seed=s)

            vals = over_draws(inputs, "mia_entropy", role, member_rate)
            out.update(with_range(_key("mia_entropy/forget_member_rate", role), vals))
        return out


@register_metric("mia_loss")
class LossMIA(Metric):
    """Loss-threshold attack (Yeom et al., CSF 2018): ``mia_loss/auc`` is the ROC AUC of −loss for
    telling forget-train rows (members) from held-out rows (``test_forget`` for class and sub-class
    requests, else ``test``); 0.5 = indistinguishable. ``mia_loss/best_balanced_acc`` is the
    balanced accuracy of the best threshold on the same rows (≥ 0.5)."""

    summary = "Loss-threshold AUC, forget vs held-out rows (0.5 chance); closest to retrained is best."
    reference = "Yeom et al., CSF 2018; sklearn.metrics.roc_auc_score"
    direction = "closest_to_retrained"

    def direction_of(self, key: str) -> str:
        return audit_direction(key)

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        held_out = loss_nonmember_split(inputs)
        res: dict[str, float] = {}
        for role in _roles(inputs, ("forget", held_out)):
            f, t = inputs.out("forget", role), loss_nonmembers(inputs, role)
            _, lo, hi = bootstrap(auc, -f.loss.numpy(), -t.loss.numpy(), n_boot=N_BOOT, seed=inputs.seed)
            res[_key("mia_loss/auc", role)] = loss_auc(f.loss, t.loss)
            res[_key("mia_loss/auc_lo", role)] = lo
            res[_key("mia_loss/auc_hi", role)] = hi
            res[_key("mia_loss/best_balanced_acc", role)] = best_threshold_accuracy(f.loss, t.loss)
        return res


@register_metric("mia_efficacy")
class SVCMIAEfficacy(Metric):
    """SalUn's MIA-efficacy (Jia et al. 2023 ``SVC_MIA``): an RBF SVC (C=3) on one output feature,
    fitted on retain (shadow members) vs test (non-members); the value is the fraction of forget
    rows predicted NON-member. ``mia_efficacy/confidence`` is the number SalUn reports;
    ``/entropy`` and ``/m_entropy`` use the other features (Song & Mittal's modified entropy)."""

    summary = "SalUn MIA-efficacy: forget rows called non-member; closest to retrained is best."
    reference = "Fan et al., SalUn, ICLR 2024; Jia et al., NeurIPS 2023 (SVC_MIA, SVC(C=3, gamma='auto'))"
    direction = "closest_to_retrained"

    def direction_of(self, key: str) -> str:
        return audit_direction(key)

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        out: dict[str, float] = {}
        for role in _roles(inputs, ("retain", "test", "forget")):
            for feat in SVC_FEATURES:
                out.update(with_range(_key(f"mia_efficacy/{feat}", role), svc_efficacy_draws(inputs, role, feat)))
        return out


@register_metric("mia_efficacy_salun")
class SalUnMIAEfficacy(Metric):
    """SalUn's MIA-efficacy under SalUn's own protocol (``main_forget.py``): the SVC is fitted on
    as many retain rows as test rows against the test set *without the forgotten class* for class
    requests, uncapped; the fraction of forget rows predicted non-member. Use it beside
    ``gap_to_retrain_salun`` when comparing with SalUn's published tables."""

    summary = "MIA-efficacy under SalUn's exact protocol; closest to retrained is best."
    reference = "Fan et al., SalUn, ICLR 2024 (Classification/main_forget.py, SVC_MIA_forget_efficacy)"
    direction = "closest_to_retrained"

    def direction_of(self, key: str) -> str:
        return "info" if "@" in key or "/draws_" in key else "closest_to_retrained"

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        out: dict[str, float] = {}
        for role in _roles(inputs, ("retain", "test", "forget")):
            out.update(with_range(_key("mia_efficacy_salun", role), salun_efficacy_draws(inputs, role)))
        return out
