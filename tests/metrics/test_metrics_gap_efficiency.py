"""Avg. Gap, over-forgetting, relearn time, efficiency, the default set, and an end-to-end run on
the tiny digits problem."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from obliviate.data import BatchLoader
from obliviate.methods import UnlearnData
from obliviate.metrics import (
    DIRECTIONS,
    METRICS,
    EvalInputs,
    MissingInputError,
    Outputs,
    compute_metrics,
    list_metrics,
)
from obliviate.metrics.defaults import DEFAULT_METRICS
from obliviate.metrics.gap import FORGETTING_SENSE, avg_gap, over_forgetting, reference_values
from obliviate.metrics.privacy import svc_mia_efficacy
from obliviate.metrics.relearn import anamnesis_index, relearn_curve, steps_to_relearn
from obliviate.testing import TinyProblem
from obliviate.training import fit, make_loader, predict_logits


# -- Avg. Gap ------------------------------------------------------------------------------------
def test_avg_gap_hand_case() -> None:
    method = {"forget_acc": 0.10, "retain_acc": 0.99, "test_acc": 0.90, "mia_efficacy": 0.80}
    gold = {"forget_acc": 0.05, "retain_acc": 1.00, "test_acc": 0.94, "mia_efficacy": 0.90}
    gap = avg_gap(method, gold)
    assert gap["forget_acc"] == pytest.approx(5.0) and gap["retain_acc"] == pytest.approx(1.0)
    assert gap["test_acc"] == pytest.approx(4.0) and gap["mia_efficacy"] == pytest.approx(10.0)
    assert gap["avg"] == pytest.approx(5.0)
    assert avg_gap(gold, gold)["avg"] == 0.0
    with pytest.raises(ValueError, match="missing"):
        avg_gap({"forget_acc": 0.1}, gold)


def _labelled_outputs(correct: int, total: int, k: int = 4, sharp: float = 5.0, seed: int = 0) -> Outputs:
    """``total`` rows of which the first ``correct`` are predicted right."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (total,), generator=g)
    pred = labels.clone()
    pred[correct:] = (labels[correct:] + 1) % k
    logits = torch.randn(total, k, generator=g)
    logits[torch.arange(total), pred] += sharp
    return Outputs(logits, labels)


def test_gap_metric_on_synthetic_outputs() -> None:
    def model(forget_correct: int, seed: int) -> dict[str, Outputs]:
        return {
            "forget": _labelled_outputs(forget_correct, 50, seed=seed),
            "retain": _labelled_outputs(190, 200, seed=seed + 1),
            "test": _labelled_outputs(80, 100, seed=seed + 2),
            "test_retain": _labelled_outputs(80, 100, seed=seed + 2),
        }

    retrained = model(20, 10)
    inputs = EvalInputs({"unlearned": model(45, 10), "retrained": retrained}, num_classes=4, seed=0)
    values, directions = compute_metrics(["gap_to_retrain"], inputs)
    assert set(values) == {
        "gap/avg",
        "gap/forget_acc",
        "gap/retain_acc",
        "gap/test_acc",
        "gap/mia_efficacy",
    }
    assert all(d == "lower" for d in directions.values())
    assert values["gap/forget_acc"] == pytest.approx(100 * (45 - 20) / 50)
    assert values["gap/retain_acc"] == 0.0 and values["gap/test_acc"] == 0.0
    mia = 100 * abs(svc_mia_efficacy(inputs, "unlearned") - svc_mia_efficacy(inputs, "retrained"))
    assert values["gap/mia_efficacy"] == pytest.approx(mia)
    assert values["gap/avg"] == pytest.approx((50.0 + mia) / 4)
    same = EvalInputs({"unlearned": retrained, "retrained": retrained}, num_classes=4)
    assert all(v == 0.0 for v in compute_metrics(["gap_to_retrain"], same)[0].values())
    assert compute_metrics(["gap_to_retrain"], EvalInputs({"unlearned": retrained}, num_classes=4))[0] == {}


# -- over-forgetting -----------------------------------------------------------------------------
def test_over_forgetting_flags_the_papers_zrf_case() -> None:
    # Seed paper, Table III: the method's ZRF 0.9941 against the retrained ("gold") 0.9299.
    flagged = over_forgetting({"zrf_compat/test_forget": 0.9941}, {"zrf_compat/test_forget": 0.9299}, tol=0.05)
    assert flagged == {"zrf_compat/test_forget": pytest.approx(0.0642)}
    assert over_forgetting({"zrf_compat/test_forget": 0.9941}, {"zrf_compat/test_forget": 0.9299}, tol=0.1) == {}


