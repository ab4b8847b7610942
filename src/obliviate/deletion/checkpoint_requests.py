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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import ForgetRequestError, ForgetSplit, ImageDataset, id_rows, parse_request, read_ids_file, split_indices
from ..methods import UnlearnContext
from ..models import create_model, load_checkpoint, provenance, read_meta, save_checkpoint
from ..models.user import build_from_factory, is_factory_spec
from ..training import TrainConfig
from ..utils import resolve_device
from . import ledger, signing
from .measurements import ATTACK, compare_to_reference, membership_audit, split_figures
from .output import claims_out
from .service import DeletionError, DeletionResult, _logits, honour


@dataclass
class Loaded:
    model: nn.Module
    meta: dict[str, Any]
    base: Path  # the checkpoint path without suffix
    entries: list[dict[str, Any]]  # the lineage's ledger so far


def checkpoint_base(path: str | Path) -> tuple[Path, Path | None]:
    """``(checkpoint path, ledger path or None)``: a folder written by ``obliviate unlearn`` holds
    ``model.*`` and ``ledger.jsonl``; a checkpoint path inside such a folder finds the ledger too,
    so a lineage cannot be restarted by naming its model file instead of its folder."""
    p = Path(path)
    if p.is_dir():
        if not (p / "model.json").is_file():
            raise DeletionError(
                f"{p} is a folder without model.json: give a checkpoint path, or a folder that "
                "`obliviate unlearn` wrote"
            )
        return p / "model", p / "ledger.jsonl"
    base = p.with_suffix("") if p.suffix in (".json", ".safetensors") else p
    beside = base.parent / "ledger.jsonl"
    return base, beside if base.name == "model" and beside.is_file() else None


def load_data(meta: dict[str, Any], dataset: str | None, root: str | None, download: bool = False) -> ImageDataset:
    """The dataset a checkpoint was trained on (:func:`obliviate.models.provenance.load_training_data`)."""
    try:
        return provenance.load_training_data(meta, dataset=dataset, root=root, download=download)
    except provenance.DataProvenanceError as e:
        raise DeletionError(str(e)) from None


def load(path: str | Path, ds_args: dict[str, Any], model_factory: str | None = None) -> tuple[Loaded, ImageDataset]:
    base, ledger_path = checkpoint_base(path)
    meta = read_meta(base)
    ds = load_data(meta, ds_args.get("dataset"), ds_args.get("root"), bool(ds_args.get("download")))
    model, meta = load_checkpoint(base, expect_num_classes=ds.num_classes, model_factory=model_factory)
    if meta.get("unlearned") and (ledger_path is None or not ledger_path.is_file()):
        raise DeletionError(
            f"{base} is the output of an earlier deletion request but its ledger.jsonl is missing: "
            "without it the ids forgotten before would come back through the retain set"
        )
    entries = ledger.read(ledger_path) if ledger_path is not None else []
    if meta.get("unlearned") and not entries:
        raise DeletionError(
            f"{base} is the output of an earlier deletion request but its ledger.jsonl holds no entries: "
            "it was emptied, and the ids forgotten before would come back through the retain set"
        )
    if entries:
        problems = ledger.verify(base.parent)
        if problems:
            raise DeletionError(
                f"the ledger of {base.parent} does not verify ({'; '.join(problems[:3])}): run "
                f"`obliviate ledger verify {base.parent}`"
            )
    return Loaded(model, meta, base, entries), ds


def trained_without(meta: dict[str, Any], ds: ImageDataset) -> set[int]:
    """The sample ids the checkpoint's own training request left out (``obliviate train --forget``):
    the model never saw them, so a later request's retain set may not teach them back."""
    spec = meta.get("request")
    if not spec:
        return set()
    try:
        request = parse_request(spec)
    except ValueError as e:
        raise DeletionError(f"the checkpoint's recorded training request {spec!r} cannot be read ({e})") from None
    rows = split_indices(ds.label_info(), request, int(meta.get("seed") or 0)).forget
    return {int(i) for i in np.asarray(ds.train_ids.cpu())[rows]}


