"""``sisa``: Sharded, Isolated, Sliced, Aggregated training — exact unlearning by partial retraining.

Bourtoule et al., "Machine Unlearning", IEEE S&P 2021, arXiv:1912.03817 (code:
github.com/cleverhans-lab/machine-unlearning, files ``sisa.py``, ``sharded.py``, ``aggregation.py``).

The training set is split into S disjoint shards; constituent k trains only on shard k
(isolation), incrementally over R slices: stage r trains on slices 0..r together and ends with a
checkpoint. A deletion request retrains only the constituents whose shard held a deleted sample,
from the checkpoint before the first slice that held one, with the deleted samples removed. The
result never depended on the deleted samples: exact unlearning.

How this fits the method contract (design decisions):

* **The original.** SISA needs its own original — the sharded ensemble trained on the full
  training set — and cannot use the single model ``unlearn`` receives. So ``unlearn`` first
  trains the ensemble on forget ∪ retain (checkpoints held in memory, on the CPU), then performs
  the deletion of the forget set. Only the deletion counts as unlearning cost:
  ``MethodResult.steps`` is the deletion's optimizer steps, and ``info`` reports the sharded
  training (``training``), the deletion (``deletion``: steps, seconds, affected shards, the slice
  each restarted from) and what a full retrain of the ensemble would have cost
  (``full_retrain_steps``, ``retrain_steps_saved``). ``RunStats.seconds`` of :func:`run_method`
  covers both phases; read ``info["deletion"]["seconds"]`` for the unlearning time.
* **Partition.** The training rows (dataset row ids of forget ∪ retain, sorted) are permuted with
  the seed and cut into S equal shards, each cut into R equal slices. The partition depends only
  on the training set and the seed, never on which rows are to be forgotten. A class deletion
  touches every shard, usually in slice 0, so it costs about a full retrain — the paper's point
  that SISA pays off for a few scattered deletions, not for removing a class.
* **Training budget.** Each constituent uses ``ctx.train_config`` (``epochs`` = e overridable).
  As in the reference ``sisa.py`` (``avg_epochs_per_slice = 2R/(R+1)·e/R``), every stage
  trains e′ = 2e/(R+1) epochs over its cumulative data, so a constituent processes the same
  number of samples as e epochs over its shard. Each stage is a fresh :func:`~obliviate.training.fit`
  (new optimizer and learning-rate schedule) on a freshly built constituent loaded from the
  previous checkpoint, so a stage's result is a function of (checkpoint, data, seed) only —
  which is what makes restarting from a checkpoint exact.
* **The result** is a :class:`~obliviate.models.sisa_ensemble.SISAEnsemble` (a different class,
  hence ``keeps_architecture = False``) whose forward returns log mean-softmax logits
  (``aggregation="mean"``, default) or log vote shares (``"vote"``). The paper and its code
  aggregate by majority vote over the constituents' labels (``--output_type argmax``,
  ``aggregation.py`` uniform weights); mean probabilities give the downstream metrics a proper
  distribution. It saves and loads with ``save_checkpoint`` / ``load_checkpoint``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..data import Augment, BatchLoader
from ..models.sisa_ensemble import AGGREGATIONS, SISAEnsemble
from ..training import TrainConfig, fit
from .base import MethodResult, UnlearnContext, UnlearnData, VisionConfig, VisionMethod, param, register_method


@dataclass(frozen=True, kw_only=True)
class SISAConfig(VisionConfig):
    shards: int = param(5, "number of shards / constituent models (a practical default; the paper sweeps 1..~100)", "S")
    slices: int = param(4, "slices per shard; a checkpoint is kept after each", "R")
    aggregation: Literal["mean", "vote"] = param(
        "mean", "combine constituents by mean softmax ('mean') or majority vote ('vote', the paper's choice)"
    )
    epochs: float | None = param(None, "epochs e per constituent over its shard; None = the original's budget", "e")
    seed: int | None = param(None, "seed of the partition, initialisations and loaders; None = the run's seed")

    def validate(self) -> None:
        self._require(self.shards >= 1, "shards", ">= 1")
        self._require(self.slices >= 1, "slices", ">= 1")
        self._require(self.aggregation in AGGREGATIONS, "aggregation", f"one of {AGGREGATIONS}")
        self._require(self.epochs is None or (math.isfinite(self.epochs) and self.epochs > 0), "epochs", "> 0 or None")


def _seed(*parts: int) -> int:
    """A well-mixed 31-bit seed from integers (the run seed, a tag, shard, stage)."""
    return int(np.random.SeedSequence([int(p) % 2**63 for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def stage_epochs(epochs: float, slices: int) -> float:
    """e′ = 2e/(R+1): epochs of each incremental stage (reference ``sisa.py``)."""
    return 2.0 * epochs / (slices + 1)


def stage_steps(n: int, cfg: TrainConfig) -> int:
    """Optimizer steps :func:`obliviate.training.fit` takes for ``n`` samples (0 for no data)."""
    return 0 if n == 0 else max(1, round(cfg.epochs * -(-n // cfg.batch_size)))


@dataclass
class ShardPlan:
    """Positions (into the training tensors) of each shard's slices: ``slices[k][r]``."""

    slices: list[list[np.ndarray]]

    @classmethod
    def make(cls, row_ids: np.ndarray, shards: int, slices: int, seed: int) -> ShardPlan:
        """Permute the rows sorted by dataset id with ``seed``; cut into S shards × R slices."""
        if len(row_ids) < shards * slices:
            raise ValueError(
                f"SISA needs at least shards × slices = {shards * slices} training samples, got {len(row_ids)}"
            )
        by_id = np.argsort(row_ids, kind="stable")
        g = torch.Generator().manual_seed(_seed(seed, 0))
        order = by_id[torch.randperm(len(by_id), generator=g).numpy()]
        return cls([list(np.array_split(shard, slices)) for shard in np.array_split(order, shards)])

    def cumulative(self, k: int, r: int, removed: np.ndarray | None = None) -> np.ndarray:
        """Positions of shard k's slices 0..r, minus ``removed`` (a boolean mask over positions)."""
        pos = np.concatenate(self.slices[k][: r + 1])
        return pos if removed is None else pos[~removed[pos]]

    def first_hit(self, k: int, removed: np.ndarray) -> int | None:
        """Index of shard k's first slice holding a removed position, or ``None``."""
        for r, sl in enumerate(self.slices[k]):
            if removed[sl].any():
                return r
        return None


