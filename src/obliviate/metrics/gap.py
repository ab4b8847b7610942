"""Distance to the gold standard: SalUn's "Avg. Gap" to the retrained model; over-forgetting.

Avg. Gap (Fan et al., SalUn, ICLR 2024, Tables 1–2): the mean absolute difference, in percentage
points, between the unlearned and the retrained model over four numbers: forget accuracy (UA is
100 − this; the gap is the same), retain accuracy (RA), test accuracy (TA) and MIA-efficacy. Here
TA is measured on ``test_retain`` (for class requests the retained classes' test rows, as SalUn;
for random and id requests all test rows) and MIA-efficacy is the SVC-confidence attack of
:mod:`.privacy`. 0 means indistinguishable from retraining on these four numbers.

Over-forgetting: forgetting *more* than the retrained model — forget accuracy or member rate far
below it, ZRF or MIA-efficacy far above it — is as detectable as forgetting too little (e.g. the
seed paper's ZRF 0.9941 against a retrained "gold" 0.9299). :func:`over_forgetting` flags it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .base import EvalInputs, Metric, register_metric
from .classification import accuracy
from .privacy import salun_efficacy_draws, salun_test_split, svc_efficacy_draws

GAP_COMPONENTS = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")


def avg_gap(unlearned: Mapping[str, float], retrained: Mapping[str, float]) -> dict[str, float]:
    """Per-component |unlearned − retrained| in percentage points and their mean (``avg``).

    Both mappings hold the four :data:`GAP_COMPONENTS` as fractions in [0, 1].
    """
    missing = [c for c in GAP_COMPONENTS if c not in unlearned or c not in retrained]
    if missing:
        raise ValueError(f"avg_gap needs {GAP_COMPONENTS} for both models; missing {missing}")
    res = {c: 100.0 * abs(float(unlearned[c]) - float(retrained[c])) for c in GAP_COMPONENTS}
    res["avg"] = sum(res[c] for c in GAP_COMPONENTS) / len(GAP_COMPONENTS)
    return res


def gap_components(
    inputs: EvalInputs, role: str, test_split: str = "test_retain", protocol: str = "obliviate"
) -> dict[str, float]:
    """The four Avg.-Gap numbers (fractions) of one model; TA on ``test_split``; MIA-efficacy by
    ``protocol`` (``obliviate``: :func:`~.privacy.svc_efficacy_draws`; ``salun``: SalUn's own),
    the mean over the row draws."""
    draws = salun_efficacy_draws(inputs, role) if protocol == "salun" else svc_efficacy_draws(inputs, role)
    return {
        "forget_acc": accuracy(inputs.out("forget", role)),
        "retain_acc": accuracy(inputs.out("retain", role)),
        "test_acc": accuracy(inputs.out(test_split, role)),
        "mia_efficacy": float(np.mean(draws)),
    }


@register_metric("gap_to_retrain")
class GapToRetrain(Metric):
    """SalUn's Avg. Gap: mean absolute difference (percentage points) to the retrained model over
    forget, retain and test accuracy and MIA-efficacy. Keys: ``gap/avg`` (the headline) and each
    component ``gap/forget_acc``, ``gap/retain_acc``, ``gap/test_acc``, ``gap/mia_efficacy``."""

    needs = frozenset({"retrained"})
    direction = "lower"
    summary = "SalUn Avg. Gap to the retrained model (percentage points); lower is better."
    reference = "Fan et al., SalUn, ICLR 2024 (Avg. Gap); Jia et al., NeurIPS 2023"

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        both = all(inputs.has("test_retain", r) for r in ("unlearned", "retrained"))
        test_split = "test_retain" if both else "test"
        gap = avg_gap(
            gap_components(inputs, "unlearned", test_split),
            gap_components(inputs, "retrained", test_split),
        )
        return {f"gap/{k}": v for k, v in gap.items()}


@register_metric("gap_to_retrain_salun")
class GapToRetrainSalUn(Metric):
    """SalUn's Avg. Gap under SalUn's exact protocol: TA and the SVC's non-members are the test
    rows without the forgotten class (class requests), the MIA-efficacy is ``mia_efficacy_salun``.
    Keys ``gap_salun/...``. The figure to set beside SalUn's published tables."""

    needs = frozenset({"retrained"})
    direction = "lower"
    summary = "SalUn Avg. Gap under SalUn's exact protocol (points); lower is better."
    reference = "Fan et al., SalUn, ICLR 2024 (Avg. Gap; Classification/main_forget.py)"

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        gap = avg_gap(
            *(gap_components(inputs, r, salun_test_split(inputs, r), "salun") for r in ("unlearned", "retrained"))
        )
        return {f"gap_salun/{k}": v for k, v in gap.items()}


# Which way each forget-side key moves when a model forgets more: +1 up, −1 down. Keys not listed
# here (retain/test quality, divergences to the retrained model) have no "over" side.
FORGETTING_SENSE: dict[str, int] = {
    "acc/forget": -1,
    "acc/test_forget": -1,
    "loss/forget": +1,
    "loss/test_forget": +1,
    "zrf/forget": +1,
    "zrf/test_forget": +1,
    "zrf_compat/forget": +1,
    "zrf_compat/test_forget": +1,
    "mia_entropy/forget_member_rate": -1,
    "mia_loss/auc": -1,
    "mia_efficacy/confidence": +1,
    "mia_efficacy/entropy": +1,
    "mia_efficacy/m_entropy": +1,
}


def reference_values(values: Mapping[str, float], role: str = "retrained") -> dict[str, float]:
    """The reference model's values in ``compute_metrics`` output: ``{key: values[key@role]}``."""
    suffix = f"@{role}"
    return {k[: -len(suffix)]: v for k, v in values.items() if k.endswith(suffix)}


def over_forgetting(
    values: Mapping[str, float], retrained_values: Mapping[str, float], tol: float = 0.05
) -> dict[str, float]:
    """Forget-side keys where the model forgot more than the retrained model by more than ``tol``.

    Args:
        values: the unlearned model's metric values (e.g. ``compute_metrics(...)[0]``).
        retrained_values: the retrained model's values under the same keys (see
            :func:`reference_values`, or metrics computed with the retrained model as "unlearned").
        tol: allowed excess, in the key's own units (fractions for accuracies, rates and ZRF).

    Returns:
        ``{key: excess}`` for every flagged key in :data:`FORGETTING_SENSE`, where ``excess`` is how
        far past the retrained value (in the forgetting direction) the model went. Empty: no flag.
    """
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
        raise ValueError(f"over_forgetting tol must be a finite number >= 0, got {tol!r}")
    flagged: dict[str, float] = {}
    for key, sense in FORGETTING_SENSE.items():
        if key not in values or key not in retrained_values:
            continue
        excess = sense * (float(values[key]) - float(retrained_values[key]))
        if excess > tol:
            flagged[key] = excess
    return flagged