def test_over_forgetting_directions() -> None:
    gold = {
        "acc/forget": 0.90,
        "mia_efficacy/confidence": 0.20,
        "mia_entropy/forget_member_rate": 0.7,
        "acc/retain": 0.99,
    }
    over = {
        "acc/forget": 0.00,
        "mia_efficacy/confidence": 0.95,
        "mia_entropy/forget_member_rate": 0.1,
        "acc/retain": 0.50,
    }
    under = {
        "acc/forget": 0.99,
        "mia_efficacy/confidence": 0.05,
        "mia_entropy/forget_member_rate": 0.9,
        "acc/retain": 0.99,
    }
    assert set(over_forgetting(over, gold)) == {
        "acc/forget",
        "mia_efficacy/confidence",
        "mia_entropy/forget_member_rate",
    }
    assert over_forgetting(under, gold) == {}  # forgetting too little is not over-forgetting
    assert over_forgetting(gold, gold) == {}
    with pytest.raises(ValueError, match="tol"):
        over_forgetting(over, gold, tol=math.nan)
    values = {"zrf/forget": 0.9, "zrf/forget@retrained": 0.6, "zrf/forget@original": 0.5}
    assert reference_values(values) == {"zrf/forget": 0.6}
    assert over_forgetting(values, reference_values(values)) == {"zrf/forget": pytest.approx(0.3)}
    assert all(s in (-1, 1) for s in FORGETTING_SENSE.values())


# -- relearn time --------------------------------------------------------------------------------
def test_steps_to_relearn_and_ain() -> None:
    assert steps_to_relearn(0.95, [0.1], target=0.9) == 0
    assert steps_to_relearn(0.0, [0.2, 0.5, 0.91, 0.8], target=0.9) == 3
    assert steps_to_relearn(0.0, [0.2, 0.5], target=0.9) is None
    assert anamnesis_index(3, 12) == 0.25
    with pytest.raises(ValueError, match="undefined"):
        anamnesis_index(3, 0)


def _relearn_inputs(curves: dict[str, list[float]], start: dict[str, float]) -> EvalInputs:
    def outs(acc: float) -> dict[str, Outputs]:
        return {"forget": _labelled_outputs(round(acc * 100), 100)}

    calls: list[tuple[str, int]] = []

    def relearn(role: str, max_steps: int) -> list[float]:
        calls.append((role, max_steps))
        return curves[role][:max_steps]

    inputs = EvalInputs(
        {
            "unlearned": outs(start["unlearned"]),
            "retrained": outs(start["retrained"]),
            "original": outs(1.0),
        },
        num_classes=4,
        relearn=relearn,
    )
    inputs.calls = calls  # type: ignore[attr-defined]
    return inputs


def test_relearn_metric_with_a_fake_runner() -> None:
    inputs = _relearn_inputs(
        {"unlearned": [0.3, 0.96], "retrained": [0.2, 0.4, 0.6, 0.8, 0.95, 1.0]},
        {"unlearned": 0.0, "retrained": 0.0},
    )
    assert "relearn" not in DEFAULT_METRICS and METRICS.get("relearn").costly
    values, directions = compute_metrics(["relearn"], inputs)
    assert values["relearn/steps"] == 2 and values["relearn/steps@retrained"] == 5  # target 0.95
    assert values["relearn/ain"] == pytest.approx(0.4) and values["relearn/reached"] == 1.0
    assert directions["relearn/ain"] == "closest_to_retrained" and directions["relearn/steps@retrained"] == "info"
    # A runner's per-study settings ride on the callable.
    inputs.relearn.max_steps = 3  # type: ignore[union-attr]
    inputs.relearn.tolerance = 0.5  # type: ignore[union-attr]
    values, _ = compute_metrics(["relearn"], inputs)
    assert values["relearn/steps"] == 2 and values["relearn/steps@retrained"] == 3  # target 0.5
    assert inputs.calls[-1] == ("retrained", 3)  # type: ignore[attr-defined]
    # Never reached within max_steps: censored at max_steps + 1.
    never = _relearn_inputs({"unlearned": [0.1] * 200, "retrained": [0.96]}, {"unlearned": 0.0, "retrained": 0.0})
    values, _ = compute_metrics(["relearn"], never)
    assert values["relearn/reached"] == 0.0 and values["relearn/steps"] == 101 and values["relearn/ain"] == 101
    # Retrained already at the target: 0 steps, AIN undefined and omitted; no training asked for it.
    ready = _relearn_inputs({"unlearned": [0.99], "retrained": []}, {"unlearned": 0.0, "retrained": 0.97})
    values, _ = compute_metrics(["relearn"], ready)
    assert values["relearn/steps@retrained"] == 0 and "relearn/ain" not in values
    assert ready.calls == [("unlearned", 100)]  # type: ignore[attr-defined]
    no_runner = EvalInputs(ready.outputs, num_classes=4)
    with pytest.raises(MissingInputError, match="relearn"):
        METRICS.get("relearn")().compute(no_runner)
    bad = _relearn_inputs({"unlearned": [1.5], "retrained": [1.0]}, {"unlearned": 0.0, "retrained": 0.0})
    with pytest.raises(ValueError, match="outside"):
        compute_metrics(["relearn"], bad)


