"""The calibrated stop (obliviate.methods.calibrate): for a sample-level request, unlearning ends
when the forget rows' loss reaches held-out rows' of the same classes — no retrained model used."""

from __future__ import annotations

import numpy as np
import pytest

from obliviate.core import ConfigError
from obliviate.methods import UnlearnData, get_method, run_method
from obliviate.methods.calibrate import CalibratedStop
from obliviate.testing import TinyProblem

HELDOUT = np.arange(0, 450, 2)  # every other test row is the validation split (the memorised fixture checks on these)


def _data(problem: TinyProblem, method) -> UnlearnData:  # type: ignore[no-untyped-def]
    return UnlearnData(problem.dataset, problem.split, method.uses, validation_rows=HELDOUT)


def test_the_stop_weights_heldout_rows_to_the_forget_classes(memorised: TinyProblem) -> None:
    m = get_method("calibrated_neggrad")()
    data = _data(memorised, m)
    stop = CalibratedStop(data.forget, data.validation, memorised.context(0).device)
    f_loss, h_loss = stop.gap(memorised.model)
    assert f_loss < h_loss  # the original has seen the forget rows: they are easier than held-out rows
    w = stop._weights.numpy()
    labels = data.validation.labels.numpy()
    f_labels = data.forget.labels.numpy()
    for c in np.unique(f_labels):  # each class carries its share of the forget set
        assert w[labels == c].sum() == pytest.approx((f_labels == c).mean(), abs=1e-9)


def test_calibrated_neggrad_stops_where_held_out_rows_are(memorised: TinyProblem) -> None:
    tiny_random = memorised
    m = get_method("calibrated_neggrad")()
    result, stats = run_method(m, tiny_random.model, _data(tiny_random, m), tiny_random.context(0))
    info = result.info
    assert info["stop"] == "calibrated" and info["stop_forget_loss"] >= info["stop_heldout_loss"]
    budget = get_method("neggrad_plus")({"beta": 0.3})
    _full, full_stats = run_method(budget, tiny_random.model, tiny_random.data(budget), tiny_random.context(0))
    assert stats.steps < full_stats.steps  # it ended before the budget
    assert stats.splits_read == ["forget", "retain", "validation"]
    # the same stop as an option of neggrad_plus gives the same run
    # the target is the original's held-out loss (stop_reference: start), measured once
    _, h0 = CalibratedStop(
        *(lambda d: (d.forget, d.validation))(_data(tiny_random, m)), tiny_random.context(0).device
    ).gap(tiny_random.model)
    assert info["stop_reference"] == "start" and info["stop_heldout_loss"] == pytest.approx(h0, rel=1e-6)
    assert tiny_random.accuracy(result.model, "forget") < 1.0  # measured 0.993 (the memorised original: 1.000)
    opt = get_method("neggrad_plus")({"stop": "calibrated", "stop_every": 5, "beta": 0.3})
    _same, same_stats = run_method(opt, tiny_random.model, _data(tiny_random, opt), tiny_random.context(0))
    assert same_stats.steps == stats.steps


def test_finetune_takes_the_stop_too(memorised: TinyProblem) -> None:
    tiny_random = memorised
    m = get_method("finetune")({"stop": "calibrated", "stop_every": 5, "epochs": 5})
    result, stats = run_method(m, tiny_random.model, _data(tiny_random, m), tiny_random.context(0))
    assert result.info["stop"] == "calibrated" and result.info["stop_checks"] >= 1
    assert stats.splits_read == ["forget", "retain", "validation"]  # the stop measures the forget rows


@pytest.mark.bad_input
def test_the_stop_refuses_class_requests_and_missing_heldout_rows(tiny: TinyProblem, memorised: TinyProblem) -> None:
    tiny_random = memorised
    m = get_method("calibrated_neggrad")()
    with pytest.raises(ConfigError, match="sample-level requests"):
        run_method(m, tiny.model, _data(tiny, m), tiny.context(0))
    from obliviate.core import SplitAccessError

    with pytest.raises(SplitAccessError, match="validation_fraction"):
        run_method(
            m, tiny_random.model, UnlearnData(tiny_random.dataset, tiny_random.split, m.uses), tiny_random.context(0)
        )


