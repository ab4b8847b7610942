"""The engine of ``obliviate unlearn`` and ``obliviate audit`` on a saved model: checkpoints of
the model zoo, the dataset they were trained on (checked by content fingerprint), deletion
requests by sample id, and the lineage's ledger.

An unlearned model is a folder ``DIR``: ``model.safetensors`` + ``model.json`` (a checkpoint
like any other), ``evidence.json``, ``evidence.html`` and ``ledger.jsonl``. It is written to a
temporary folder beside ``DIR`` and renamed into place, so an interrupted request leaves no
partial ``DIR``. Passing ``DIR`` as the next request's checkpoint continues the lineage: the
ledger is copied and extended, ids forgotten before are reported and not repeated, and the
retain set excludes every id the lineage ever forgot.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..data import DATASETS, ForgetSplit, ImageDataset, load_dataset, parse_request, read_ids_file, split_indices
from ..methods import UnlearnContext
from ..models import create_model, load_checkpoint, read_meta, save_checkpoint
from ..train import TrainConfig
from ..utils import resolve_device, write_json_atomic, write_text_atomic
from . import ledger
from .audit import ATTACK, compare_to_reference, membership_audit, split_figures
from .evidence import render_html
from .service import DeletionError, DeletionResult, _logits, honour


@dataclass
class Loaded:
    model: nn.Module
    meta: dict[str, Any]
    base: Path          # the checkpoint path without suffix
    entries: list[dict[str, Any]]  # the lineage's ledger so far


def checkpoint_base(path: str | Path) -> tuple[Path, Path | None]:
    """``(checkpoint path, ledger path or None)``: a folder written by ``obliviate unlearn`` holds
    ``model.*`` and ``ledger.jsonl``; a checkpoint path inside such a folder finds the ledger too,
    so a lineage cannot be restarted by naming its model file instead of its folder."""
    p = Path(path)
    if p.is_dir():
        if not (p / "model.json").is_file():
            raise DeletionError(f"{p} is a folder without model.json: give a checkpoint path, or a folder that "
                                "`obliviate unlearn` wrote")
        return p / "model", p / "ledger.jsonl"
    base = p.with_suffix("") if p.suffix in (".json", ".safetensors") else p
    beside = base.parent / "ledger.jsonl"
    return base, beside if base.name == "model" and beside.is_file() else None


def load_data(meta: dict[str, Any], dataset: str | None, root: str | None, download: bool = False) -> ImageDataset:
    """The dataset a checkpoint was trained on (its recorded loader, root and subset), refused
    when its content fingerprint differs from the one recorded at training."""
    from ..study.tasks.vision import dataset_fingerprint

    name = dataset or meta.get("dataset_loader") or (meta.get("dataset") or {}).get("name")
    if not name:
        raise DeletionError("the checkpoint does not record its dataset: pass --dataset (and --root)")
    root = root or meta.get("dataset_root")
    if name not in DATASETS and not Path(name).is_dir():
        raise DeletionError(f"unknown dataset {name!r}: {DATASETS.unknown_message(name)}")
    ds = load_dataset(name, root=root, download=download)
    sub = meta.get("subset") or {}
    if sub.get("train_per_class") or sub.get("test_per_class"):
        ds = ds.subset(sub.get("train_per_class"), sub.get("test_per_class"), seed=0)
    want = meta.get("dataset_fingerprint")
    if want and dataset_fingerprint(ds) != want:
        raise DeletionError(f"the dataset at {root or name!r} is not the one this model was trained on (its content "
                            "fingerprint differs): pass the training data with --root")
    return ds


def load(path: str | Path, ds_args: dict[str, Any]) -> tuple[Loaded, ImageDataset]:
    base, ledger_path = checkpoint_base(path)
    meta = read_meta(base)
    ds = load_data(meta, ds_args.get("dataset"), ds_args.get("root"), bool(ds_args.get("download")))
    model, meta = load_checkpoint(base, expect_num_classes=ds.num_classes)
    if meta.get("unlearned") and (ledger_path is None or not ledger_path.is_file()):
        raise DeletionError(f"{base} is the output of an earlier deletion request but its ledger.jsonl is missing: "
                            "without it the ids forgotten before would come back through the retain set")
    entries = ledger.read(ledger_path) if ledger_path is not None else []
    if entries:
        problems = ledger.verify(base.parent)
        if problems:
            raise DeletionError(f"the ledger of {base.parent} does not verify ({'; '.join(problems[:3])}): run "
                                f"`obliviate ledger verify {base.parent}`")
    return Loaded(model, meta, base, entries), ds


def request_rows(ds: ImageDataset, ids_file: str | Path) -> tuple[list[int], list[int], np.ndarray]:
    """``(unique ids in file order, duplicates, their training rows)``; unknown ids are refused."""
    raw = read_ids_file(ids_file)
    if not raw:
        raise DeletionError(f"{ids_file} holds no sample ids: an empty request")
    seen: set[int] = set()
    unique, dups = [], []
    for i in raw:
        (dups if i in seen else unique).append(i)
        seen.add(i)
    train_ids = np.asarray(ds.train_ids.cpu())
    pos = {int(v): r for r, v in enumerate(train_ids)}
    missing = [i for i in unique if i not in pos]
    if missing:
        lo, hi = int(train_ids.min()), int(train_ids.max())
        allowed = f"{lo}..{hi}" if len(train_ids) == hi - lo + 1 else f"the {len(train_ids)} ids of this (subset) training set"
        raise DeletionError(f"{len(missing)} id(s) are not training samples of this dataset, e.g. {missing[:10]}; "
                            f"allowed: {allowed}")
    return unique, sorted(set(dups)), np.asarray([pos[i] for i in unique], dtype=np.int64)


def _split(ds: ImageDataset, forget_rows: np.ndarray, excluded_rows: np.ndarray) -> ForgetSplit:
    n = len(ds.train_labels)
    keep = np.ones(n, dtype=bool)
    keep[forget_rows] = False
    keep[excluded_rows] = False
    retain = np.flatnonzero(keep)
    labels = ds.train_labels.cpu().numpy()
    forgotten = tuple(sorted(set(labels[forget_rows].tolist()) - set(labels[retain].tolist())))
    test_labels = ds.test_labels.cpu().numpy()
    in_f = np.isin(test_labels, forgotten)
    return ForgetSplit(forget=np.sort(forget_rows), retain=retain, test_forget=np.flatnonzero(in_f),
                       test_retain=np.flatnonzero(~in_f), forget_classes=forgotten)


def unlearn_checkpoint(
    checkpoint: str | Path, *, ids_file: str | Path, out: str | Path, method: str = "auto",
    overrides: dict[str, Any] | None = None, exact: bool = False,
    reference: str | Path | list[str | Path] | None = None,
    ds_args: dict[str, Any] | None = None, device: str | None = None, seed: int | None = None,
    request_id: str | None = None,
) -> tuple[Path, DeletionResult]:
    """Honour the deletion request ``ids_file`` on ``checkpoint`` and write ``out`` (see the
    module docstring). Nothing is written when anything is refused."""
    out = Path(out)
    if out.exists():
        raise DeletionError(f"{out} already exists: give each unlearned model its own --out folder")
    import time

    received_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # when the request arrived, not finished
    dev = resolve_device(device)
    loaded, ds = load(checkpoint, ds_args or {})
    ids, dups, rows = request_rows(ds, ids_file)
    earlier = ledger.forgotten_ids(loaded.entries)
    repeated = [i for i in ids if i in earlier]
    new = [i for i in ids if i not in earlier]
    if not new:
        raise DeletionError(f"every id of {ids_file} was already forgotten by an earlier request of this lineage "
                            f"(e.g. {repeated[:5]}): nothing new to forget")
    pos = {int(v): r for r, v in enumerate(np.asarray(ds.train_ids.cpu()))}
    forget_rows = np.asarray([pos[i] for i in new], dtype=np.int64)
    excluded = np.asarray([pos[i] for i in earlier if i in pos], dtype=np.int64)
    split = _split(ds, forget_rows, excluded)
    ds = ds.to(dev)
    spec = dict(loaded.meta["model"])
    name, k, c = spec.pop("name"), spec.pop("num_classes"), spec.pop("in_chans", 3)

    def factory(s: int) -> nn.Module:
        return create_model(name, num_classes=k, in_chans=c, seed=s, **spec)

    train_cfg = TrainConfig.from_dict(loaded.meta["train"]) if loaded.meta.get("train") else TrainConfig()
    seed = int(loaded.meta.get("seed") or 0) if seed is None else seed
    ctx = UnlearnContext(device=dev, seed=seed, model_factory=factory, train_config=train_cfg,
                         bf16=train_cfg.bf16, channels_last=train_cfg.channels_last)
    ref_models: list[nn.Module] = []
    ref_provenance: list[str] = []
    for ref_path in ([] if reference is None else [reference] if not isinstance(reference, list) else reference):
        ref_model, ref_meta = load_checkpoint(checkpoint_base(ref_path)[0], expect_num_classes=ds.num_classes)
        if ref_meta["model"].get("name") != name:
            raise DeletionError(f"the reference {ref_path} is a {ref_meta['model'].get('name')!r} model, "
                                f"the checkpoint a {name!r}")
        if ref_meta.get("dataset_fingerprint") and ref_meta["dataset_fingerprint"] != loaded.meta.get("dataset_fingerprint"):
            raise DeletionError(f"the reference {ref_path} was trained on other data (its dataset fingerprint differs)")
        ref_req = ref_meta.get("request") or {}
        if ref_req.get("kind") == "ids":
            left_in = sorted((set(new) | earlier) - {int(i) for i in ref_req.get("ids", [])})
            if left_in:
                raise DeletionError(f"the reference {ref_path} was trained with {len(left_in)} of the forgotten ids "
                                    f"(e.g. {left_in[:5]}): it is not a model retrained without them")
            ref_provenance.append("retrained without every forgotten id (its training request covers them)")
        else:
            ref_provenance.append("unverified: its checkpoint records no ids request")
        ref_models.append(ref_model)
    ref_model = ref_models[0] if ref_models else None
    from ..study.keys import ids_sha256

    runner = None
    sisa_after: Any = None
    deployable = type(loaded.model).__name__ == "SISAEnsemble" and bool(loaded.meta.get("sisa"))
    if deployable and method not in ("auto", "sisa"):
        raise DeletionError(f"{checkpoint} is a deployable SISA ensemble: delete from it with --method sisa "
                            f"(or auto), which retrains only the affected constituents; {method!r} cannot")
    if deployable:
        from ..core import MethodResult, RunStats
        from . import sisa_state

        if overrides:
            raise DeletionError("a deployable SISA model deletes with the shard plan it was trained with: "
                                f"--set {sorted(overrides)} cannot change it")
        trainer, removed_before = sisa_state.load_state(loaded.base, loaded.meta, ds, dev)
        sisa_state.check_matches(trainer, loaded.model)
        member = loaded.meta["model"]["member"]
        overrides = {"shards": trainer.shards, "slices": trainer.slices,
                     "aggregation": loaded.meta["model"].get("aggregation", "mean")}

        def runner() -> tuple[MethodResult, RunStats]:
            facts = sisa_state.delete(trainer, ds, new, sorted(set(removed_before) | earlier))
            ens = sisa_state.ensemble_of(trainer, member, loaded.meta["model"].get("aggregation", "mean"))
            nonlocal sisa_after
            sisa_after = (trainer, sorted(set(removed_before) | earlier | set(new)))
            return (MethodResult(ens.to(dev).eval(), steps=facts["steps"], info={"deletion": facts},
                                 unlearning_seconds=facts["seconds"]),
                    RunStats(facts["seconds"], facts["steps"], None, ["retain"]))

    req = {"ids": {"count": len(new), "sha256": ids_sha256(new), "duplicates_removed": dups,
                   "already_forgotten": repeated, "excluded_from_retain": len(excluded),
                   "file": str(ids_file)},
           "dataset_fingerprint": loaded.meta.get("dataset_fingerprint")}
    if request_id:
        req["id"] = request_id
    req["received_at"] = received_at
    if ref_provenance:
        req["reference_provenance"] = ref_provenance
    result = honour(loaded.model, ds, split, np.arange(len(ds.test_labels)), method=method, config=overrides,
                    exact=exact, ctx=ctx, reference=ref_model, references=ref_models if len(ref_models) >= 2 else None,
                    request=req, runner=runner)
    ev = result.evidence
    parent_sha = loaded.meta.get("sha256")
    ev["models"]["original_sha256"] = parent_sha  # the checkpoint file's hash (the ledger's model_before)
    made_parent = not out.parent.exists()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    done = False
    try:
        keep = {k: loaded.meta[k] for k in ("dataset", "dataset_loader", "dataset_root", "dataset_fingerprint",
                                            "subset", "train", "seed") if k in loaded.meta}
        if sisa_after is not None:  # the shard state travels with the model, updated by this deletion
            from . import sisa_state

            keep["sisa"] = {"plan_sha256": sisa_state.save_state(tmp / "model", sisa_after[0],
                                                                 np.asarray(ds.train_ids.cpu()), sisa_after[1])}
        save_checkpoint(tmp / "model", result.model, {**keep, "unlearned": {
            "request_id": ev["request"]["id"], "method": ev["method"]["name"], "parent_sha256": parent_sha}})
        after = read_meta(tmp / "model")["sha256"]
        ev["models"]["unlearned_sha256"] = after
        entry = {"request_id": ev["request"]["id"], "received_at": ev["request"]["received_at"],
                 "ids": [int(i) for i in new], "ids_sha256": req["ids"]["sha256"], "method": ev["method"]["name"],
                 "exact": ev["method"]["exact"], "model_before": parent_sha, "model_after": after}
        ev["ledger"] = {"entries": len(loaded.entries) + 1}
        write_json_atomic(tmp / "evidence.json", ev)
        write_text_atomic(tmp / "evidence.html", render_html(ev))
        entry["evidence_sha256"] = ledger.file_sha256(tmp / "evidence.json")
        if sisa_after is not None:
            entry["sisa_plan_sha256"] = keep["sisa"]["plan_sha256"]
        ledger.write(tmp / "ledger.jsonl", ledger.extended(loaded.entries, entry))
        os.rename(tmp, out)  # the folder appears whole, or not at all
        done = True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if not done and made_parent:
            shutil.rmtree(out.parent, ignore_errors=True)
    return out, result


def audit_checkpoint(checkpoint: str | Path, *, forget: str, reference: str | Path | None = None,
                     ds_args: dict[str, Any] | None = None, device: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Measure a saved model on a forget request (``ids:FILE``, a class, …) against the test set."""
    dev = resolve_device(device)
    loaded, ds = load(checkpoint, ds_args or {})
    if forget.startswith("ids:"):
        _, _, rows = request_rows(ds, forget[4:])
    else:
        rows = split_indices(ds.label_info(), parse_request(forget), seed).forget
    held = np.arange(len(ds.test_labels))
    ds = ds.to(dev)
    tc = loaded.meta.get("train") or {}
    kw = dict(bf16=bool(tc.get("bf16", False)), channels_last=bool(tc.get("channels_last", False)))

    def outs(m: nn.Module) -> tuple[Any, Any]:
        m = m.to(dev).eval()
        return _logits(m, ds, rows, False, dev, 512, **kw), _logits(m, ds, held, True, dev, 512, **kw)

    f, h = outs(loaded.model)
    res: dict[str, Any] = {"checkpoint": str(checkpoint), "model_sha256": loaded.meta.get("sha256"),
                           "forget": split_figures(*f), "heldout": split_figures(*h), "attack": ATTACK,
                           "membership": membership_audit(f, h, seed=seed)}
    if reference is not None:
        ref, _ = load_checkpoint(checkpoint_base(reference)[0], expect_num_classes=ds.num_classes)
        rf, rh = outs(ref)
        res["reference"] = {"forget": split_figures(*rf), "heldout": split_figures(*rh),
                            "membership": membership_audit(rf, rh, seed=seed)}
        res["vs_reference"] = compare_to_reference(res["membership"], res["reference"]["membership"])
    return res


__all__ = ["audit_checkpoint", "checkpoint_base", "load_data", "request_rows", "unlearn_checkpoint"]
