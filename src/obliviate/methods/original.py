"""``original``: no unlearning — the baseline every method is compared against."""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import MethodConfig, MethodResult, VisionMethod, register_method


@register_method("original")
class Original(VisionMethod[MethodConfig]):
    """The original model, unchanged (the 'before' column of every table)."""

    Config = MethodConfig
    uses: frozenset[str] = frozenset()  # reads no data at all
    reference = "baseline (no unlearning)"

    def unlearn(self, model: nn.Module, data: Any, ctx: Any) -> MethodResult:
        return MethodResult(model=model, steps=0)