@dataclass
class SISATrainer:
    """Trains and edits one SISA ensemble on tensors already on the device.

    ``checkpoints[k][r]`` is constituent k's state after stage r (CPU copies); the state before
    stage 0 is the seeded initialisation, rebuilt on demand.
    """

    images: torch.Tensor
    labels: torch.Tensor
    plan: ShardPlan
    factory: Callable[[int], nn.Module]
    train_config: TrainConfig  # the constituent recipe with epochs = e′ per stage
    seed: int
    device: torch.device
    mean: tuple[float, ...]
    std: tuple[float, ...]
    checkpoints: list[list[dict[str, torch.Tensor]]] = field(default_factory=list)

    @property
    def shards(self) -> int:
        return len(self.plan.slices)

    @property
    def slices(self) -> int:
        return len(self.plan.slices[0])

    def _fresh(self, k: int) -> nn.Module:
        return self.factory(_seed(self.seed, 1, k))

    def _loader(self, positions: np.ndarray, k: int, r: int) -> BatchLoader:
        tc = self.train_config
        aug = Augment(pad=tc.crop_pad, flip=tc.flip) if tc.augment else None
        return BatchLoader(
            self.images,
            self.labels,
            mean=self.mean,
            std=self.std,
            rows=torch.as_tensor(positions, dtype=torch.long),
            batch_size=tc.batch_size,
            shuffle=True,
            augment=aug,
            seed=_seed(self.seed, 2, k, r),
            channels_last=tc.channels_last,
        )

    def train_constituent(self, k: int, start: int = 0, removed: np.ndarray | None = None) -> list[int]:
        """Run stages ``start``..R−1 of constituent k from the checkpoint before ``start``,
        without the ``removed`` positions; overwrites ``checkpoints[k][start:]``.

        Returns the optimizer steps of each stage run.
        """
        if not self.checkpoints:
            self.checkpoints = [[] for _ in range(self.shards)]
        if start > len(self.checkpoints[k]):
            raise ValueError(f"shard {k} has no checkpoint before stage {start}")
        del self.checkpoints[k][start:]
        steps = []
        for r in range(start, self.slices):
            # a fresh module (loaded from the previous checkpoint): nothing else carries over
            model = self._fresh(k)
            if r > 0:
                model.load_state_dict(self.checkpoints[k][r - 1])
            positions = self.plan.cumulative(k, r, removed)
            if len(positions):
                steps.append(fit(model, self._loader(positions, k, r), self.train_config, device=self.device).steps)
            else:  # every sample so far was deleted: the stage has nothing to learn from
                steps.append(0)
            self.checkpoints[k].append({n: t.detach().to("cpu", copy=True) for n, t in model.state_dict().items()})
        return steps

    def train(self) -> int:
        """Train every constituent from scratch on its whole shard; returns the total steps."""
        return sum(sum(self.train_constituent(k)) for k in range(self.shards))

    def delete(self, removed: np.ndarray) -> dict[int, tuple[int, int]]:
        """Unlearn the ``removed`` positions: retrain each constituent whose shard held one from
        the checkpoint before the first slice that did. Returns ``{shard: (restart slice, steps)}``."""
        done = {}
        for k in range(self.shards):
            r = self.plan.first_hit(k, removed)
            if r is not None:
                done[k] = (r, sum(self.train_constituent(k, start=r, removed=removed)))
        return done

    def constituent(self, k: int) -> nn.Module:
        """Constituent k rebuilt from its last checkpoint."""
        model = self._fresh(k)
        model.load_state_dict(self.checkpoints[k][-1])
        return model.to(self.device).eval()

    def steps_for(self, removed: np.ndarray | None, start: dict[int, int] | None = None) -> int:
        """Steps a (re)training would take, without running it: every shard from stage 0, or
        shard k from stage ``start[k]`` for the shards in ``start``."""
        todo = start if start is not None else {k: 0 for k in range(self.shards)}
        return sum(
            stage_steps(len(self.plan.cumulative(k, r, removed)), self.train_config)
            for k, s in todo.items()
            for r in range(s, self.slices)
        )


