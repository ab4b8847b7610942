"""The errors a deletion request raises, whichever model it is about."""

from __future__ import annotations

from typing import Any


class DeletionError(ValueError):
    """A deletion request that cannot be honoured as asked; the message says what to change."""


class DeletionRefused(DeletionError):
    """No attempt passed the guard and retraining was forbidden (``fallback="refuse"``) or is not
    possible; nothing is delivered. ``evidence`` records every attempt and why it was rolled back."""

    def __init__(self, message: str, evidence: dict[str, Any]) -> None:
        super().__init__(message)
        self.evidence = evidence


class DeletionDiverged(DeletionError):
    """The named method's training or its measures went non-finite (NaN or ±inf): nothing is
    delivered or written; the message names the method, the step and the value."""
