"""The fine-tuning family's retain term (:mod:`obliviate.methods.losses`): the original's label
smoothing by default, and one forward pass over the retain and forget batches."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from obliviate.methods import get_method, run_method
from obliviate.methods.bn import bn_layers
from obliviate.methods.calibrate import _losses
from obliviate.methods.losses import forward_pair, retain_smoothing
from obliviate.testing import TinyProblem


def test_retain_smoothing_defaults_to_the_originals_recipe(smoothed: TinyProblem) -> None:
    tc = smoothed.train_config
    assert tc.label_smoothing == 0.2
    assert retain_smoothing(None, tc) == 0.2 and retain_smoothing(0.0, tc) == 0.0 and retain_smoothing(0.1, tc) == 0.1
    ft = get_method("finetune")().config
    assert ft.train_config(tc).label_smoothing == 0.2  # type: ignore[attr-defined]
    assert get_method("finetune")(label_smoothing=0.0).config.train_config(tc).label_smoothing == 0.0  # type: ignore[attr-defined]
    l1 = get_method("l1_sparse")()
    assert l1.train_config(tc).label_smoothing == 0.2  # type: ignore[attr-defined]
    for name in ("finetune", "l1_sparse", "neggrad_plus", "calibrated_neggrad", "ct", "msg"):
        for bad in (1.0, -0.1):
            with pytest.raises(ValueError, match="label_smoothing"):
                get_method(name)(label_smoothing=bad)


def test_finetune_keeps_the_forget_rows_where_plain_cross_entropy_sharpens_them(smoothed: TinyProblem) -> None:
    """Fine-tuning a net trained with ε = 0.2 on the retain rows with plain cross-entropy lowers the
    forget rows' loss below the original's (every row sharpens, forgotten or not); continuing the
    original's loss does not. (The original saw no augmentation, so neither does the fine-tune.)"""
    data = smoothed.data(frozenset({"forget", "retain"}))
    ctx = smoothed.context(0)
    before = float(_losses(smoothed.model, data.forget, ctx.device).mean())
    after = {}
    for eps in (None, 0.0):
        m = get_method("finetune")(epochs=3, lr=0.02, augment=False, label_smoothing=eps)
        result, _ = run_method(m, smoothed.model, smoothed.data(m), ctx)
        assert result.info["retain_label_smoothing"] == (0.2 if eps is None else 0.0)
        after[eps] = float(_losses(result.model, data.forget, ctx.device).mean())
    assert after[0.0] < 0.3 * before  # measured 0.026 against 0.197 nats
    assert after[None] > 0.9 * before  # measured 0.202


def test_retain_finetune_of_ct_and_msg_takes_the_originals_smoothing(
    smoothed: TinyProblem, monkeypatch: pytest.MonkeyPatch
) -> None:
    import obliviate.methods.finetune as finetune

    seen: list[float] = []
    real = finetune.fit

    def spy(model: Any, loader: Any, tc: Any, **kw: Any) -> Any:
        seen.append(tc.label_smoothing)
        return real(model, loader, tc, **kw)

    monkeypatch.setattr(finetune, "fit", spy)
    for name in ("ct", "msg"):
        for eps, want in ((None, 0.2), (0.0, 0.0)):
            m = get_method(name)(epochs=0.2, label_smoothing=eps)
            run_method(m, smoothed.model, smoothed.data(m), smoothed.context(0))
            assert seen[-1] == want


@pytest.mark.parametrize("forward,updates", [("joint", 1), ("separate", 2)])
def test_neggrad_plus_steps_on_one_forward_pass(smoothed: TinyProblem, forward: str, updates: int) -> None:
    """``joint``: batch norm (train mode, ``bn_stats: method``) sees the retain and forget batch as
    one batch — one running-statistics update per step; ``separate`` is the reference loop's two."""
    m = get_method("neggrad_plus")(epochs=3 / 50, lr=1e-9, forward=forward, bn_stats="method")
    data = smoothed.data(m)
    before = [int(b.num_batches_tracked) for b in bn_layers(smoothed.model)]
    result, stats = run_method(m, smoothed.model, data, smoothed.context(0))
    after = [int(b.num_batches_tracked) for b in bn_layers(result.model)]
    assert before and stats.steps >= 1
    assert [a - b for a, b in zip(after, before)] == [updates * stats.steps] * len(before)
    assert result.info["retain_label_smoothing"] == 0.2


def test_forward_pair_splits_one_pass() -> None:
    """Without batch norm the two forwards give the same logits; the split keeps the batch order."""
    net = torch.nn.Linear(4, 3)
    xr, xf = torch.randn(5, 4), torch.randn(2, 4)
    jr, jf = forward_pair(net, xr, xf, "joint")
    sr, sf = forward_pair(net, xr, xf, "separate")
    assert jr.shape == (5, 3) and jf.shape == (2, 3)
    assert torch.allclose(jr, sr) and torch.allclose(jf, sf)
