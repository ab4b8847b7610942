"""Membership-inference attacks: fit on members / non-members, score a split (see :mod:`.mia`)."""

from .mia import (
    CLASSIFIERS,
    FEATURES,
    FeatureAttack,
    attack_feature,
    balanced_rows,
    best_threshold_accuracy,
    confidence,
    entropy,
    entropy_attack,
    loss_auc,
    mia_efficacy,
    modified_entropy,
    subsample,
    svc_attack,
)

__all__ = [
    "CLASSIFIERS",
    "FEATURES",
    "FeatureAttack",
    "attack_feature",
    "balanced_rows",
    "best_threshold_accuracy",
    "confidence",
    "entropy",
    "entropy_attack",
    "loss_auc",
    "mia_efficacy",
    "modified_entropy",
    "subsample",
    "svc_attack",
]
