"""Honour a deletion request end to end: a user's model and request in, an unlearned model and
its evidence out (:func:`unlearn`, :func:`audit`; the CLI's ``obliviate unlearn`` / ``audit`` /
``ledger verify``), with a hash-chained ledger per model lineage."""

from ..attacks.roc import bootstrap_auc
from .errors import DeletionDiverged
from .evidence import render_html, weights_sha256
from .ledger import LedgerError, verify
from .measurements import membership_audit
from .policy import plan
from .service import DeletionError, DeletionRefused, DeletionResult, audit, honour, reinit_factory, unlearn
from .userdata import UserDataError

__all__ = [
    "DeletionDiverged",
    "DeletionError",
    "DeletionRefused",
    "DeletionResult",
    "LedgerError",
    "UserDataError",
    "audit",
    "bootstrap_auc",
    "honour",
    "membership_audit",
    "plan",
    "reinit_factory",
    "render_html",
    "unlearn",
    "verify",
    "weights_sha256",
]