def check_reference(
    path: str | Path,
    ref_meta: dict[str, Any],
    *,
    meta: dict[str, Any],
    ds: ImageDataset,
    required: set[int],
    expected: set[int],
    not_sha: dict[str, str | None],
    salt: str | None = None,
) -> str:
    """Whether the checkpoint at ``path`` (its JSON ``ref_meta``) is what a retrained reference
    must be for the model ``meta``: the same architecture, trained on the same data (content
    fingerprint), other weights than every checkpoint in ``not_sha`` (``{role: sha256}``), and
    never shown the ids ``required``, as its own recorded training request and the exact
    deletions of its ledger say. A contradiction raises :class:`DeletionError`; what the records
    cannot settle (no fingerprint, imported weights, a reference trained on other rows than
    ``expected`` leaves out) is returned as ``"unverified: …"`` with the reasons, else
    ``"verified: …"``."""
    if ref_meta.get("model") != meta.get("model"):
        theirs, ours = ref_meta.get("model") or {}, meta.get("model") or {}
        diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        raise DeletionError(
            f"the reference {path} is another architecture than the checkpoint ("
            + ", ".join(f"{k}: {theirs.get(k)!r} vs {ours.get(k)!r}" for k in diff)
            + "): a retrained reference is the same model trained without the forget rows"
        )
    fp, ref_fp = meta.get("dataset_fingerprint"), ref_meta.get("dataset_fingerprint")
    if fp and ref_fp and fp != ref_fp:
        raise DeletionError(f"the reference {path} was trained on other data (its dataset fingerprint differs)")
    for role, sha in not_sha.items():
        if sha and ref_meta.get("sha256") == sha:
            raise DeletionError(
                f"the reference {path} has the weights of {role}: a retrained reference is a model "
                "trained without the forget rows, from scratch"
            )
    unsure: list[str] = []
    if not (fp and ref_fp):
        unsure.append(f"{'the reference' if fp else 'the checkpoint'} records no dataset fingerprint")
    base, ledger_path = checkpoint_base(path)
    entries = ledger.read(ledger_path) if ledger_path is not None else []
    if ref_meta.get("unlearned") and not entries:
        raise DeletionError(
            f"the reference {path} is the output of a deletion request whose ledger is missing or empty: "
            "what it was trained without cannot be read"
        )
    if entries and ledger.verify(base.parent):
        raise DeletionError(f"the ledger of the reference {path} does not verify: run `obliviate ledger verify`")
    universe = np.asarray(ds.train_ids.cpu()).tolist()
    try:
        exact = ledger.forgotten_ids([e for e in entries if e.get("exact")], universe=universe, salt=salt)
        approx = ledger.forgotten_ids([e for e in entries if not e.get("exact")], universe=universe, salt=salt)
    except ledger.LedgerError as e:
        raise DeletionError(f"the reference {path}: {e}") from None
    never = trained_without(ref_meta, ds) | exact
    seen = sorted(required - never)
    if seen and ref_meta.get("imported_from") and not ref_meta.get("request") and not entries:
        unsure.append(
            "its weights were imported, so what they were trained on is the importer's word "
            "(no training request recorded)"
        )
    elif seen:
        only_approx = sorted(set(seen) & approx)
        raise DeletionError(
            f"the reference {path} was trained with {len(seen)} of the forgotten ids (e.g. {seen[:5]})"
            + (
                f"; {len(only_approx)} of them were removed from it by approximate unlearning, not retraining"
                if only_approx
                else ""
            )
            + ": it is not a model retrained without them"
        )
    extra_seen = sorted((expected - required) - never)
    if extra_seen:
        unsure.append(f"it was trained on {len(extra_seen)} rows this model never saw (e.g. {extra_seen[:5]})")
    extra_out = sorted(never - expected)
    if extra_out:
        unsure.append(f"it was also trained without {len(extra_out)} rows this model holds (e.g. {extra_out[:5]})")
    if unsure:
        return "unverified: " + "; ".join(unsure)
    how = "its training request" + (" and the exact deletions of its ledger" if exact else "")
    return f"verified: same architecture and data fingerprint, other weights, and {how} leave out every forgotten id"


