"""SISA: the shard plan, exactness of a deletion, the ensemble model and its checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from obliviate.data import SampleIdsForget, split_indices
from obliviate.methods import UnlearnData, get_method, run_method
from obliviate.methods.sisa import ShardPlan, SISAConfig, SISATrainer, stage_epochs, stage_steps
from obliviate.models import load_checkpoint, save_checkpoint
from obliviate.models.sisa_ensemble import SISAEnsemble
from obliviate.testing import TinyProblem
from obliviate.training import TrainConfig, evaluate_accuracy

S, R = 3, 3


def _trainer(tiny: TinyProblem, epochs: float = 1.5, seed: int = 0) -> SISATrainer:
    ds = tiny.dataset
    n = len(ds.train_labels)
    cfg = tiny.train_config.with_(epochs=stage_epochs(epochs, R))
    return SISATrainer(
        ds.train_images,
        ds.train_labels,
        ShardPlan.make(np.arange(n), S, R, seed),
        tiny.factory,
        cfg,
        seed,
        torch.device("cpu"),
        ds.mean,
        ds.std,
    )


def test_plan_partitions_and_ignores_input_order() -> None:
    ids = np.arange(100, 200)
    plan = ShardPlan.make(ids, 4, 3, seed=7)
    flat = np.concatenate([np.concatenate(s) for s in plan.slices])
    assert sorted(flat.tolist()) == list(range(100)) and len(plan.slices) == 4
    assert all(len(s) == 3 for s in plan.slices)
    # the same training set given in another order (e.g. forget rows first) -> the same ids per slice
    shuffled = np.random.default_rng(0).permutation(ids)
    other = ShardPlan.make(shuffled, 4, 3, seed=7)
    for k in range(4):
        for r in range(3):
            assert ids[plan.slices[k][r]].tolist() == shuffled[other.slices[k][r]].tolist()
    assert ids[ShardPlan.make(ids, 4, 3, seed=8).slices[0][0]].tolist() != ids[plan.slices[0][0]].tolist()
    with pytest.raises(ValueError, match="at least shards × slices"):
        ShardPlan.make(np.arange(5), 3, 2, seed=0)


def test_stage_budget_matches_reference() -> None:
    # 2e/(R+1) epochs per stage over cumulative slices = e epochs of samples over the shard
    assert stage_epochs(20, 1) == 20 and stage_epochs(20, 4) == 8
    r, e = 5, 12.0
    samples = sum(stage_epochs(e, r) * (i + 1) / r for i in range(r))
    assert math.isclose(samples, e)


def test_deletion_is_exact_and_only_touches_affected_checkpoints(tiny: TinyProblem) -> None:
    trainer = _trainer(tiny)
    trained_steps = trainer.train()
    before = [[{k: v.clone() for k, v in ck.items()} for ck in shard] for shard in trainer.checkpoints]
    n = len(tiny.dataset.train_labels)
    removed = np.zeros(n, dtype=bool)
    removed[trainer.plan.slices[0][1][:2]] = True  # shard 0, slice 1
    removed[trainer.plan.slices[1][2][:1]] = True  # shard 1, slice 2
    done = trainer.delete(removed)

    assert {k: r for k, (r, _) in done.items()} == {0: 1, 1: 2}
    for k, (r, steps) in done.items():  # retrained exactly stages r..R-1 on the reduced data
        assert steps == trainer.steps_for(removed, {k: r}) > 0

    def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
        return all(torch.equal(a[key], b[key]) for key in a)

    # untouched: shard 2 entirely, and each affected shard's checkpoints before its restart slice
    assert all(same(a, b) for a, b in zip(trainer.checkpoints[2], before[2]))
    assert same(trainer.checkpoints[0][0], before[0][0]) and not same(trainer.checkpoints[0][1], before[0][1])
    assert all(same(trainer.checkpoints[1][r], before[1][r]) for r in (0, 1))
    assert not same(trainer.checkpoints[1][2], before[1][2])

    # exact: every checkpoint equals SISA training that never saw the removed samples
    scratch = _trainer(tiny)
    for k in range(S):
        scratch.train_constituent(k, removed=removed)
    for k in range(S):
        for a, b in zip(trainer.checkpoints[k], scratch.checkpoints[k]):
            assert same(a, b)
    assert trainer.steps_for(None) == trained_steps


def test_method_deletes_sample_ids_with_partial_retraining(tiny: TinyProblem, tmp_path) -> None:  # type: ignore[no-untyped-def]
    n = len(tiny.dataset.train_labels)
    plan = ShardPlan.make(np.arange(n), S, R, seed=0)
    ids = plan.slices[2][2][:3].tolist()  # three samples in the last slice of shard 2
    split = split_indices(tiny.dataset.label_info(), SampleIdsForget(tuple(ids)), 0)
    problem = TinyProblem(tiny.dataset, split, tiny.model, tiny.train_config)
    cls = get_method("sisa")
    method = cls({"shards": S, "slices": R, "epochs": 12.0})
    result, stats = run_method(method, tiny.model, UnlearnData(tiny.dataset, split, cls.uses), problem.context(0))
    info = result.info
    assert info["deletion"]["affected_shards"] == 1 and info["deletion"]["restart_slice"] == {"2": 2}
    assert result.steps == info["deletion"]["steps"] == info["deletion"]["steps_per_shard"]["2"]
    assert info["full_retrain_steps"] > 5 * result.steps
    assert info["retrain_steps_saved"] == info["full_retrain_steps"] - result.steps
    assert stats.splits_read == ["forget", "retain"]

    ens = result.model
    assert isinstance(ens, SISAEnsemble) and len(ens.members) == S
    assert evaluate_accuracy(ens, tiny.dataset) > 0.8  # a reasonable classifier

    save_checkpoint(tmp_path / "ens", ens)
    loaded, meta = load_checkpoint(tmp_path / "ens", expect_model="sisa_ensemble")
    assert meta["model"]["member"]["name"] == "small_cnn" and meta["model"]["shards"] == S
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(ens(x), loaded.eval()(x))


def test_class_deletion_touches_every_shard(tiny: TinyProblem) -> None:
    cls = get_method("sisa")
    result, _ = run_method(cls(cls.smoke), tiny.model, tiny.data(cls), tiny.context())
    d = result.info["deletion"]
    assert d["affected_shards"] == cls.smoke["shards"]
    assert set(d["restart_slice"].values()) == {0}
    assert result.steps == result.info["full_retrain_steps"]


class _Fixed(nn.Module):
    """A constituent that outputs the same logits for every input."""

    logits: torch.Tensor

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.register_buffer("logits", torch.tensor([logits]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)


def test_aggregation_mean_and_vote() -> None:
    rows = [[6.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.5, 0.0]]
    x = torch.zeros(1, 1)
    mean = SISAEnsemble([_Fixed(r) for r in rows], "mean")(x)
    want = torch.stack([F.softmax(torch.tensor(r), 0) for r in rows]).mean(0)
    assert torch.allclose(mean.softmax(1)[0], want, atol=1e-6)
    assert mean.argmax(1).item() == 0  # one confident constituent wins the mean...
    vote = SISAEnsemble([_Fixed(r) for r in rows], "vote")(x)
    assert vote.argmax(1).item() == 1  # ...but the majority wins the vote
    assert torch.isfinite(vote).all() and math.isclose(float(vote.softmax(1).sum()), 1.0, rel_tol=1e-5)
    # a tie (one vote each) is broken by the mean probability
    tie = SISAEnsemble([_Fixed([3.0, 0.0, 0.0]), _Fixed([0.0, 0.5, 0.0])], "vote")(x)
    assert tie.argmax(1).item() == 0
    with pytest.raises(ValueError, match="aggregation"):
        SISAEnsemble([_Fixed([0.0])], "median")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="shards"):
        SISAConfig(shards=0)
    with pytest.raises(ValueError, match="epochs"):
        SISAConfig(epochs=float("nan"))
    with pytest.raises(ValueError, match="aggregation"):
        SISAConfig(aggregation="max")  # type: ignore[arg-type]
    cfg = TrainConfig(epochs=1.5, batch_size=64)
    assert stage_steps(0, cfg) == 0 and stage_steps(65, cfg) == 3  # round(1.5 · ceil(65/64))
