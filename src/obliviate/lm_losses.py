"""Loss functions of the LLM unlearning methods, as pure functions of logits and labels.

``labels`` follow the Hugging Face convention: same shape as ``input_ids``, ``-100`` where no loss
is taken, *unshifted* (position ``t`` predicts ``labels[t]`` from ``logits[t-1]``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token negative log-likelihood ``(B, T-1)`` (0 where ignored) and the float mask."""
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    nll = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="none",
    ).view(shift_labels.shape)
    mask = (shift_labels != IGNORE).float()
    return nll * mask, mask


def sequence_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(−log π(y|x)`` summed over each sequence's label tokens ``(B,)``, token counts ``(B,))``."""
    nll, mask = token_nll(logits, labels)
    return nll.sum(1), mask.sum(1)


def mean_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean NLL over all label tokens of the batch (what ``model(labels=...).loss`` returns)."""
    nll, mask = token_nll(logits, labels)
    return nll.sum() / mask.sum().clamp_min(1.0)


def npo_loss(nll: torch.Tensor, ref_nll: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO forget loss (Zhang et al. 2024, arXiv:2404.05868, eq. 3).

    ``L = −(2/β)·E[log σ(−β·log(π_θ(y|x)/π_ref(y|x)))]`` with ``log π = −nll`` summed over the
    answer tokens. As β → 0 it tends to gradient ascent on ``log π_θ`` (up to a constant).
    """
    log_ratio = ref_nll - nll  # log π_θ − log π_ref
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


def simnpo_loss(nll_sum: torch.Tensor, n_tokens: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """SimNPO forget loss (Fan et al. 2024, arXiv:2410.07163, eq. 4): reference-free,
    length-normalised, with reward margin γ:

    ``L = −(2/β)·E[log σ(−(β/|y|)·log π_θ(y|x) − γ)]``.
    """
    avg_nll = nll_sum / n_tokens.clamp_min(1.0)  # −(1/|y|) log π_θ(y|x)
    return -(2.0 / beta) * F.logsigmoid(beta * avg_nll - gamma).mean()


def kl_to_reference(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over label positions of KL(π_ref ‖ π_θ) of the next-token distributions (the
    retain-side KL term of NPO+KL / TOFU's KL method)."""
    mask = (labels[:, 1:] != IGNORE).float()
    logp = F.log_softmax(logits[:, :-1, :].float(), dim=-1)
    ref_logp = F.log_softmax(ref_logits[:, :-1, :].float(), dim=-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp_min(1.0)


def masked_mse(activations: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked token positions (mean over the hidden dimension too):
    RMU's ``‖h − c·u‖²`` and ``‖h − h_frozen‖²`` terms (Li et al. 2024, arXiv:2403.03218, eq. 1–2)."""
    m = mask.to(activations.dtype).unsqueeze(-1)
    sq = (activations.float() - target.float()).pow(2).mean(-1, keepdim=True)
    return (sq * m).sum() / m.sum().clamp_min(1.0)
