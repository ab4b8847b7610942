"""The measurements behind a deletion request's evidence: accuracy and loss per split, and a
membership audit with its uncertainty and a plain verdict.

The audit is the population loss-threshold attack (Yeom et al., CSF 2018): score each example by
its negative cross-entropy and ask how well that separates the forget rows (members, if the
model still remembers them) from held-out rows the model never saw, as a ROC AUC. Held-out rows
are drawn in the forget set's class proportions — against the whole test set the attack measures how
hard a class is, not membership (measured: 0.43 for the original model on 500 ids of one class).
A percentile bootstrap over both groups gives the interval. This is a *population* attack: it
can show that a forget set is still recognisable, not prove that one person's rows are gone, and
it is fooled by differences between the training and the test set that every model shares.
:func:`per_example_audit` (offline LiRA against K ≥ 2 models retrained without the rows) judges
each row against its own reference distribution, which cancels those differences out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..attacks.per_example import matched_nonmembers
from ..attacks.roc import bootstrap_auc

ATTACK = (
    "population loss-threshold attack (Yeom et al., CSF 2018): ROC AUC of −loss, forget rows "
    "against held-out rows of the same classes; 0.5 = indistinguishable"
)


def split_figures(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """``{n, accuracy, loss}`` of one split (loss: mean cross-entropy in nats)."""
    if len(labels) == 0:
        return {"n": 0}
    logits, labels = logits.double(), labels.long()
    return {
        "n": int(len(labels)),
        "accuracy": float((logits.argmax(1) == labels).double().mean()),
        "loss": float(F.cross_entropy(logits, labels)),
    }


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    return F.cross_entropy(logits.double(), labels.long(), reduction="none").numpy()


def membership_audit(
    forget: tuple[torch.Tensor, torch.Tensor],
    heldout: tuple[torch.Tensor, torch.Tensor],
    *,
    seed: int = 0,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """The loss-threshold audit of one model: AUC with a 95 % interval and a verdict."""
    f_logits, f_labels = forget
    h_logits, h_labels = heldout
    matched = False
    if len(f_labels) and len(h_labels):
        try:  # held-out rows in the forget set's class proportions
            rows = torch.as_tensor(matched_nonmembers(f_labels.numpy(), h_labels.numpy(), seed=seed + 31))
            h_logits, h_labels, matched = h_logits[rows], h_labels[rows], True
        except ValueError:  # no held-out row of any forget class: the whole held-out set, said so
            pass
    if len(h_labels) == 0 or len(f_labels) == 0:
        return {"attack": ATTACK, "available": False, "verdict": "no held-out rows: the membership audit could not run"}
    auc, lo, hi = bootstrap_auc(
        -per_example_loss(f_logits, f_labels), -per_example_loss(h_logits, h_labels), n_boot=n_boot, seed=seed
    )
    if lo <= 0.5 <= hi:
        verdict = (
            f"indistinguishable from held-out data by this attack: AUC {auc:.3f} [{lo:.3f}, {hi:.3f}] contains 0.5"
        )
        level = "indistinguishable"
    elif lo > 0.5:
        verdict = (
            f"distinguishable from held-out rows of their classes by this attack (AUC {auc:.3f} "
            f"[{lo:.3f}, {hi:.3f}] > 0.5); alone this does not show memory — a model that never saw "
            "the rows can score above 0.5 too, so compare with a retrained reference"
        )
        level = "distinguishable"
    else:
        verdict = (
            f"over-forgotten: the forget rows look less familiar than unseen rows (AUC {auc:.3f} "
            f"[{lo:.3f}, {hi:.3f}] < 0.5), which itself tells an attacker they were removed"
        )
        level = "over-forgotten"
    return {
        "attack": ATTACK,
        "available": True,
        "auc": auc,
        "ci95": [lo, hi],
        "n_bootstrap": n_boot,
        "members": int(len(f_labels)),
        "nonmembers": int(len(h_labels)),
        "nonmembers_matched_to_forget_classes": matched,
        "level": level,
        "verdict": verdict,
    }


def compare_to_reference(model_audit: dict[str, Any], reference_audit: dict[str, Any]) -> str:
    """Whether the unlearned model's audit interval overlaps the retrained reference's."""
    if not (model_audit.get("available") and reference_audit.get("available")):
        return "no comparison: an audit could not run"
    (lo, hi), (rlo, rhi) = model_audit["ci95"], reference_audit["ci95"]
    if hi >= rlo and rhi >= lo:
        return (
            f"consistent with the retrained reference: AUC {model_audit['auc']:.3f} [{lo:.3f}, {hi:.3f}] "
            f"vs {reference_audit['auc']:.3f} [{rlo:.3f}, {rhi:.3f}]"
        )
    return (
        f"differs from the retrained reference: AUC {model_audit['auc']:.3f} [{lo:.3f}, {hi:.3f}] "
        f"vs {reference_audit['auc']:.3f} [{rlo:.3f}, {rhi:.3f}]"
    )


LIRA = (
    "offline LiRA (Carlini et al., S&P 2022): each row's logit confidence φ = log(p_y/(1−p_y)) "
    "against the same row's φ under K models retrained without the forget rows (pooled variance)"
)


def per_example_audit(
    target_phi: tuple[np.ndarray, np.ndarray],
    reference_phi: list[tuple[np.ndarray, np.ndarray]],
    *,
    seed: int = 0,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Offline LiRA and RMIA on the forget rows against held-out rows of their classes, for one model.

    ``target_phi`` = (φ on forget rows, φ on held-out rows), each ``(N, Q)``; ``reference_phi`` the
    same for each of K ≥ 2 reference models (:func:`obliviate.attacks.per_example.reference_attacks`).
    Each row is judged against its own reference distribution, so a difference between the training
    and the test set that every model shares — which fools the population attack — cancels out."""
    from ..attacks.per_example import attacker, reference_attacks, verdict

    k = len(reference_phi)
    if k < 2:
        return {"attack": LIRA, "available": False, "verdict": f"needs at least 2 reference models, got {k}"}
    v = reference_attacks(target_phi, reference_phi, n_boot=n_boot, seed=seed)
    who = attacker(k, np.asarray(target_phi[0]).shape[-1] if np.ndim(target_phi[0]) == 2 else 1)
    read = verdict(v["lira/auc"], v["lira/auc_lo"], v["lira/auc_hi"], f"offline LiRA, K = {k}")
    return {
        "attack": f"{LIRA}; {who}",
        "attacker": who,
        "available": True,
        "auc": v["lira/auc"],
        "ci95": [v["lira/auc_lo"], v["lira/auc_hi"]],
        "tpr_at_1pct_fpr": v["lira/tpr_at_1pct"],
        "tpr_ci95": [v["lira/tpr_at_1pct_lo"], v["lira/tpr_at_1pct_hi"]],
        "tpr_at_0p1pct_fpr": v["lira/tpr_at_0p1pct"],
        "rmia": {
            "auc": v["rmia/auc"],
            "ci95": [v["rmia/auc_lo"], v["rmia/auc_hi"]],
            "tpr_at_1pct_fpr": v["rmia/tpr_at_1pct"],
        },
        "members": int(len(target_phi[0])),
        "nonmembers": int(len(target_phi[1])),
        "level": read["level"],
        "verdict": f"{read['text']}, TPR at 1 % FPR {v['lira/tpr_at_1pct']:.3f} "
        f"[{v['lira/tpr_at_1pct_lo']:.3f}, {v['lira/tpr_at_1pct_hi']:.3f}]; RMIA AUC {v['rmia/auc']:.3f} "
        f"[{v['rmia/auc_lo']:.3f}, {v['rmia/auc_hi']:.3f}]",
    }