def import_weights(
    weights: str | Path,
    *,
    model_factory: str,
    out: str | Path,
    dataset: str,
    root: str | None = None,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    train_config: dict[str, Any] | None = None,
    seed: int = 0,
    download: bool = False,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Path:
    """A plain state dict (``.pt``/``.pth`` with ``weights_only=True``, or ``.safetensors``) of
    the user's own architecture (``MODULE:FUNCTION``) as an obliviate checkpoint with its data
    provenance: the dataset it was trained on (loader, root, subset, content fingerprint), the
    input normalisation the model expects (``mean``/``std`` per channel in 0..1 units; default
    the dataset's own statistics, recorded as such) and the recipe, recorded as the user's when
    ``train_config`` is given. Returns the JSON path."""
    from ..models.checkpoint import CheckpointError, _fit_state
    from ..models.user import FactoryError, read_state_dict
    from ..utils import file_sha256

    try:
        ds = provenance.load_data(
            dataset, root, train_per_class=train_per_class, test_per_class=test_per_class, download=download
        )
    except provenance.DataProvenanceError as e:
        raise DeletionError(str(e)) from None
    if (mean is None) != (std is None):
        raise DeletionError("give both --mean and --std (the normalisation your model was trained with), or neither")
    if (
        mean is not None
        and std is not None
        and (len(mean) != ds.channels or len(std) != ds.channels or not all(v > 0 for v in std))
    ):
        raise DeletionError(
            f"--mean/--std need {ds.channels} value(s) each (one per channel, std > 0), got {list(mean)} / {list(std)}"
        )
    norm = {
        "mean": list(mean or ds.mean),
        "std": list(std or ds.std),
        "source": "the user's (given at import)" if mean is not None else "the dataset's own statistics",
    }
    try:
        state = read_state_dict(weights)
        model = build_from_factory(model_factory, ds.num_classes, seed=seed)
        _fit_state(model, state, Path(weights).name)
    except (FactoryError, CheckpointError) as e:
        raise DeletionError(str(e)) from None
    try:
        cfg = TrainConfig.from_dict(train_config or {})
    except (ValueError, TypeError) as e:
        raise DeletionError(f"--train-json: {e}") from None
    meta = {
        **provenance.record(ds, dataset, root, train_per_class=train_per_class, test_per_class=test_per_class),
        "request": None,
        "seed": seed,
        "train": cfg.to_dict(),
        "input_normalisation": norm,
        "recipe_source": "the user's (given at import)"
        if train_config
        else "obliviate default (none given at import; pass --train-json)",
        "imported_from": {"file": str(weights), "sha256": file_sha256(Path(weights))},
    }
    return save_checkpoint(out, model, meta)


def request_rows(ds: ImageDataset, ids_file: str | Path) -> tuple[list[int], list[int], np.ndarray]:
    """``(unique ids in file order, duplicates, their training rows)``; unknown ids are refused."""
    raw = read_ids_file(ids_file)
    if not raw:
        raise DeletionError(f"{ids_file} holds no sample ids: an empty request")
    seen: set[int] = set()
    unique: list[int] = []
    dups: list[int] = []
    for i in raw:
        (dups if i in seen else unique).append(i)
        seen.add(i)
    try:
        rows = id_rows(ds.train_ids.cpu().numpy(), unique)
    except ForgetRequestError as e:
        raise DeletionError(str(e)) from None
    return unique, sorted(set(dups)), rows


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
    return ForgetSplit(
        forget=np.sort(forget_rows),
        retain=retain,
        test_forget=np.flatnonzero(in_f),
        test_retain=np.flatnonzero(~in_f),
        forget_classes=forgotten,
    )


def training_record(meta: dict[str, Any], rows: int) -> torch.Tensor | None:
    """The original's training record from a checkpoint's metadata (``obliviate train`` keeps it:
    each training row's mean label probability while trained on; NaN where not trained on), or
    ``None`` when the checkpoint has none or it does not cover the loaded data's ``rows``."""
    record = meta.get("training_confidence")
    if not isinstance(record, list) or len(record) != rows:
        return None
    return torch.tensor([float("nan") if c is None else float(c) for c in record], dtype=torch.float32)


@claims_out
def unlearn_checkpoint(
    checkpoint: str | Path,
    *,
    ids_file: str | Path,
    out: str | Path,
    method: str = "auto",
    overrides: dict[str, Any] | None = None,
    exact: bool = False,
    reference: str | Path | list[str | Path] | None = None,
    ds_args: dict[str, Any] | None = None,
    device: str | None = None,
    seed: int | None = None,
    request_id: str | None = None,
    model_factory: str | None = None,
    fallback: str = "retrain",
    ledger_form: str = "plain",
    signing_key: Any = None,
) -> tuple[Path, DeletionResult]:
    """Honour the deletion request ``ids_file`` on ``checkpoint`` and write ``out`` (see the
    module docstring). Nothing is written when anything is refused. ``model_factory``
    (``MODULE:FUNCTION``) rebuilds a checkpoint of the user's own architecture; ``ledger_form``
    ``salted`` keeps the ids as HMACs under ``$OBLIVIATE_LEDGER_SALT``; ``signing_key`` (default
    ``$OBLIVIATE_LEDGER_KEY``) signs the folder's head, and an anchored lineage is continued only
    under the key that signed it (:func:`~obliviate.deletion.signing.lineage_anchor`)."""
    from .output import OutputError, check_out, ledger_ids, write_output

    salt = os.environ.get("OBLIVIATE_LEDGER_SALT")
    try:
        out = check_out(out)
        ledger_ids([], ledger_form, salt)
        key = signing.signing_key(signing_key)
    except (OutputError, signing.SigningKeyError) as e:
        raise DeletionError(str(e)) from None
    import time

    received_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # when the request arrived, not finished
    dev = resolve_device(device)
    loaded, ds = load(checkpoint, ds_args or {}, model_factory=model_factory)
    try:
        ledger.check_request_id(loaded.entries, request_id)
    except ledger.LedgerError as e:
        raise DeletionError(str(e)) from None
    problems = signing.lineage_anchor(loaded.base.parent, loaded.entries, key)
    if problems:
        raise DeletionError("this lineage cannot be continued: " + "; ".join(problems))
    ids, dups, _rows = request_rows(ds, ids_file)
    train_ids = np.asarray(ds.train_ids.cpu())
    try:
        earlier = ledger.forgotten_ids(loaded.entries, universe=train_ids.tolist(), salt=salt)
    except ledger.LedgerError as e:
        raise DeletionError(str(e)) from None
    never = trained_without(loaded.meta, ds)  # the rows the model's own training request left out
    repeated = [i for i in ids if i in earlier]
    untrained = [i for i in ids if i in never and i not in earlier]
    new = [i for i in ids if i not in earlier and i not in never]
    if not new:
        raise DeletionError(
            f"no id of {ids_file} is in this model's training data any more: "
            + (
                f"{len(repeated)} already forgotten by an earlier request of this lineage (e.g. {repeated[:5]})"
                if repeated
                else ""
            )
            + ("; " if repeated and untrained else "")
            + (
                f"{len(untrained)} left out by the model's own training request (e.g. {untrained[:5]})"
                if untrained
                else ""
            )
            + ": nothing new to forget"
        )
    pos = {int(v): r for r, v in enumerate(train_ids)}
    forget_rows = np.asarray([pos[i] for i in new], dtype=np.int64)
    excluded = np.asarray(sorted({pos[i] for i in earlier | never if i in pos}), dtype=np.int64)
    split = _split(ds, forget_rows, excluded)
    ds = ds.to(dev)
    spec = dict(loaded.meta["model"])
    name, k, c = spec.pop("name"), spec.pop("num_classes"), spec.pop("in_chans", 3)

    def factory(s: int) -> nn.Module:
        if is_factory_spec(loaded.meta["model"]):
            return build_from_factory(str(model_factory), k, seed=s)
        return create_model(name, num_classes=k, in_chans=c, seed=s, **spec)

    train_cfg = TrainConfig.from_dict(loaded.meta["train"]) if loaded.meta.get("train") else TrainConfig()
    seed = int(loaded.meta.get("seed") or 0) if seed is None else seed
    ctx = UnlearnContext(
        device=dev,
        seed=seed,
        model_factory=factory,
        train_config=train_cfg,
        bf16=train_cfg.bf16,
        channels_last=train_cfg.channels_last,
        training_confidence=training_record(loaded.meta, len(ds.train_labels)),
    )
    ref_models: list[nn.Module] = []
    ref_provenance: list[str] = []
    ref_model: nn.Module | None
    for ref_path in [] if reference is None else [reference] if not isinstance(reference, list) else reference:
        ref_base = checkpoint_base(ref_path)[0]
        ref_provenance.append(
            check_reference(
                ref_path,
                read_meta(ref_base),
                meta=loaded.meta,
                ds=ds,
                required=set(new) | earlier,
                expected=set(new) | earlier | never,
                not_sha={"the original": loaded.meta.get("sha256")},
                salt=salt,
            )
        )
        ref_model, _ = load_checkpoint(ref_base, expect_num_classes=ds.num_classes, model_factory=model_factory)
        ref_models.append(ref_model)
    ref_model = ref_models[0] if ref_models else None
    from ..study.keys import ids_sha256

    runner = None
    sisa_after: Any = None
    deployable = type(loaded.model).__name__ == "SISAEnsemble" and bool(loaded.meta.get("sisa"))
    if deployable and method not in ("auto", "sisa"):
        raise DeletionError(
            f"{checkpoint} is a deployable SISA ensemble: delete from it with --method sisa "
            f"(or auto), which retrains only the affected constituents; {method!r} cannot"
        )
    if deployable:
        from ..core import MethodResult, RunStats
        from . import sisa_state

        if overrides:
            raise DeletionError(
                "a deployable SISA model deletes with the shard plan it was trained with: "
                f"--set {sorted(overrides)} cannot change it"
            )
        trainer, removed_before = sisa_state.load_state(loaded.base, loaded.meta, ds, dev)
        sisa_state.check_matches(trainer, loaded.model)
        member = loaded.meta["model"]["member"]
        overrides = {
            "shards": trainer.shards,
            "slices": trainer.slices,
            "aggregation": loaded.meta["model"].get("aggregation", "mean"),
        }

        def runner() -> tuple[MethodResult, RunStats]:
            facts = sisa_state.delete(trainer, ds, new, sorted(set(removed_before) | earlier))
            ens = sisa_state.ensemble_of(trainer, member, loaded.meta["model"].get("aggregation", "mean"))
            nonlocal sisa_after
            sisa_after = (trainer, sorted(set(removed_before) | earlier | set(new)))
            return (
                MethodResult(
                    ens.to(dev).eval(),
                    steps=facts["steps"],
                    info={"deletion": facts},
                    unlearning_seconds=facts["seconds"],
                ),
                RunStats(facts["seconds"], facts["steps"], None, ["retain"]),
            )

    req: dict[str, Any] = {
        "ids": {
            "count": len(new),
            "sha256": ids_sha256(new),
            "duplicates_removed": dups,
            "already_forgotten": repeated,
            "never_trained_on": untrained,
            "excluded_from_retain": len(excluded),
            "file": str(ids_file),
        },
        "dataset_fingerprint": loaded.meta.get("dataset_fingerprint"),
    }
    if request_id:
        req["id"] = request_id
    req["received_at"] = received_at
    if ref_provenance:
        req["reference_provenance"] = ref_provenance
    recipe = {
        "train_config": train_cfg.to_dict(),
        "source": loaded.meta.get("recipe_source", "the checkpoint's recorded training recipe")
        if loaded.meta.get("train")
        else "obliviate default (the checkpoint records none)",
        "retraining": "obliviate.training.fit with train_config",
        "model_factory": model_factory or f"the zoo's {name!r}",
    }
    result = honour(
        loaded.model,
        ds,
        split,
        np.arange(len(ds.test_labels)),
        method=method,
        config=overrides,
        exact=exact,
        ctx=ctx,
        reference=ref_model,
        references=ref_models if len(ref_models) >= 2 else None,
        request=req,
        runner=runner,
        fallback=fallback,
        recipe=recipe,
    )
    ev = result.evidence
    parent_sha = loaded.meta.get("sha256")
    ev["models"]["original_sha256"] = parent_sha  # the checkpoint file's hash (the ledger's model_before)
    keep = {
        k: loaded.meta[k]
        for k in (
            *provenance.PROVENANCE_KEYS,
            "train",
            "seed",
            "request",
            "recipe_source",
            "input_normalisation",
            "training_confidence",
        )
        if k in loaded.meta
    }
    entry = {
        "request_id": ev["request"]["id"],
        "received_at": ev["request"]["received_at"],
        **ledger_ids([int(i) for i in new], ledger_form, salt),
        "ids_sha256": req["ids"]["sha256"],
        "method": ev["method"]["name"],
        "exact": ev["method"]["exact"],
        "outcome": ev["outcome"],
        "model_before": parent_sha,
    }

    plan: dict[str, str] = {}

    def save_model(path: Path) -> None:
        if sisa_after is not None:  # the shard state travels with the model, updated by this deletion
            from . import sisa_state

            plan["sha"] = sisa_state.save_state(path, sisa_after[0], train_ids, sisa_after[1])
            keep["sisa"] = {"plan_sha256": plan["sha"]}
        save_checkpoint(
            path,
            result.model,
            {
                **keep,
                "unlearned": {
                    "request_id": ev["request"]["id"],
                    "method": ev["method"]["name"],
                    "parent_sha256": parent_sha,
                },
            },
        )

    def extra(tmp: Path) -> dict[str, Any]:
        return {"sisa_plan_sha256": plan["sha"]} if plan else {}

    try:
        write_output(out, save_model=save_model, evidence=ev, entries=loaded.entries, entry=entry, extra=extra, key=key)
    except OutputError as e:
        raise DeletionError(str(e)) from None
    return out, result


def audit_checkpoint(
    checkpoint: str | Path,
    *,
    forget: str,
    reference: str | Path | None = None,
    ds_args: dict[str, Any] | None = None,
    device: str | None = None,
    seed: int = 0,
    model_factory: str | None = None,
) -> dict[str, Any]:
    """Measure a saved model on a forget request (``ids:FILE``, a class, …) against the test set."""
    dev = resolve_device(device)
    loaded, ds = load(checkpoint, ds_args or {}, model_factory=model_factory)
    if forget.startswith("ids:"):
        _, _, rows = request_rows(ds, forget[4:])
    else:
        try:
            rows = split_indices(ds.label_info(), parse_request(forget), seed).forget
        except (ForgetRequestError, ValueError) as e:
            raise DeletionError(f"--forget {forget!r}: {e}") from None
    provenance_line = None
    if reference is not None:
        train_ids = np.asarray(ds.train_ids.cpu())
        salt = os.environ.get("OBLIVIATE_LEDGER_SALT")
        required = {int(i) for i in train_ids[rows]}
        try:
            before = ledger.forgotten_ids(loaded.entries, universe=train_ids.tolist(), salt=salt)
        except ledger.LedgerError as e:
            raise DeletionError(str(e)) from None
        provenance_line = check_reference(
            reference,
            read_meta(checkpoint_base(reference)[0]),
            meta=loaded.meta,
            ds=ds,
            required=required,
            expected=required | before | trained_without(loaded.meta, ds),
            not_sha={
                "the audited model": loaded.meta.get("sha256"),
                "the audited model's original": (loaded.meta.get("unlearned") or {}).get("parent_sha256"),
            },
            salt=salt,
        )
    held = np.arange(len(ds.test_labels))
    ds = ds.to(dev)
    tc = loaded.meta.get("train") or {}
    kw = dict(bf16=bool(tc.get("bf16", False)), channels_last=bool(tc.get("channels_last", False)))

    def outs(m: nn.Module) -> tuple[Any, Any]:
        m = m.to(dev).eval()
        return _logits(m, ds, rows, False, dev, 512, **kw), _logits(m, ds, held, True, dev, 512, **kw)

    f, h = outs(loaded.model)
    res: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "model_sha256": loaded.meta.get("sha256"),
        "forget": split_figures(*f),
        "heldout": split_figures(*h),
        "attack": ATTACK,
        "membership": membership_audit(f, h, seed=seed),
    }
    if reference is not None:
        ref, _ = load_checkpoint(
            checkpoint_base(reference)[0], expect_num_classes=ds.num_classes, model_factory=model_factory
        )
        rf, rh = outs(ref)
        res["reference"] = {
            "provenance": provenance_line,
            "forget": split_figures(*rf),
            "heldout": split_figures(*rh),
            "membership": membership_audit(rf, rh, seed=seed),
        }
        res["vs_reference"] = compare_to_reference(res["membership"], res["reference"]["membership"])
        if provenance_line and provenance_line.startswith("unverified"):
            res["vs_reference"] += " (the reference is " + provenance_line + ")"
    return res


__all__ = [
    "audit_checkpoint",
    "check_reference",
    "checkpoint_base",
    "import_weights",
    "load_data",
    "request_rows",
    "trained_without",
    "unlearn_checkpoint",
]