@register_method("sisa")
class SISA(VisionMethod[SISAConfig]):
    """SISA training, then exact deletion by retraining only the affected constituents."""

    Config = SISAConfig
    uses = frozenset({"forget", "retain"})
    exact = True
    keeps_architecture = False
    smoke = {"shards": 2, "slices": 2, "epochs": 1.0}
    reference = "Bourtoule et al., 'Machine Unlearning', IEEE S&P 2021, arXiv:1912.03817 (SISA training)"

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        seed = ctx.seed if cfg.seed is None else cfg.seed
        forget, retain = data.forget, data.retain
        images = torch.cat([forget.images, retain.images])
        labels = torch.cat([forget.labels, retain.labels])
        row_ids = np.concatenate([forget.rows, retain.rows])
        removed = np.zeros(len(row_ids), dtype=bool)
        removed[: len(forget)] = True

        base = ctx.train_config if cfg.epochs is None else ctx.train_config.with_(epochs=cfg.epochs)
        stage_cfg = base.with_(epochs=stage_epochs(base.epochs, cfg.slices))
        trainer = SISATrainer(
            images,
            labels,
            ShardPlan.make(row_ids, cfg.shards, cfg.slices, seed),
            ctx.model_factory,
            stage_cfg,
            seed,
            ctx.device,
            forget.mean,
            forget.std,
        )

        # 1. the original: the sharded ensemble on forget ∪ retain (not unlearning cost)
        t0 = time.perf_counter()
        train_steps = trainer.train()
        train_seconds = time.perf_counter() - t0
        # 2. the deletion: retrain affected constituents from the checkpoint before their first hit
        t0 = time.perf_counter()
        done = trainer.delete(removed)
        deletion_seconds = time.perf_counter() - t0

        members = [trainer.constituent(k) for k in range(cfg.shards)]
        ensemble = SISAEnsemble(members, cfg.aggregation)
        spec = getattr(members[0], "obliviate_spec", None)
        # None (not absent) keeps run_method from stamping the single model's spec on the ensemble
        ensemble.obliviate_spec = (
            None
            if spec is None
            else {  # type: ignore[assignment]
                "name": "sisa_ensemble",
                "num_classes": spec["num_classes"],
                "in_chans": spec.get("in_chans", 3),
                "member": dict(spec),
                "shards": cfg.shards,
                "aggregation": cfg.aggregation,
            }
        )
        full = trainer.steps_for(removed)
        spent = sum(steps for _, steps in done.values())
        info: dict[str, Any] = {
            "shards": cfg.shards,
            "slices": cfg.slices,
            "stage_epochs": stage_cfg.epochs,
            "training": {"steps": train_steps, "seconds": train_seconds},
            "deletion": {
                "steps": spent,
                "seconds": deletion_seconds,
                "affected_shards": len(done),
                "restart_slice": {str(k): r for k, (r, _) in done.items()},
                "steps_per_shard": {str(k): steps for k, (_, steps) in done.items()},
            },
            "full_retrain_steps": full,
            "retrain_steps_saved": full - spent,
            "single_model_retrain_steps": stage_steps(len(retain), base),
        }
        return MethodResult(
            model=ensemble.to(ctx.device).eval(), steps=spent, info=info, unlearning_seconds=deletion_seconds
        )