def test_a_study_skips_the_stop_where_it_cannot_apply(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from obliviate.models import ModelCache
    from obliviate.study.spec import parse_study
    from obliviate.study.tasks.vision import VisionTask
    from obliviate.testing import RecordingProgress

    def make_task(spec):  # type: ignore[no-untyped-def]
        return VisionTask(spec, ModelCache(tmp_path), torch.device("cpu"))

    raw = {
        "name": "s",
        "dataset": "digits",
        "models": [{"name": "small_cnn", "kwargs": {"width": 0.25}}],
        "requests": [{"kind": "class", "classes": ["3"]}, {"kind": "random", "fraction": 0.1}],
        "methods": ["original", "calibrated_neggrad"],
        "seeds": [0],
    }
    task = make_task(parse_study(raw))
    task.prepare(RecordingProgress())
    why = {(g.request, u.label): u.not_applicable for g in task.plan() for u in g.units}
    assert "sample-level" in why[("class:3", "calibrated_neggrad")]
    assert "validation_fraction" in why[("random:0.1", "calibrated_neggrad")]
    task = make_task(parse_study({**raw, "validation_fraction": 0.2}))
    task.prepare(RecordingProgress())
    why = {(g.request, u.label): u.not_applicable for g in task.plan() for u in g.units}
    assert why[("random:0.1", "calibrated_neggrad")] is None


def test_each_check_reads_a_seeded_sample_of_the_forget_rows(memorised: TinyProblem) -> None:
    """``stop_rows`` caps the rows a check reads (a random 10 % of CIFAR-10 is 5,000 rows, read
    every ``stop_every`` steps): a seeded sample, the same for the same seed, all rows under the cap."""
    m = get_method("calibrated_neggrad")()
    data = _data(memorised, m)
    device = memorised.context(0).device
    n = len(data.forget)
    a = CalibratedStop(data.forget, data.validation, device, rows=50, seed=1)
    b = CalibratedStop(data.forget, data.validation, device, rows=50, seed=1)
    c = CalibratedStop(data.forget, data.validation, device, rows=50, seed=2)
    assert len(a._rows) == 50 and len(set(a._rows.tolist())) == 50 and int(a._rows.max()) < n
    assert a._rows.tolist() == b._rows.tolist() != c._rows.tolist()
    assert CalibratedStop(data.forget, data.validation, device, rows=n + 1)._rows is None
    full, _ = CalibratedStop(data.forget, data.validation, device).gap(memorised.model)
    part, held = a.gap(memorised.model)
    assert part < held and 0.0 < part < 10 * full + 0.05  # the sample's loss is of the same order
    a(memorised.model, 0)
    assert a.info()["stop_rows"] == 50 and a.info()["stop_reference"] == "current"
    with pytest.raises(ConfigError, match="stop_rows"):
        get_method("calibrated_neggrad")({"stop_rows": 0})


def test_the_target_is_the_original_held_out_loss_not_the_drifting_one(memorised: TinyProblem) -> None:
    """Under ``start`` the held-out loss is measured once, on the model before unlearning; under
    ``current`` it is re-measured on the model being unlearned, and moves with it."""
    import copy

    import torch

    m = get_method("calibrated_neggrad")()
    data = _data(memorised, m)
    device = memorised.context(0).device
    fixed = CalibratedStop(data.forget, data.validation, device, start=memorised.model)
    drifting = CalibratedStop(data.forget, data.validation, device)
    damaged = copy.deepcopy(memorised.model)
    with torch.no_grad():
        for p in damaged.parameters():
            p.add_(0.05 * torch.randn_like(p))
    _, h_orig = drifting.gap(memorised.model)
    assert fixed.gap(damaged)[1] == pytest.approx(h_orig, rel=1e-9)
    assert drifting.gap(damaged)[1] > h_orig  # the damaged model's held-out loss has risen


def test_weighted_median_is_the_half_weight_point() -> None:
    """Checked against a brute-force definition: the smallest value whose cumulative weight
    reaches half the total; unit weights give the lower median; zero weights are ignored."""
    import torch

    from obliviate.methods.calibrate import weighted_median

    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.normal(size=rng.integers(1, 40))
        w = rng.random(len(v)) * (rng.random(len(v)) > 0.2)
        if w.sum() == 0:
            continue
        brute = min(x for x in v if w[v <= x].sum() >= w.sum() / 2)
        assert weighted_median(torch.tensor(v), torch.tensor(w)) == pytest.approx(brute, abs=0)
    assert weighted_median(torch.tensor([5.0, 1.0, 3.0, 2.0]), torch.ones(4)) == 2.0
    # a few rows pushed far move the mean, not the median
    assert weighted_median(torch.tensor([0.1, 0.2, 0.3, 0.4, 90.0]), torch.ones(5)) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="positive weight"):
        weighted_median(torch.tensor([1.0]), torch.tensor([0.0]))