# -- efficiency ----------------------------------------------------------------------------------
EFFICIENCY = ["wall_time", "optimizer_steps", "speedup", "peak_memory"]


def test_efficiency_values_and_missing_keys() -> None:
    run = {
        "seconds": 2.0,
        "steps": 50,
        "peak_memory_mb": 321.5,
        "retrain_seconds": 30.0,
        "retrain_steps": 1000,
    }
    values, directions = compute_metrics(EFFICIENCY, EvalInputs({}, num_classes=2, run=run))
    assert values == {
        "efficiency/seconds": 2.0,
        "efficiency/steps": 50.0,
        "efficiency/speedup": 15.0,
        "efficiency/step_speedup": 20.0,
        "efficiency/peak_memory_mb": 321.5,
    }
    assert directions["efficiency/speedup"] == "higher" and directions["efficiency/seconds"] == "lower"
    partial, _ = compute_metrics(EFFICIENCY, EvalInputs({}, num_classes=2, run={"seconds": 2.0, "steps": 0}))
    assert partial == {"efficiency/seconds": 2.0, "efficiency/steps": 0.0}
    no_steps, _ = compute_metrics(["speedup"], EvalInputs({}, num_classes=2, run={**run, "steps": 0}))
    assert no_steps == {"efficiency/speedup": 15.0}  # a training-free method: no step ratio
    assert compute_metrics(["speedup"], EvalInputs({}, num_classes=2, run={**run, "seconds": 0.0}))[0] == {}
    with pytest.raises(MissingInputError, match="peak_memory_mb"):
        METRICS.get("peak_memory")().compute(EvalInputs({}, num_classes=2))
    with pytest.raises(ValueError, match="seconds"):
        compute_metrics(["wall_time"], EvalInputs({}, num_classes=2, run={"seconds": math.nan}))


# -- the default set -----------------------------------------------------------------------------
OWNED_MODULES = ("classification", "divergence", "privacy", "membership", "gap", "efficiency", "relearn")


def test_default_metrics_are_every_cheap_metric_of_these_modules() -> None:
    assert len(set(DEFAULT_METRICS)) == len(DEFAULT_METRICS)
    for name in DEFAULT_METRICS:
        cls = METRICS.get(name)
        assert not cls.costly and cls.summary and cls.direction in DIRECTIONS
    ours = {
        n for n in list_metrics(include_costly=False) if METRICS.get(n).__module__.rsplit(".", 1)[-1] in OWNED_MODULES
    }
    assert ours <= set(DEFAULT_METRICS)
    assert {"accuracy", "loss", "table1", "worst_retained_class", "zrf", "gap_to_retrain"} <= set(DEFAULT_METRICS)


# -- end to end on the tiny digits problem --------------------------------------------------------
def _all_outputs(tiny: TinyProblem, model: torch.nn.Module) -> dict[str, Outputs]:
    ds, sp = tiny.dataset, tiny.split
    res = {}
    for s in ("forget", "retain", "test_forget", "test_retain"):
        rows = torch.as_tensor(getattr(sp, s))
        x, y = (ds.train_images, ds.train_labels) if s in ("forget", "retain") else (ds.test_images, ds.test_labels)
        res[s] = Outputs(predict_logits(model, x, mean=ds.mean, std=ds.std, rows=rows), y[rows])
    res["test"] = Outputs(predict_logits(model, ds.test_images, mean=ds.mean, std=ds.std), ds.test_labels)
    return res


@pytest.fixture(scope="module")
def tiny_models(tiny: TinyProblem) -> dict[str, torch.nn.Module]:
    """The tiny original, a model retrained on the retain rows only (shorter recipe), a random init."""
    cfg = tiny.train_config.with_(epochs=3)
    retrained = tiny.factory(0)
    fit(
        retrained,
        make_loader(tiny.dataset, torch.as_tensor(tiny.split.retain), cfg, 0),
        cfg,
        device=torch.device("cpu"),
    )
    return {"original": tiny.model, "retrained": retrained, "random": tiny.factory(1)}


