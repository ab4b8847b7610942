"""``rum``: the forget set refined by a memorisation proxy that ``fit`` records, then NegGrad+ on
each part, least memorised first (Zhao et al., NeurIPS 2024)."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from obliviate.api import run_study
from obliviate.core import ConfigError
from obliviate.data import RandomForget, load_dataset, split_indices
from obliviate.methods import get_method, run_method
from obliviate.methods.neggrad_plus import NegGradPlus, NegGradPlusConfig
from obliviate.methods.rum import memorisation_order
from obliviate.models import create_model
from obliviate.study import parse_study
from obliviate.testing import TINY_TRAIN, TinyProblem
from obliviate.training import fit, make_loader


@pytest.fixture(scope="module")
def recorded() -> tuple[TinyProblem, torch.Tensor, np.ndarray]:
    """Digits with 60 training rows given a wrong label, a random 10 % request, and a small CNN
    trained to fit every row with its training record (≈ 8 s)."""
    ds = load_dataset("digits")
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(ds.train_labels), 60, replace=False)
    labels = ds.train_labels.clone()
    labels[flipped] = (labels[flipped] + 1 + torch.as_tensor(rng.integers(0, 9, 60))) % 10
    ds = dataclasses.replace(ds, train_labels=labels)
    split = split_indices(ds.label_info(), RandomForget(0.1), 0)
    tc = TINY_TRAIN.with_(epochs=30, augment=False, weight_decay=0.0)
    model = create_model("small_cnn", num_classes=10, in_chans=1, seed=0, width=0.5)
    res = fit(
        model,
        make_loader(ds, torch.arange(len(labels)), tc, 0),
        tc,
        device=torch.device("cpu"),
        record_confidence=True,
    )
    assert res.confidence is not None
    return TinyProblem(ds, split, model, tc, width=0.5), res.confidence, flipped


def test_fit_records_each_rows_mean_label_probability_and_mislabelled_rows_score_low(
    recorded: tuple[TinyProblem, torch.Tensor, np.ndarray],
) -> None:
    """The learning-speed proxy: one value per training row in [0, 1]; rows whose label is wrong are
    learnt late, only by memorising them, so they score far below the clean rows, though the
    net ends up fitting them."""
    problem, confidence, flipped = recorded
    assert confidence.shape == (len(problem.dataset.train_labels),)
    assert not confidence.isnan().any() and confidence.min() >= 0 and confidence.max() <= 1
    clean = np.setdiff1d(np.arange(len(confidence)), flipped)
    assert float(confidence[flipped].mean()) < float(confidence[clean].mean()) - 0.3
    # the 60 mislabelled rows are nearly all among the 100 lowest-scoring rows
    lowest = set(torch.argsort(confidence)[:100].tolist())
    assert len(lowest & set(flipped.tolist())) >= 50
    assert problem.accuracy(problem.model, "retain") > 0.97  # memorised, not ignored


def test_rows_a_loader_never_visits_have_no_record() -> None:
    ds = load_dataset("digits")
    tc = TINY_TRAIN.with_(epochs=1)
    model = create_model("small_cnn", num_classes=10, in_chans=1, seed=0, width=0.5)
    res = fit(model, make_loader(ds, torch.arange(100), tc, 0), tc, device=torch.device("cpu"), record_confidence=True)
    assert res.confidence is not None
    assert not res.confidence[:100].isnan().any() and res.confidence[100:].isnan().all()
    assert fit(model, make_loader(ds, torch.arange(100), tc, 0), tc, device=torch.device("cpu")).confidence is None


def test_memorisation_order_puts_the_least_memorised_first_and_unscored_rows_last() -> None:
    score = torch.tensor([0.9, 0.1, float("nan"), 0.5, 0.7, 0.3])
    parts = memorisation_order(score, 3)
    assert [p.tolist() for p in parts] == [[0, 4], [3, 5], [1, 2]]
    assert [len(p) for p in memorisation_order(torch.rand(10), 3)] == [4, 3, 3]


def test_rum_is_neggrad_plus_on_each_part_in_turn(recorded: tuple[TinyProblem, torch.Tensor, np.ndarray]) -> None:
    """The meta-algorithm, checked against running its parts by hand: the forget rows ranked by
    the training record, split in thirds, and NegGrad+ with each third's own β, budget and rate,
    from the least memorised third on, gives the same weights as RUM."""
    problem, confidence, _ = recorded
    cfg = dict(beta=(0.9, 0.8, 0.7), epochs=(0.5, 0.5, 1.0), lr=(0.02, 0.02, 0.005))
    m = get_method("rum")(**cfg)
    ctx = dataclasses.replace(problem.context(0), training_confidence=confidence)
    data = problem.data(m)
    result, stats = run_method(m, problem.model, data, ctx)
    assert result.info["proxy"] == "learning_speed"
    means = [p["proxy_mean"] for p in result.info["parts"]]
    assert means == sorted(means, reverse=True) and means[0] > means[-1]
    assert sum(p["rows"] for p in result.info["parts"]) == len(data.forget)
    assert set(stats.splits_read) == {"forget", "retain"}

    model = copy.deepcopy(problem.model)
    parts = memorisation_order(confidence[torch.as_tensor(data.forget.rows)], 3)
    for i, part in enumerate(parts):
        step = NegGradPlusConfig(
            beta=cfg["beta"][i], epochs=cfg["epochs"][i], lr=cfg["lr"][i], momentum=0.9, weight_decay=5e-4,
            batch_size=256, forget_batch_size=256,
        )  # fmt: skip
        part_ctx = dataclasses.replace(ctx, seed=ctx.seed + 1009 * i)
        model = NegGradPlus(step).unlearn(model, problem.data(m).with_forget(part), part_ctx).model
    for (name, a), b in zip(result.model.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_rum_without_a_record_ranks_by_the_originals_confidence_now(tiny_random: TinyProblem) -> None:
    m = get_method("rum")(epochs=(0.2, 0.2, 0.2))
    result, _ = run_method(m, tiny_random.model, tiny_random.data(m), tiny_random.context(0))
    assert result.info["proxy"] == "final_confidence"
    assert len(result.info["parts"]) == 3


@pytest.mark.bad_input
def test_rum_refuses_what_it_cannot_do(tiny: TinyProblem, tiny_random: TinyProblem) -> None:
    m = get_method("rum")(epochs=(0.2, 0.2, 0.2))
    with pytest.raises(ConfigError, match="whole class"):
        run_method(m, tiny.model, tiny.data(m), tiny.context(0))
    strict = get_method("rum")(proxy="learning_speed", epochs=(0.2, 0.2, 0.2))
    with pytest.raises(ConfigError, match="training record"):
        run_method(strict, tiny_random.model, tiny_random.data(strict), tiny_random.context(0))
    with pytest.raises(ConfigError, match="one value per part"):
        get_method("rum")(pieces=2)
    with pytest.raises(ConfigError, match="proxy"):
        get_method("rum")(proxy="holdout")


def test_a_study_hands_rum_the_record_of_the_original_it_trained_and_of_one_from_its_cache(tmp_path: Path) -> None:
    """The plumbing: the vision task trains the original with the record on, keeps the record with
    the cached model, and gives it to every method's context — a second study that takes the
    original from the cache ranks by the same record; the group record keeps it per forget row."""
    raw: dict[str, Any] = {
        "name": "rum-record",
        "dataset": {"name": "digits", "train_per_class": 40, "test_per_class": 20},
        "models": [{"name": "small_cnn", "kwargs": {"width": 0.25}}],
        "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "crop_pad": 1, "flip": False},
        "requests": [{"kind": "random", "fraction": 0.1}],
        "methods": ["original", {"name": "rum", "config": {"epochs": [0.2, 0.2, 0.2]}}],
        "metrics": ["accuracy", "lira"],
        "audit": {"references": 2},
        "seeds": [0],
        "device": "cpu",
    }
    cache = tmp_path / "cache"
    infos = []
    for out in (tmp_path / "first", tmp_path / "second"):
        run_study(parse_study(raw), out, cache_dir=cache)
        (rec,) = [r for f in (out / "runs").glob("*.json") if (r := json.loads(f.read_text()))["method_name"] == "rum"]
        infos.append(rec["info"])
    assert infos[0]["proxy"] == infos[1]["proxy"] == "learning_speed"
    assert infos[0]["parts"] == infos[1]["parts"]
    assert [p["rows"] for p in infos[0]["parts"]] == [14, 13, 13]
    # the group record keeps the proxy of every forget row beside the audit's φ of the same rows
    (group,) = [json.loads(f.read_text()) for f in (tmp_path / "second" / "groups").glob("*.json")]
    proxy = group["audit"]["original_training_confidence_forget"]
    assert len(proxy) == len(group["audit"]["original_phi_forget"]) == 40
    assert all(0.0 <= c <= 1.0 for c in proxy)
