"""``sisa_ensemble``: S constituent models whose predictions are aggregated (SISA, Bourtoule et al. 2021).

The ensemble is an ordinary ``nn.Module`` so that metrics, attacks and checkpoints treat it like
any model: its forward returns *logits* whose softmax is the aggregated class distribution —
``log(mean_k softmax(f_k(x)))`` for ``aggregation="mean"``, or the log of the vote shares for
``aggregation="vote"``. It is registered as a model so that ``save_checkpoint`` /
``load_checkpoint`` can rebuild it from its ``obliviate_spec`` (which records the constituent's
own spec under ``member``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .registry import create_model, register_model

AGGREGATIONS = ("mean", "vote")
# Vote ties are broken by the mean probability, weighted so little that it never outweighs a vote.
_TIE_WEIGHT = 1e-3


class SISAEnsemble(nn.Module):
    """Constituents f_1..f_S in ``members``; forward gives aggregated log-probabilities."""

    def __init__(self, members: list[nn.Module], aggregation: str = "mean") -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if not members:
            raise ValueError("a SISA ensemble needs at least one constituent model")
        self.members = nn.ModuleList(members)
        self.aggregation = aggregation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.stack([F.log_softmax(m(x).float(), dim=1) for m in self.members])  # (S, B, C)
        mean_logp = torch.logsumexp(logp, dim=0) - math.log(len(self.members))
        if self.aggregation == "mean":
            return mean_logp
        votes = F.one_hot(logp.argmax(2), logp.shape[2]).float().mean(0)  # (B, C) vote shares
        share = (1 - _TIE_WEIGHT) * votes + _TIE_WEIGHT * mean_logp.exp()
        return share.clamp_min(torch.finfo(share.dtype).tiny).log()


@register_model(
    "sisa_ensemble",
    "SISA ensemble of S constituents (Bourtoule et al., IEEE S&P 2021)",
    family="ensemble",
    input_size=None,
)
def sisa_ensemble(
    num_classes: int,
    in_chans: int = 3,
    member: dict[str, Any] | str = "small_cnn",
    shards: int = 5,
    aggregation: str = "mean",
) -> nn.Module:
    """``shards`` freshly built constituents of architecture ``member`` (a model name or a spec
    dict ``{"name": ..., **kwargs}`` as recorded in ``obliviate_spec``)."""
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ValueError(f"shards must be a positive integer, got {shards!r}")
    spec = {"name": member} if isinstance(member, str) else dict(member)
    name = spec.pop("name", None)
    if not isinstance(name, str):
        raise TypeError(f"member must be a model name or a spec dict with a 'name', got {member!r}")
    for key, want in (("num_classes", num_classes), ("in_chans", in_chans)):
        got = spec.pop(key, want)
        if got != want:
            raise ValueError(f"member {key}={got!r} does not match the ensemble's {key}={want!r}")
    members = [create_model(name, num_classes=num_classes, in_chans=in_chans, **spec) for _ in range(shards)]
    return SISAEnsemble(members, aggregation)
