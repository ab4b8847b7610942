"""The retain term of the fine-tuning family: which loss, and how its batches meet batch norm.

Two choices every method that descends on retain rows makes, made once here:

* **Label smoothing of the retain cross-entropy** (``label_smoothing``; ε). ``None``, the default,
  continues the loss the original was trained with (its recipe's ε: 0.2 for airbench, 0 for the
  paper's ResNet recipes). Plain cross-entropy on a net trained with smoothing sharpens every row,
  the forget rows included: on the frontier's frog ids the forget rows' mean LiRA score φ rose
  from the original's 1.25–1.29 to 1.69–2.03 under ``finetune`` and ``l1_sparse``, against
  1.13–1.14 for retrained references, and the per-example ε read 1.41–1.48 against the original's
  0.72 (``bench/membership_audit/``). ``0.0`` gives the papers' plain cross-entropy back.
* **One forward pass over the retain and the forget batch, or two** (``forward``). In train mode,
  batch norm normalises a batch with its own statistics; a forget batch of a class request, or of
  300 ids inside one class, is one class, and a separate forward pass normalises it with that
  class's statistics alone — a function the evaluated model never computes — and, under
  ``bn_stats: method``, ends every step's running statistics on it. ``joint`` forwards both batches
  as one. The reference loops (SCRUB's ``train_negrad``) use two passes, and a learning rate tuned
  with two passes is far too strong with one: the frog-ids audit's NegGrad+ setting (tuned on horse
  ids, two passes) kept 86 % of the 300 rows with two passes and 6 % with one. So ``separate`` is
  the default, and ``forward`` is searched by ``obliviate tune`` like ``bn_stats``; ``loss_match``
  always forwards jointly (Avg. gap on the frontier's frog ids 8.48 → 3.74 over three seeds).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from ..training import TrainConfig
from .base import Choice, param

Forward = Literal["joint", "separate"]


def smoothing_param() -> Any:
    """The ``label_smoothing`` field of a retain-descending method's config."""
    return param(
        None,
        "label smoothing of the retain cross-entropy (None = the original's recipe, the loss it "
        "was trained with; 0 = plain cross-entropy, as in the papers)",
        "ε",
    )


def forward_param() -> Any:
    """The ``forward`` field of a method that steps on a retain and a forget batch together."""
    return param(
        "separate",
        "'separate': a forward pass per batch, as the reference loop; 'joint': one pass over "
        "the retain and forget batch (batch norm never normalises a one-class forget batch alone)",
        tune=Choice(("separate", "joint")),
    )


def check_smoothing(cfg: Any) -> None:
    cfg._require(
        cfg.label_smoothing is None or 0.0 <= cfg.label_smoothing < 1.0, "label_smoothing", "None or in [0, 1)"
    )


def check_forward(cfg: Any) -> None:
    cfg._require(cfg.forward in ("joint", "separate"), "forward", "'joint' or 'separate'")


def retain_smoothing(value: float | None, original: TrainConfig) -> float:
    """ε of the retain cross-entropy: ``value``, or the original's recipe's when it is ``None``."""
    return float(original.label_smoothing if value is None else value)


def forward_pair(
    model: nn.Module, x_retain: torch.Tensor, x_forget: torch.Tensor, forward: Forward = "separate"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of a retain and a forget batch, from one forward pass over both (``joint``) or
    from two (``separate``: the forget batch after the retain batch, as the reference loops)."""
    if forward == "separate":
        return model(x_retain), model(x_forget)
    logits = model(torch.cat([x_retain, x_forget]))
    return logits[: len(x_retain)], logits[len(x_retain) :]
