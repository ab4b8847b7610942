"""The original's training record as a memorisation proxy, for the sample-level methods that rank
forget rows by it (``rum``, ``loss_match``).

``fit(record_confidence=True)`` keeps, per training row, the mean label probability over the steps
that trained on it; rows learnt late and reluctantly score low, the "learning speed" proxy of Zhao
et al. (RUM, NeurIPS 2024, §3). Studies record it for the originals they train and hand it to
methods as :attr:`~obliviate.methods.base.UnlearnContext.training_confidence`.
"""

from __future__ import annotations

import torch

from ..core import ConfigError
from .base import UnlearnContext


def recorded_confidence(ctx: UnlearnContext, rows: torch.Tensor, field: str, instead: str) -> torch.Tensor:
    """The training record's confidence for dataset ``rows`` (float). Refuses, naming ``field`` and
    the ``instead`` setting that works without one, when the original's training was not recorded
    or the record does not cover a row."""
    recorded = ctx.training_confidence
    if recorded is None:
        raise ConfigError(
            f"{field}='learning_speed' needs the original's training record (fit(record_confidence=True), "
            f"which studies keep for the originals they train); this model has none: use {instead}",
            field,
        )
    rows = rows.to(torch.long)
    if len(rows) and int(rows.max()) >= len(recorded):
        raise ConfigError(
            f"the training record covers {len(recorded)} rows but the forget set names row {int(rows.max())}",
            field,
        )
    return recorded[rows].float()