def test_default_metrics_end_to_end_on_tiny(tiny: TinyProblem, tiny_models: dict[str, torch.nn.Module]) -> None:
    outs = {role: _all_outputs(tiny, m) for role, m in tiny_models.items()}
    run = {
        "seconds": 0.5,
        "steps": 20,
        "peak_memory_mb": 64.0,
        "retrain_seconds": 3.0,
        "retrain_steps": 120,
    }
    # The original model as the "unlearned" one: no forgetting at all.
    inputs = EvalInputs(
        {"unlearned": outs["original"], **outs},
        num_classes=10,
        forget_classes=tiny.split.forget_classes,
        class_names=tiny.dataset.class_names,
        seed=0,
        run=run,
    )
    values, directions = compute_metrics(list(DEFAULT_METRICS), inputs)
    for key in (
        "acc/forget",
        "table1/without/f1",
        "worst_class_drop",
        "js_to_retrained/forget",
        "activation_distance/test",
        "zrf/forget",
        "zrf/forget@retrained",
        "zrf_compat/forget",
        "mia_entropy/forget_member_rate@retrained",
        "mia_loss/auc",
        "mia_efficacy/confidence@retrained",
        "gap/avg",
        "efficiency/speedup",
        "efficiency/peak_memory_mb",
    ):
        assert key in values, key
    assert all(math.isfinite(v) for v in values.values())
    assert set(directions) == set(values) and set(directions.values()) <= set(DIRECTIONS)
    # The retrained model never saw class 3: the original is far from it on the forget side only.
    assert values["acc/forget"] > 0.8 and values["gap/forget_acc"] > 50
    assert values["js_to_retrained/forget"] > 5 * values["js_to_retrained/test"]
    assert values["zrf/forget"] < values["zrf/forget@retrained"]  # the original is further from random
    assert values["worst_class_drop"] == 0.0  # compared with itself
    # It under-forgets, if anything. (mia_loss/auc is left out: 137 vs 46 rows make it noisy.)
    flagged = over_forgetting(values, reference_values(values))
    assert not [k for k in flagged if k.startswith(("acc/", "zrf", "mia_efficacy", "mia_entropy"))], flagged
    # The retrained model as the "unlearned" one: zero distance to itself.
    same = EvalInputs(
        {"unlearned": outs["retrained"], **outs},
        num_classes=10,
        forget_classes=tiny.split.forget_classes,
        seed=0,
    )
    sv, _ = compute_metrics(list(DEFAULT_METRICS), same)
    assert sv["gap/avg"] == 0.0 and sv["js_to_retrained/forget"] == 0.0 and sv["activation_distance/test"] == 0.0
    assert sv["mia_efficacy/confidence"] == sv["mia_efficacy/confidence@retrained"]
    assert not any(k.startswith("efficiency/") for k in sv)  # no run facts given: skipped


def test_relearn_curve_on_tiny(tiny: TinyProblem, tiny_models: dict[str, torch.nn.Module]) -> None:
    ds, rows = tiny.dataset, torch.as_tensor(tiny.split.forget)
    retrained = tiny_models["retrained"]
    before = copy.deepcopy(retrained.state_dict())

    def train() -> BatchLoader:
        return BatchLoader(
            ds.train_images,
            ds.train_labels,
            mean=ds.mean,
            std=ds.std,
            rows=rows,
            batch_size=32,
            shuffle=True,
            seed=0,
        )

    evaluate = BatchLoader(ds.train_images, ds.train_labels, mean=ds.mean, std=ds.std, rows=rows, batch_size=256)
    curve = relearn_curve(retrained, train(), evaluate, steps=12, lr=0.05, device="cpu")
    assert len(curve) == 12 and all(0.0 <= a <= 1.0 for a in curve)
    start = tiny.accuracy(retrained, "forget")
    assert start < 0.05 and max(curve) > 0.5  # the never-seen class is learned from its own rows
    assert all(torch.equal(before[k], v) for k, v in retrained.state_dict().items())  # input untouched
    assert relearn_curve(retrained, train(), evaluate, steps=12, lr=0.05, stop_at=0.0) == curve[:1]
    # Default evaluation rows: the training loader's rows, in order.
    assert relearn_curve(retrained, train(), steps=3, lr=0.05) == curve[:3]
    # A split view, as the study runner passes it (UnlearnData(...).forget).
    view = UnlearnData(ds, tiny.split, frozenset({"forget"})).forget
    from_view = relearn_curve(retrained, view, steps=5, lr=0.05, batch_size=32, seed=0)
    assert len(from_view) == 5 and from_view[-1] > start
    with pytest.raises(ValueError, match="steps"):
        relearn_curve(retrained, train(), evaluate, steps=0)
    with pytest.raises(TypeError, match="split view"):
        relearn_curve(retrained, [1, 2, 3], steps=1)  # type: ignore[arg-type]