def test_the_error_and_median_statistics(memorised: TinyProblem) -> None:
    """``error`` compares the forget rows' misclassified fraction with the class-weighted held-out
    error (computed here by hand from the predictions); ``median`` the medians. Both see the
    memorised forget rows as easier than held-out rows; a run ends on the stop or else on its budget."""
    import torch

    m = get_method("calibrated_neggrad")()
    data = _data(memorised, m)
    device = memorised.context(0).device
    stop = CalibratedStop(data.forget, data.validation, device, statistic="error")
    f_err, h_err = stop.gap(memorised.model)
    model = memorised.model.eval()

    def wrong(view):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            return np.concatenate(
                [(model(b["image"]).argmax(1) != b["label"]).numpy() for b in view.loader(128, shuffle=False)]
            ).astype(float)

    assert f_err == pytest.approx(wrong(data.forget).mean(), abs=1e-12)
    assert h_err == pytest.approx(float((wrong(data.validation) * stop._weights.numpy()).sum()), abs=1e-12)
    assert 0.0 <= f_err <= h_err <= 1.0
    med = CalibratedStop(data.forget, data.validation, device, statistic="median")
    f_med, h_med = med.gap(memorised.model)
    f_mean, _h_mean = CalibratedStop(data.forget, data.validation, device).gap(memorised.model)
    assert f_med < h_med and f_med <= f_mean  # losses are right-skewed: the median sits below the mean
    budget = get_method("neggrad_plus")({"beta": 0.3})
    _, full = run_method(budget, memorised.model, memorised.data(budget), memorised.context(0))
    ends = {}
    for statistic in ("median", "error"):
        m = get_method("calibrated_neggrad")({"stop_statistic": statistic})
        result, stats = run_method(m, memorised.model, _data(memorised, m), memorised.context(0))
        what = "error" if statistic == "error" else "loss"
        info = result.info
        assert info["stop_statistic"] == statistic and f"stop_forget_{what}" in info
        fired = info[f"stop_forget_{what}"] >= info[f"stop_heldout_{what}"]
        # it ends on the stop, or else on the budget (a stop may also fire at the budget's last step)
        assert (stats.steps < full.steps and fired) or (stats.steps == full.steps)
        assert fired or stats.steps == full.steps
        ends[statistic] = fired
    assert ends["error"]  # a few rows misclassified is reached before the budget (the median is not, here)
    with pytest.raises(ConfigError, match="stop_statistic"):
        get_method("calibrated_neggrad")({"stop_statistic": "max"})
    with pytest.raises(ConfigError, match="stop_statistic"):
        CalibratedStop(data.forget, data.validation, device, statistic="max")  # type: ignore[arg-type]


def test_under_keep_each_check_measures_the_returned_model(memorised: TinyProblem) -> None:
    """``bn_stats: keep`` restores the original's batch-norm statistics after the method, so a check
    must read the model with those statistics, not the ones the loop's train-mode passes rewrote;
    the loop's statistics are back in place after the check."""
    import copy

    import torch

    from obliviate.methods.bn import bn_layers, restore, snapshot

    m = get_method("calibrated_neggrad")()
    data = _data(memorised, m)
    device = memorised.context(0).device
    model = copy.deepcopy(memorised.model)
    assert bn_layers(model), "the fixture's net must have batch norm for this test to mean anything"
    original = snapshot(model)
    keep = CalibratedStop(data.forget, data.validation, device, start=model, bn_stats="keep", statistic="error")
    loop = CalibratedStop(data.forget, data.validation, device, start=model, statistic="error")
    with torch.no_grad():  # a train-mode pass on shifted inputs rewrites the running statistics
        model.train()
        for b in data.forget.loader(64, shuffle=False):
            model(b["image"] * 3.0 + 1.0)
    rewritten = snapshot(model)
    assert any(not torch.equal(a["running_mean"], b["running_mean"]) for a, b in zip(original, rewritten))
    returned = copy.deepcopy(model)
    restore(returned, original)
    f_keep, _ = keep.gap(model)
    assert f_keep == pytest.approx(
        CalibratedStop(data.forget, data.validation, device, statistic="error").gap(returned)[0], abs=1e-12
    )
    assert f_keep != loop.gap(model)[0]  # the rewritten statistics measure another model
    assert all(torch.equal(a["running_mean"], b["running_mean"]) for a, b in zip(snapshot(model), rewritten))
    assert model.training  # the mode is put back too
    keep(model, 0)
    assert keep.info()["stop_bn"] == "start" and loop.info()["stop_bn"] == "loop"
    with pytest.raises(ValueError, match="keep"):
        CalibratedStop(data.forget, data.validation, device, bn_stats="keep")
