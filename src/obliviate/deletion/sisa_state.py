"""SISA as a deployable model: the ensemble, its shard plan and every slice checkpoint persist
together, so each deletion request retrains only the constituents whose shard holds a deleted
id, from the checkpoint before the first slice that held one (Bourtoule et al., IEEE S&P 2021).

On disk, beside a checkpoint ``BASE`` (``BASE.safetensors`` + ``BASE.json``, the ensemble):
``BASE.sisa/plan.json`` (seed, S, R, the stage training config, the dataset ids of every slice,
the ids removed so far, and the SHA-256 of every shard file) and ``BASE.sisa/shard{k}.safetensors``
(constituent k's state after each stage, keys ``r{r}/{name}``). ``BASE.json`` records the plan's
SHA-256, so the state cannot be swapped under the model. The deletion is exact: a constituent's
stages before its first hit saw no deleted row, and every later stage is retrained without them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..data import ImageDataset
from ..methods.sisa import ShardPlan, SISATrainer, stage_epochs
from ..models import create_model
from ..models.sisa_ensemble import SISAEnsemble
from ..training import TrainConfig
from ..utils import atomic_path, file_sha256, write_text_atomic

STATE_FORMAT = 1


class SISAStateError(RuntimeError):
    """A SISA state folder is missing, damaged or does not belong to its model."""


def state_dir(base: Path) -> Path:
    return base.with_name(base.name + ".sisa")


def _factory(member: dict[str, Any]) -> Any:
    spec = dict(member)
    name, k, c = spec.pop("name"), spec.pop("num_classes"), spec.pop("in_chans", 3)

    def make(seed: int) -> nn.Module:
        return create_model(name, num_classes=k, in_chans=c, seed=seed, **spec)

    return make


def train_deployable(
    ds: ImageDataset,
    member: dict[str, Any],
    cfg: TrainConfig,
    *,
    shards: int,
    slices: int,
    seed: int,
    device: torch.device,
) -> tuple[SISAEnsemble, SISATrainer]:
    """Train a SISA ensemble of ``member`` models on every training row of ``ds``."""
    ids = np.asarray(ds.train_ids.cpu())
    stage_cfg = cfg.with_(epochs=stage_epochs(cfg.epochs, slices))
    trainer = SISATrainer(
        ds.train_images,
        ds.train_labels,
        ShardPlan.make(ids, shards, slices, seed),
        _factory(member),
        stage_cfg,
        seed,
        device,
        ds.mean,
        ds.std,
    )
    trainer.train()
    return ensemble_of(trainer, member), trainer


def ensemble_of(trainer: SISATrainer, member: dict[str, Any], aggregation: str = "mean") -> SISAEnsemble:
    ens = SISAEnsemble([trainer.constituent(k) for k in range(trainer.shards)], aggregation)
    ens.obliviate_spec = {
        "name": "sisa_ensemble",
        "num_classes": member["num_classes"],  # type: ignore[assignment]
        "in_chans": member.get("in_chans", 3),
        "member": dict(member),
        "shards": trainer.shards,
        "aggregation": aggregation,
    }
    return ens


def save_state(base: Path, trainer: SISATrainer, train_ids: np.ndarray, removed_ids: list[int]) -> str:
    """Write ``BASE.sisa/``; returns the plan's SHA-256 (to record in the checkpoint's JSON)."""
    folder = state_dir(base)
    folder.mkdir(parents=True, exist_ok=True)
    shards = {}
    for k in range(trainer.shards):
        path = folder / f"shard{k}.safetensors"
        state = {f"r{r}/{n}": t.contiguous() for r, ck in enumerate(trainer.checkpoints[k]) for n, t in ck.items()}
        with atomic_path(path) as tmp:
            save_file(state, str(tmp))
        shards[path.name] = file_sha256(path)
    plan = {
        "format": STATE_FORMAT,
        "seed": trainer.seed,
        "shards": trainer.shards,
        "slices": trainer.slices,
        "stage_train": trainer.train_config.to_dict(),
        "slice_ids": [[[int(train_ids[p]) for p in sl] for sl in shard] for shard in trainer.plan.slices],
        "removed_ids": sorted(int(i) for i in removed_ids),
        "files": shards,
    }
    text = json.dumps(plan, sort_keys=True)
    write_text_atomic(folder / "plan.json", text)
    return hashlib.sha256(text.encode()).hexdigest()


def load_state(
    base: Path, meta: dict[str, Any], ds: ImageDataset, device: torch.device
) -> tuple[SISATrainer, list[int]]:
    """The trainer (plan and checkpoints) of a deployable SISA model, and the ids removed so far."""
    folder = state_dir(base)
    plan_path = folder / "plan.json"
    if not plan_path.is_file():
        raise SISAStateError(
            f"{base} is a SISA ensemble without its shard state ({folder}): it was not trained "
            "with `obliviate train --sisa S:R`, so only a full retrain can delete from it"
        )
    text = plan_path.read_text()
    want = (meta.get("sisa") or {}).get("plan_sha256")
    if want != hashlib.sha256(text.encode()).hexdigest():
        raise SISAStateError(f"{plan_path} is not the state of {base}.json (its SHA-256 differs): refusing to use it")
    plan = json.loads(text)
    pos = {int(v): r for r, v in enumerate(np.asarray(ds.train_ids.cpu()))}
    try:
        slices = [[np.asarray([pos[i] for i in sl], dtype=np.int64) for sl in shard] for shard in plan["slice_ids"]]
    except KeyError as e:
        raise SISAStateError(f"{plan_path} names training id {e.args[0]} that this dataset does not have") from None
    checkpoints: list[list[dict[str, torch.Tensor]]] = []
    for k in range(plan["shards"]):
        path = folder / f"shard{k}.safetensors"
        if not path.is_file() or file_sha256(path) != plan["files"].get(path.name):
            raise SISAStateError(f"{path} is missing or does not match its hash in plan.json")
        flat = load_file(str(path))
        checkpoints.append(
            [{n.split("/", 1)[1]: t for n, t in flat.items() if n.startswith(f"r{r}/")} for r in range(plan["slices"])]
        )
    member = meta["model"]["member"]
    trainer = SISATrainer(
        ds.train_images,
        ds.train_labels,
        ShardPlan(slices),
        _factory(member),
        TrainConfig.from_dict(plan["stage_train"]),
        int(plan["seed"]),
        device,
        ds.mean,
        ds.std,
        checkpoints,
    )
    return trainer, [int(i) for i in plan["removed_ids"]]


def delete(trainer: SISATrainer, ds: ImageDataset, new_ids: list[int], earlier_ids: list[int]) -> dict[str, Any]:
    """Retrain the constituents whose shard holds a ``new_ids`` row, from the checkpoint before its
    first slice, without every removed row (earlier ones too). Returns the facts for the evidence."""
    import time

    pos = {int(v): r for r, v in enumerate(np.asarray(ds.train_ids.cpu()))}
    n = len(ds.train_labels)
    new = np.zeros(n, dtype=bool)
    new[[pos[i] for i in new_ids]] = True
    removed = new.copy()
    removed[[pos[i] for i in earlier_ids if i in pos]] = True
    t0 = time.perf_counter()
    done = {}
    for k in range(trainer.shards):
        r = trainer.plan.first_hit(k, new)
        if r is not None:
            done[k] = (r, sum(trainer.train_constituent(k, start=r, removed=removed)))
    seconds = time.perf_counter() - t0
    full = trainer.steps_for(removed)
    spent = sum(s for _, s in done.values())
    return {
        "seconds": seconds,
        "steps": spent,
        "affected_shards": sorted(done),
        "restart_slice": {str(k): r for k, (r, _) in done.items()},
        "full_ensemble_retrain_steps": full,
        "retrain_steps_saved": full - spent,
        "saved_fraction": (full - spent) / full if full else 0.0,
    }


def check_matches(trainer: SISATrainer, model: nn.Module) -> None:
    """Refuse a shard state whose last checkpoints are not the deployed ensemble's constituents
    (a state copied from another model, or from before an earlier deletion)."""
    members = getattr(model, "members", None)
    if members is None or len(members) != trainer.shards:
        raise SISAStateError(
            f"the shard state has {trainer.shards} constituents, the model "
            f"{len(members) if members is not None else 'none'}"
        )
    for k in range(trainer.shards):
        want = members[k].state_dict()
        got = trainer.checkpoints[k][-1]
        if set(want) != set(got) or any(not torch.equal(got[n].to(want[n].device), want[n]) for n in want):
            raise SISAStateError(
                f"constituent {k} of the shard state is not the model's: the state belongs to "
                "another model or an earlier version of this one; refusing to delete from it"
            )
