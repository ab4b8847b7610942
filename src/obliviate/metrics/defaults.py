"""The default metric set: every registered metric that needs no training (``costly = False``).

Order is the report's reading order: utility first, then distance to the retrained model,
privacy audits, the Avg.-Gap headline and cost. Metrics whose reference model, split or run fact
is unavailable are skipped by :func:`~obliviate.metrics.compute_metrics`, so the set is safe to
use for any run. ``relearn`` is costly (it fine-tunes) and must be asked for by name.
"""

from __future__ import annotations

DEFAULT_METRICS: tuple[str, ...] = (
    # classification (metrics/classification.py)
    "accuracy",
    "loss",
    "table1",
    "worst_retained_class",
    # output divergences (metrics/divergence.py)
    "js_to_retrained",
    "activation_distance",
    "zrf",
    "zrf_compat",
    # membership-inference audits (metrics/privacy.py)
    "mia_entropy",
    "mia_loss",
    "mia_efficacy",
    "mia_efficacy_salun",
    # per-example audits against K reference models (metrics/membership.py; skipped unless the
    # study sets audit.references >= 2) and the linear probe (class requests, audit.probe)
    "lira",
    "rmia",
    "linear_probe",
    # distance to the gold standard (metrics/gap.py): obliviate's protocol, then SalUn's exact one
    "gap_to_retrain",
    "gap_to_retrain_salun",
    # cost (metrics/efficiency.py)
    "wall_time",
    "optimizer_steps",
    "speedup",
    "peak_memory",
)
