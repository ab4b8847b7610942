"""``loss_match``: forget rows' losses moved onto the held-out rows' distribution, by rank per class."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from obliviate.core import ConfigError
from obliviate.methods import UnlearnData, get_method, run_method
from obliviate.methods.calibrate import _losses
from obliviate.methods.loss_match import quantile_targets
from obliviate.testing import TinyProblem

HELDOUT = np.arange(0, 450, 2)


def test_quantile_targets_by_rank_within_each_class() -> None:
    """By hand: class 0 has four forget rows and held-out losses 0..3 (quantiles at 1/8, 3/8, 5/8,
    7/8 interpolate to 0.375, 1.125, 1.875, 2.625), assigned in the order of the rows' own losses;
    class 1 has two held-out rows, fewer than ``min_class_rows``, so it reads all six."""
    f_loss = torch.tensor([0.3, 0.1, 0.4, 0.2, 5.0, 0.0])
    f_y = torch.tensor([0, 0, 0, 0, 1, 1])
    h_loss = torch.tensor([3.0, 0.0, 2.0, 1.0, 10.0, 20.0])
    h_y = torch.tensor([0, 0, 0, 0, 1, 1])
    t = quantile_targets(f_loss, f_y, h_loss, h_y, min_class_rows=3)
    assert t[:4].tolist() == pytest.approx([1.875, 0.375, 2.625, 1.125])
    pooled = torch.quantile(h_loss.double(), torch.tensor([0.25, 0.75], dtype=torch.float64))
    assert t[4:].tolist() == pytest.approx([pooled[1].item(), pooled[0].item()])  # the larger loss, the higher target
    # with the class's own two rows allowed, class 1 reads only them
    t2 = quantile_targets(f_loss, f_y, h_loss, h_y, min_class_rows=2)
    assert t2[4:].tolist() == pytest.approx([17.5, 12.5])
    with pytest.raises(ValueError, match="held-out"):
        quantile_targets(f_loss, f_y, h_loss[:0], h_y[:0])
    # ranked by another hardness (the training record's, negated) instead of the loss: class 0's
    # hardest row by that score gets the top quantile whatever its loss
    t3 = quantile_targets(f_loss, f_y, h_loss, h_y, 3, hardness=torch.tensor([0.0, 3.0, 1.0, 2.0, 0.0, 1.0]))
    assert t3[:4].tolist() == pytest.approx([0.375, 2.625, 1.125, 1.875])
    assert t3[4:].tolist() == pytest.approx([pooled[0].item(), pooled[1].item()])


def test_rank_by_learning_speed_reads_the_training_record(smoothed: TinyProblem) -> None:
    """Ranked by a record that reverses the loss order, the rows get other targets (same set per
    class) than ranked by their loss; without a record the setting is refused."""
    data = UnlearnData(
        smoothed.dataset, smoothed.split, frozenset({"forget", "retain", "validation"}), validation_rows=HELDOUT
    )
    by_loss, _ = run_method(get_method("loss_match")(steps=1), smoothed.model, data, smoothed.context(0))
    forget_loss = _losses(smoothed.model, data.forget, torch.device("cpu"))
    record = torch.full((len(smoothed.dataset.train_labels),), float("nan"))
    record[torch.as_tensor(data.forget.rows)] = forget_loss  # high confidence where the loss is high: reversed
    ctx = dataclasses.replace(smoothed.context(0), training_confidence=record)
    m = get_method("loss_match")(steps=1, rank_by="learning_speed")
    by_record, _ = run_method(m, smoothed.model, data, ctx)
    assert by_record.info["forget_loss_target"] == pytest.approx(by_loss.info["forget_loss_target"], rel=1e-6)
    assert by_record.info["rows_short"] != by_loss.info["rows_short"]
    with pytest.raises(ConfigError, match="training record"):
        run_method(m, smoothed.model, data, smoothed.context(0))


def test_loss_match_moves_the_forget_rows_towards_the_held_out_rows(smoothed: TinyProblem) -> None:
    """The forget rows' mean loss rises towards the held-out target and stays below it, the retain
    rows stay learnt; the rows short of their target are counted, and the method reads the
    validation split it declares. With a plain cross-entropy retain term (the context says the
    original was trained without smoothing) the same steps lower the forget loss instead."""
    m = get_method("loss_match")(steps=40, lr=0.02, beta=0.5, min_gap=0.0)
    data = smoothed.data(m)
    ctx = smoothed.context(0)
    before = float(_losses(smoothed.model, data.forget, ctx.device).mean())
    result, stats = run_method(m, smoothed.model, data, ctx)
    after = float(_losses(result.model, data.forget, ctx.device).mean())
    info = result.info
    assert info["forget_loss_start"] == pytest.approx(before, rel=1e-4)
    assert before < after < info["forget_loss_target"]
    assert 0 < info["rows_short"] < info["rows_forget"] == len(data.forget)
    assert smoothed.accuracy(result.model, "retain") > 0.99
    assert "validation" in stats.splits_read and stats.steps == 40
    assert info["retain_label_smoothing"] == ctx.train_config.label_smoothing == pytest.approx(0.2)
    plain = dataclasses.replace(ctx, train_config=ctx.train_config.with_(label_smoothing=0.0))
    sharpened, _ = run_method(m, smoothed.model, smoothed.data(m), plain)
    assert sharpened.info["retain_label_smoothing"] == 0.0
    assert float(_losses(sharpened.model, data.forget, ctx.device).mean()) < before


def test_visits_scale_the_steps_with_the_rows_short_of_their_target(smoothed: TinyProblem) -> None:
    """``visits`` passes over the short rows set the step count, ``steps`` caps it; a batch with
    fewer rows than B pushes each row as a full batch's row would (the sum is divided by B)."""
    ctx = smoothed.context(0)
    one = get_method("loss_match")(steps=500, visits=1.0, forget_batch_size=16, min_gap=0.0)
    result, stats = run_method(one, smoothed.model, smoothed.data(one), ctx)
    short = result.info["rows_short"]
    assert short > 16 and stats.steps == result.info["steps_budget"] == -(-short // 16)
    capped = get_method("loss_match")(steps=3, visits=100.0, forget_batch_size=16, min_gap=0.0)
    result, stats = run_method(capped, smoothed.model, smoothed.data(capped), ctx)
    assert stats.steps == result.info["steps_budget"] == 3
    # B = 4096 > every short row: one step's forget term weighs each row 1/4096, so the loss barely
    # moves; at B = short rows the same single step moves it further
    data = smoothed.data(one)
    before = float(_losses(smoothed.model, data.forget, ctx.device).mean())
    moved = []
    for b in (4096, short):
        m = get_method("loss_match")(steps=1, beta=0.0, lr=0.5, forget_batch_size=b, min_gap=0.0, bn_stats="keep")
        r, _ = run_method(m, smoothed.model, smoothed.data(m), ctx)
        moved.append(float(_losses(r.model, data.forget, ctx.device).mean()) - before)
    assert 0 <= moved[0] < moved[1] / 10
    with pytest.raises(ValueError, match="visits"):
        get_method("loss_match")(visits=0.0)


def test_each_step_is_one_forward_pass_over_the_retain_and_forget_rows(smoothed: TinyProblem) -> None:
    """Batch norm (train mode, ``bn_stats: method``) sees the retain and the forget batch as one
    batch: one running-statistics update per step, never a forget batch alone (which, for an ids
    request inside one class, would normalise it with one class's statistics and end the running
    statistics on them)."""
    from obliviate.methods.bn import bn_layers

    m = get_method("loss_match")(steps=3, lr=1e-9, min_gap=0.0, bn_stats="method")
    before = [int(b.num_batches_tracked) for b in bn_layers(smoothed.model)]
    result, stats = run_method(m, smoothed.model, smoothed.data(m), smoothed.context(0))
    after = [int(b.num_batches_tracked) for b in bn_layers(result.model)]
    assert before and stats.steps == 3 and [a - b for a, b in zip(after, before)] == [3] * len(before)


@pytest.mark.bad_input
def test_loss_match_refuses_class_requests_and_needs_held_out_rows(tiny: TinyProblem, tiny_random: TinyProblem) -> None:
    m = get_method("loss_match")(steps=2)
    with pytest.raises(ConfigError, match="sample-level"):
        run_method(
            m, tiny.model, UnlearnData(tiny.dataset, tiny.split, m.uses, validation_rows=HELDOUT), tiny.context(0)
        )
    with pytest.raises(Exception, match="validation_fraction"):
        run_method(m, tiny_random.model, tiny_random.data(m), tiny_random.context(0))
    for bad in ({"steps": 0}, {"beta": 1.5}, {"huber": 0.0}, {"min_gap": -0.1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            get_method("loss_match")(**bad)
