"""The vision task: image classifiers, forget requests over a labelled dataset, the metric registry.

For one (model, request, seed) group::

    dataset --split_indices--> ForgetSplit
    original  = cache[key] or fit(all training rows)
    retrained = cache[key + forget ids] or Retrain().unlearn(...)   (never reads the forget set)
    random    = freshly initialised model                         (for ZRF)
    outputs[role][split] = predict_logits(...)                    (once per model and split)
    for each pending unit: run_method -> outputs -> compute_metrics -> record
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...attacks.per_example import matched_nonmembers
from ...core import check_tensor
from ...data import ForgetRequest, ForgetSplit, ImageDataset, SampleIdsForget, load_dataset, split_indices
from ...methods import METHODS, UnlearnContext, UnlearnData, run_method
from ...methods.base import frozen_copy
from ...metrics import METRICS, EvalInputs, Outputs, compute_metrics
from ...metrics.classification import confusion, per_class_accuracy
from ...metrics.membership import AuditInputs, query_phi
from ...models import ModelCache, create_model, num_parameters
from ...training import fit, make_loader, predict_features, predict_logits
from ..keys import ids_sha256, model_code_salt, run_code_salt
from ..spec import DatasetSpec, ModelSpec, StudySpec
from .base import GroupPlan, OpenGroup, Progress, Unit

AUDIT_METRICS = ("lira", "rmia", "linear_probe")  # timed apart: the audit's own cost is reported


def reference_seed(seed: int, k: int) -> int:
    """The training seed of the group's k-th audit reference model (never the group's own seed)."""
    return seed + 100_003 * (k + 1)


def _rounded(phi: np.ndarray) -> list[float]:
    """φ per forget row, the mean over queries, to 4 decimals (what the records keep for ε)."""
    return [round(float(v), 4) for v in np.asarray(phi).mean(axis=-1)]


def request_key(request: ForgetRequest) -> dict[str, Any]:
    """What of a request decides a result: an ids request by the content of its ids, never by
    the name of the file they came from."""
    d = request.to_dict()
    if isinstance(request, SampleIdsForget):
        return {"kind": "ids", "count": len(request.ids), "ids_sha256": ids_sha256(request.ids)}
    return d


def load_study_dataset(spec: StudySpec, progress: Progress | None = None) -> ImageDataset:
    d = spec.dataset
    assert isinstance(d, DatasetSpec)
    if progress is not None:
        progress.stage(f"loading dataset {d.name}")
    ds = load_dataset(d.name, root=d.root, download=d.download)
    if d.train_per_class or d.test_per_class:
        ds = ds.subset(d.train_per_class, d.test_per_class, seed=d.subset_seed)
    return ds


def metric_names(spec: StudySpec) -> list[str]:
    if spec.metrics == "default":
        from ...metrics.defaults import DEFAULT_METRICS

        return list(DEFAULT_METRICS)
    return list(spec.metrics)


@dataclass
class _Handle:
    model_spec: ModelSpec
    request: ForgetRequest
    split: ForgetSplit


class VisionTask:
    """Runs the vision part of a :class:`~obliviate.study.spec.StudySpec`."""

    kind = "vision"

    def __init__(self, spec: StudySpec, cache: ModelCache, device: torch.device) -> None:
        self.spec, self.cache, self.device = spec, cache, device
        self.metric_names = metric_names(spec)
        self.ds: ImageDataset | None = None
        self.fingerprint = ""
        self.trained: list[str] = []  # reference models trained by this process (for timing claims)

    # -- plan -------------------------------------------------------------------------------------
    def prepare(self, progress: Progress) -> dict[str, Any]:
        self.ds = load_study_dataset(self.spec, progress).to(self.device)
        self.fingerprint = self.ds.fingerprint()
        labels = self.ds.label_info()
        # splits are computed (and validated) for every request and seed before any training
        self._splits = {
            (ri, seed): split_indices(labels, r, seed)
            for ri, r in enumerate(self.spec.requests)
            for seed in self.spec.seeds
        }
        return {"dataset": self.ds.describe(), "dataset_fingerprint": self.fingerprint, "metrics": self.metric_names}

    def _model_inputs(self, mspec: ModelSpec) -> dict[str, Any]:
        """The model's key inputs, defaults filled in (writing out a default is not a new model)."""
        from ...models import model_arguments

        assert self.ds is not None
        kwargs = {k: d for k, (_, d) in model_arguments(mspec.name).items()}
        return {
            "name": mspec.name,
            "kwargs": {**kwargs, **mspec.kwargs},
            "num_classes": self.ds.num_classes,
            "in_chans": self.ds.channels,
        }

    def _eval_inputs(self) -> dict[str, Any]:
        """The evaluation settings as they take effect (``None`` resolved from the training config)."""
        ev, tc = self.spec.eval, self.spec.train
        return {
            "batch_size": ev.batch_size,
            "retain_max": ev.retain_max,
            "bf16": tc.bf16 if ev.bf16 is None else ev.bf16,
            "tta": tc.tta if ev.tta is None else ev.tta,
            "channels_last": tc.channels_last,
        }

    def _queries(self) -> tuple[str, ...]:
        q = self.spec.audit.queries
        if q == "auto":
            return ("image", "flip") if self.spec.train.flip else ("image",)
        return ("image",) if q == "image" else ("image", "flip")

    def _audit_settings(self) -> dict[str, Any]:
        """The audit settings as they take effect (``auto`` queries resolved)."""
        return {**self.spec.audit.to_dict(), "queries": list(self._queries())}

    def plan(self) -> list[GroupPlan]:
        assert self.ds is not None
        spec, ds = self.spec, self.ds
        groups = []
        costly = any(METRICS.get(n).costly for n in self.metric_names)  # relearn settings matter only then
        for mspec in spec.models:
            for ri, request in enumerate(spec.requests):
                for seed in spec.seeds:
                    split = self._splits[(ri, seed)]
                    forget_ids = np.asarray(ds.train_ids.cpu())[split.forget]
                    ginputs = {
                        "task": "vision",
                        "dataset": self.fingerprint,
                        "model": self._model_inputs(mspec),
                        "train": spec.train.to_dict(),
                        "request": request_key(request),
                        "forget_ids_sha256": ids_sha256(forget_ids),
                        "seed": seed,
                        "validation_fraction": spec.validation_fraction,
                        "eval": self._eval_inputs(),
                        "audit": self._audit_settings(),
                        "code": model_code_salt("vision"),
                    }
                    units = []
                    for m in spec.methods:
                        cls = METHODS.get(m.name)
                        cfg = m.build().config.to_dict()
                        why = (
                            f"{m.name} forgets whole classes only; this request ({request.describe()}) has none"
                            if cls.class_level and not split.forget_classes
                            else f"{m.name} forgets samples only; this request ({request.describe()}) is whole classes"
                            if cls.sample_level and split.forget_classes
                            else None
                        )
                        if cfg.get("stop") == "calibrated" and why is None:
                            why = (
                                "the calibrated stop is for sample-level requests; this one forgets whole classes"
                                if split.forget_classes
                                else "the calibrated stop needs held-out rows: set the study's validation_fraction > 0"
                                if spec.validation_fraction <= 0
                                else None
                            )
                        units.append(
                            Unit(
                                m.label,
                                m.name,
                                cfg,
                                {
                                    "group": ginputs,
                                    "method": {"name": m.name, "config": cfg},
                                    "metrics": self.metric_names,
                                    "relearn": spec.relearn.to_dict() if costly else None,
                                    "code": run_code_salt("vision", cls),
                                },
                                why,
                            )
                        )
                    groups.append(
                        GroupPlan(mspec.label, request.describe(), seed, ginputs, units, _Handle(mspec, request, split))
                    )
        return groups

    # -- one group --------------------------------------------------------------------------------
    def _factory(self, mspec: ModelSpec) -> Callable[[int], nn.Module]:
        ds = self.ds
        assert ds is not None

        def make(seed: int) -> nn.Module:
            return create_model(mspec.name, num_classes=ds.num_classes, in_chans=ds.channels, seed=seed, **mspec.kwargs)

        return make

    def _cached_or_train(
        self,
        key_spec: dict[str, Any],
        desc: str,
        progress: Progress,
        train: Callable[[Callable[[dict[str, Any]], None]], tuple[nn.Module, dict[str, Any]]],
    ) -> tuple[nn.Module, dict[str, Any]]:
        with self.cache.entry(key_spec, on_wait=progress.stage) as entry:
            hit = entry.load(map_location=self.device)
            if hit is not None:
                progress.stage(f"{desc}: from cache ({entry.key})")
                model, meta = hit
                return model, {**meta, "timing_source": "model cache"}
            progress.stage(f"{desc}: training")
            with progress.steps(desc) as cb:
                model, meta = train(cb)
            meta = {**meta, "trained_at": time.strftime("%Y-%m-%d %H:%M:%S")}
            entry.store(model, meta)
            self.trained.append(desc)
            return model, {**meta, "cache_spec_key": entry.key, "timing_source": "trained by this study run"}

    def open(self, group: GroupPlan, progress: Progress) -> OpenGroup:
        spec, ds = self.spec, self.ds
        assert ds is not None
        h: _Handle = group.handle
        mspec, request, seed, split = h.model_spec, h.request, group.seed, h.split
        factory = self._factory(mspec)
        train_cfg = spec.train
        code = model_code_salt("vision")
        base_key = {
            "dataset": self.fingerprint,
            "model": self._model_inputs(mspec),
            "train": train_cfg.to_dict(),
            "seed": seed,
            "code": code,
        }

        def train_original(cb: Callable[[dict[str, Any]], None]) -> tuple[nn.Module, dict[str, Any]]:
            model = factory(seed)
            res = fit(
                model,
                make_loader(ds, torch.arange(len(ds.train_labels)), train_cfg, seed),
                train_cfg,
                device=self.device,
                progress=cb,
                record_confidence=True,
            )
            assert res.confidence is not None
            return model, {
                "seconds": res.seconds,
                "steps": res.steps,
                "epoch_loss": res.epoch_loss,
                # per training row: the mean label probability while trained on (a memorisation proxy)
                "training_confidence": [round(float(c), 5) for c in res.confidence],
            }

        original, original_meta = self._cached_or_train(
            {**base_key, "role": "original"}, f"original {mspec.label} seed {seed}", progress, train_original
        )
        original.to(self.device)
        validation_rows = self._validation_rows(seed)
        shared: dict[str, nn.Module] = {}

        def reference() -> nn.Module:  # one frozen copy of the original per group, for every method's teacher
            if "original" not in shared:
                shared["original"] = frozen_copy(original)
            return shared["original"]

        ctx_base: dict[str, Any] = dict(
            device=self.device,
            seed=seed,
            model_factory=factory,
            train_config=train_cfg,
            bf16=train_cfg.bf16,
            channels_last=train_cfg.channels_last,
            reference_model=reference,
            training_confidence=(
                torch.tensor(original_meta["training_confidence"], dtype=torch.float32)
                if "training_confidence" in original_meta
                else None
            ),
        )
        retrain_cls = METHODS.get("retrain")

        def train_retrained(cb: Callable[[dict[str, Any]], None]) -> tuple[nn.Module, dict[str, Any]]:
            data = UnlearnData(ds, split, retrain_cls.uses, validation_rows, self.device)
            result, stats = run_method(retrain_cls(), original, data, UnlearnContext(**ctx_base, progress=cb))
            return result.model, {"seconds": stats.seconds, "steps": stats.steps, "splits_read": stats.splits_read}

        retrained, retrained_meta = self._cached_or_train(
            {
                **base_key,
                "role": "retrained",
                "request": request_key(request),
                "forget_ids_sha256": group.inputs["forget_ids_sha256"],
            },
            f"retrained {mspec.label} {request.describe()} seed {seed}",
            progress,
            train_retrained,
        )
        retrained.to(self.device)
        random_model = factory(seed + 1_000_003).to(self.device)

        audit = self.spec.audit
        references: list[tuple[nn.Module, dict[str, Any]]] = []
        for k in range(audit.references):
            ref_seed = reference_seed(seed, k)

            def train_reference(
                cb: Callable[[dict[str, Any]], None], ref_seed: int = ref_seed
            ) -> tuple[nn.Module, dict[str, Any]]:
                data = UnlearnData(ds, split, retrain_cls.uses, validation_rows, self.device)
                ctx = UnlearnContext(**{**ctx_base, "seed": ref_seed}, progress=cb)
                result, stats = run_method(retrain_cls(), original, data, ctx)
                return result.model, {"seconds": stats.seconds, "steps": stats.steps, "splits_read": stats.splits_read}

            ref, ref_meta = self._cached_or_train(
                {
                    **base_key,
                    "seed": ref_seed,
                    "role": "retrained",
                    "request": request_key(request),
                    "forget_ids_sha256": group.inputs["forget_ids_sha256"],
                },
                f"reference {k + 1}/{audit.references} {mspec.label} {request.describe()} (seed {ref_seed})",
                progress,
                train_reference,
            )
            references.append((ref.to(self.device), {**ref_meta, "seed": ref_seed}))

        eval_rows = self._eval_rows(split, validation_rows, seed)
        outputs = self._reference_outputs(
            group, eval_rows, progress, {"original": original, "retrained": retrained, "random": random_model}
        )
        memo: dict[tuple[str, str], Any] = {}
        audit_rows = self._audit_rows(split, eval_rows, seed)
        # what the audit needs: φ when there are K >= 2 references and an attack asks for them,
        # probe features on a class request when the probe is asked for; else nothing is computed
        want = (
            audit.references >= 2 and any(n in self.metric_names for n in ("lira", "rmia")),
            "probe_train" in audit_rows and "linear_probe" in self.metric_names,
        )
        t_audit = time.perf_counter()
        ref_audit = (
            {
                role: self._audit_model(m, audit_rows, *want)
                for role, m in (("original", original), ("retrained", retrained))
            }
            if any(want)
            else {}
        )
        ref_phi = [self._audit_model(m, audit_rows, True, False)["phi"] for m, _ in references] if want[0] else []
        audit_seconds = time.perf_counter() - t_audit
        record = {
            "task": "vision",
            "model": mspec.label,
            "request": request.describe(),
            "request_spec": request.to_dict(),
            "seed": seed,
            "split_sizes": {**split.sizes(), **{f"eval_{k}": len(v) for k, v in eval_rows.items()}},
            "forget_classes": list(split.forget_classes),
            "class_names": list(ds.class_names),
            "num_parameters": num_parameters(original),
            "original": {
                "seconds": original_meta.get("seconds"),
                "steps": original_meta.get("steps"),
                "timing_source": original_meta.get("timing_source"),
                **self._artifacts(outputs["original"]),
            },
            "retrained": {
                "seconds": retrained_meta.get("seconds"),
                "steps": retrained_meta.get("steps"),
                "timing_source": retrained_meta.get("timing_source"),
                "trained_at": retrained_meta.get("trained_at"),
                **self._artifacts(outputs["retrained"]),
            },
            "not_applicable": {u.label: u.not_applicable for u in group.units if u.not_applicable},
            "audit": {
                **self._audit_settings(),
                "heldout_rows": int(len(audit_rows["heldout"])),
                "forget_rows": int(len(split.forget)),
                "probe_rows": int(len(audit_rows.get("probe_train", ()))),
                "references_models": [
                    {"seed": m["seed"], "seconds": m.get("seconds"), "timing_source": m.get("timing_source")}
                    for _, m in references
                ],
                "reference_seconds": float(sum(float(m.get("seconds") or 0.0) for _, m in references)),
                "audit_inputs_seconds": audit_seconds,
                **(
                    {
                        "reference_phi_forget": [_rounded(p[0]) for p in ref_phi],
                        "retrained_phi_forget": _rounded(ref_audit["retrained"]["phi"][0]),
                        "original_phi_forget": _rounded(ref_audit["original"]["phi"][0]),
                    }
                    if want[0]
                    else {}
                ),
                # the memorisation proxy the original's training recorded, for the same forget rows
                # (how well it foretells the references' φ: bench/frontier_memorise/proxy_power.py)
                **(
                    {
                        "original_training_confidence_forget": [
                            round(float(c), 4) for c in confidence[torch.as_tensor(split.forget)]
                        ]
                    }
                    if want[0] and (confidence := ctx_base["training_confidence"]) is not None
                    else {}
                ),
            },
        }

        def run(unit: Unit) -> dict[str, Any]:
            return self._run_unit(
                group,
                unit,
                original,
                retrained,
                retrained_meta,
                outputs,
                eval_rows,
                validation_rows,
                ctx_base,
                memo,
                progress,
                (audit_rows, ref_audit, ref_phi, want),
            )

        return OpenGroup(run=run, record=record)

    def _audit_rows(self, split: ForgetSplit, eval_rows: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
        """The audit's rows: the forget rows, held-out test rows in their class proportions and,
        for the probe on a class request, up to ``probe_per_class`` training rows of each class."""
        ds = self.ds
        assert ds is not None
        test = np.sort(np.concatenate([eval_rows["test_forget"], eval_rows["test_retain"]]))
        train_y, test_y = ds.train_labels.cpu().numpy(), ds.test_labels.cpu().numpy()
        rows = {
            "forget": split.forget,
            "heldout": test[matched_nonmembers(train_y[split.forget], test_y[test], seed=seed + 31)],
        }
        if self.spec.audit.probe and split.forget_classes:
            rng = np.random.default_rng(seed + 37)
            pool = np.sort(np.concatenate([split.forget, split.retain]))
            cap = self.spec.audit.probe_per_class
            picked = [
                rng.choice(r, min(cap, len(r)), replace=False)
                for c in range(ds.num_classes)
                if len(r := pool[train_y[pool] == c])
            ]
            rows.update(
                probe_train=np.sort(np.concatenate(picked)),
                test_forget=eval_rows["test_forget"],
                test_retain=eval_rows["test_retain"],
            )
        return rows

    def _audit_model(
        self, model: nn.Module, rows: dict[str, np.ndarray], phi: bool = True, features: bool = True
    ) -> dict[str, Any]:
        """One model's per-example φ ``(forget (N, Q), held-out (M, Q))`` and probe features."""
        ds = self.ds
        assert ds is not None
        ev, tc = self.spec.eval, self.spec.train
        kw: dict[str, Any] = dict(
            mean=ds.mean,
            std=ds.std,
            batch_size=ev.batch_size,
            device=self.device,
            bf16=tc.bf16 if ev.bf16 is None else ev.bf16,
            channels_last=tc.channels_last,
        )
        out: dict[str, Any] = {}
        phis = [
            query_phi(model, images, labels, r, queries=self._queries(), **kw)
            for images, labels, r in (
                ((ds.train_images, ds.train_labels, rows["forget"]), (ds.test_images, ds.test_labels, rows["heldout"]))
                if phi
                else ()
            )
        ]
        if phi:
            out["phi"] = (phis[0], phis[1])
        if features and "probe_train" in rows:
            feats = {}
            for split, images, labels in (
                ("train", ds.train_images, ds.train_labels),
                ("test_forget", ds.test_images, ds.test_labels),
                ("test_retain", ds.test_images, ds.test_labels),
            ):
                t = torch.as_tensor(rows["probe_train" if split == "train" else split], dtype=torch.long)
                x = predict_features(model, images, rows=t, **kw).numpy() if len(t) else np.zeros((0, 1))
                feats[split] = (x, labels[t.to(labels.device)].cpu().numpy())
            out["features"] = feats
        return out

    def _validation_rows(self, seed: int) -> np.ndarray:
        assert self.ds is not None
        n = len(self.ds.test_labels)
        k = int(round(self.spec.validation_fraction * n))
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        return np.sort(np.random.default_rng(seed + 17).permutation(n)[:k])

    def _eval_rows(self, split: ForgetSplit, validation_rows: np.ndarray, seed: int) -> dict[str, np.ndarray]:
        assert self.ds is not None
        retain = split.retain
        cap = self.spec.eval.retain_max
        if cap is not None and len(retain) > int(cap):
            retain = np.sort(np.random.default_rng(seed + 29).choice(retain, int(cap), replace=False))
        held = np.zeros(len(self.ds.test_labels), dtype=bool)
        held[validation_rows] = True
        return {
            "forget": split.forget,
            "retain": retain,
            "test_forget": split.test_forget[~held[split.test_forget]],
            "test_retain": split.test_retain[~held[split.test_retain]],
        }

    def _outputs(self, model: nn.Module, rows: dict[str, np.ndarray]) -> dict[str, Outputs]:
        ds = self.ds
        assert ds is not None
        ev, tc = self.spec.eval, self.spec.train
        kw: dict[str, Any] = dict(
            mean=ds.mean,
            std=ds.std,
            batch_size=ev.batch_size,
            device=self.device,
            bf16=tc.bf16 if ev.bf16 is None else ev.bf16,
            channels_last=tc.channels_last,
            tta=tc.tta if ev.tta is None else ev.tta,
        )
        out: dict[str, Outputs] = {}
        for split in ("forget", "retain"):
            r = torch.as_tensor(rows[split])
            logits = predict_logits(model, ds.train_images, rows=r, **kw)
            check_tensor(logits, f"logits on the {split} split")
            out[split] = Outputs(logits, ds.train_labels[r.to(ds.train_labels.device)])
        test_rows = np.sort(np.concatenate([rows["test_forget"], rows["test_retain"]]))
        logits = predict_logits(model, ds.test_images, rows=torch.as_tensor(test_rows), **kw)
        check_tensor(logits, "logits on the test split")
        test = Outputs(logits, ds.test_labels[torch.as_tensor(test_rows, device=ds.test_labels.device)])
        out["test"] = test
        pos = {int(r): i for i, r in enumerate(test_rows)}
        for split in ("test_forget", "test_retain"):
            out[split] = test.subset(torch.as_tensor([pos[int(r)] for r in rows[split]], dtype=torch.long))
        return out

    def _reference_outputs(
        self, group: GroupPlan, rows: dict[str, np.ndarray], progress: Progress, models: dict[str, nn.Module]
    ) -> dict[str, dict[str, Outputs]]:
        """The references' outputs on every split, kept beside the model cache under the group's
        key (``outputs/<key>.safetensors``): a rerun, another method or a tuning trial of the same
        group reads them instead of evaluating three models again. The key holds everything that
        decides them (models, data, request, seed, eval settings, the model code salt)."""
        from safetensors.torch import load_file, save_file

        path = self.cache.root / "outputs" / f"{group.key}.safetensors"
        sizes = {k: len(v) for k, v in rows.items()}
        sizes["test"] = sizes["test_forget"] + sizes["test_retain"]
        if path.exists():
            try:
                t = load_file(str(path))
                out = {
                    role: {split: Outputs(t[f"{role}/{split}/logits"], t[f"{role}/{split}/labels"]) for split in sizes}
                    for role in models
                }
                if all(len(out[r][sp]) == n for r in out for sp, n in sizes.items()):
                    progress.stage(f"{group.label}: reference outputs from the cache")
                    return out
            except Exception:
                pass
        progress.stage(f"{group.label}: evaluating references")
        out = {role: self._outputs(m, rows) for role, m in models.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file(
            {
                f"{role}/{split}/{what}": getattr(o, what).contiguous()
                for role, d in out.items()
                for split, o in d.items()
                for what in ("logits", "labels")
            },
            str(tmp),
        )
        os.replace(tmp, path)
        return out

    def _artifacts(self, outs: dict[str, Outputs]) -> dict[str, Any]:
        assert self.ds is not None
        return {
            "confusion_test": confusion(outs["test"], self.ds.num_classes).tolist(),
            "per_class_test": per_class_accuracy(outs["test"], self.ds.num_classes),
        }

    def _relearn_fn(self, split: ForgetSplit, seed: int, models: dict[str, nn.Module]) -> Callable[..., Any]:
        from ...metrics.relearn import relearn_curve

        cfg = self.spec.relearn
        ds = self.ds
        assert ds is not None

        def relearn(role: str, max_steps: int | None = None) -> list[float]:
            data = UnlearnData(ds, split, frozenset({"forget"}), device=self.device)
            return relearn_curve(
                copy.deepcopy(models[role]),
                data.forget,
                steps=int(max_steps or cfg.max_steps),
                lr=cfg.lr,
                batch_size=cfg.batch_size,
                device=self.device,
                seed=seed,
            )

        relearn.tolerance = cfg.tolerance  # type: ignore[attr-defined]  # read by the relearn metric
        relearn.max_steps = cfg.max_steps  # type: ignore[attr-defined]
        return relearn

    def _run_unit(
        self,
        group: GroupPlan,
        unit: Unit,
        original: nn.Module,
        retrained: nn.Module,
        retrained_meta: dict[str, Any],
        ref_outputs: dict[str, dict[str, Outputs]],
        eval_rows: dict[str, np.ndarray],
        validation_rows: np.ndarray,
        ctx_base: dict[str, Any],
        memo: dict[tuple[str, str], Any],
        progress: Progress,
        audit_parts: tuple[dict[str, np.ndarray], dict[str, dict[str, Any]], list[Any], tuple[bool, bool]],
    ) -> dict[str, Any]:
        ds = self.ds
        assert ds is not None
        h: _Handle = group.handle
        method = METHODS.get(unit.method_name)(unit.method_config)
        reused = None
        peak: float | None = None
        basis = ""
        if unit.method_name == "retrain" and method.config == type(method.config)():
            # the retrained reference *is* this run (same recipe, seed and split): reuse it
            model, seconds, steps = (
                retrained,
                float(retrained_meta.get("seconds", 0.0)),
                int(retrained_meta.get("steps", 0)),
            )
            read, info = ["retain"], {}
            reused = retrained_meta.get("cache_spec_key") or "model cache"
        else:
            data = UnlearnData(ds, h.split, method.uses, validation_rows, self.device)
            with progress.steps(unit.label) as cb:
                result, stats = run_method(method, original, data, UnlearnContext(**ctx_base, progress=cb))
            model, seconds, steps, read, info = result.model, stats.seconds, stats.steps, stats.splits_read, result.info
            peak, basis = stats.peak_memory_mb, stats.memory_basis
        model.to(self.device)
        outs = ref_outputs["original"] if unit.method_name == "original" else self._outputs(model, eval_rows)
        run = {
            "seconds": seconds,
            "steps": float(steps),
            "retrain_seconds": float(retrained_meta.get("seconds") or 0.0),
            "retrain_steps": float(retrained_meta.get("steps") or 0.0),
        }
        if peak is not None:
            run["peak_memory_mb"] = float(peak)
        models = {"unlearned": model, "original": original, "retrained": retrained}
        costly = any(METRICS.get(n).costly for n in self.metric_names)
        audit_rows, ref_audit, ref_phi, want = audit_parts
        t_audit = time.perf_counter()
        audit = None
        own: dict[str, Any] = {}
        if any(want):
            if unit.method_name == "original":
                own = ref_audit["original"]
            elif reused is not None:
                own = ref_audit["retrained"]
            else:
                own = self._audit_model(model, audit_rows, *want)
            pairs = (("unlearned", own), *ref_audit.items())
            audit = AuditInputs(
                phi={r: a["phi"] for r, a in pairs if "phi" in a},
                references=ref_phi,
                queries=self._queries(),
                n_boot=self.spec.audit.n_boot,
                features={r: a["features"] for r, a in pairs if "features" in a},
            )
        inputs = EvalInputs(
            outputs={"unlearned": outs, **ref_outputs},
            num_classes=ds.num_classes,
            class_names=ds.class_names,
            forget_classes=h.split.forget_classes,
            seed=group.seed,
            run=run,
            relearn=self._relearn_fn(h.split, group.seed, models) if costly else None,
            memo=memo,
            audit=audit,
            draws=self.spec.audit.draws,
        )
        audit_names = [n for n in self.metric_names if n in AUDIT_METRICS]
        audit_values, audit_dirs = compute_metrics(audit_names, inputs)
        audit_seconds = time.perf_counter() - t_audit  # this model's φ and features, the attacks and the probe
        values, directions = compute_metrics([n for n in self.metric_names if n not in AUDIT_METRICS], inputs)
        values, directions = {**values, **audit_values}, {**directions, **audit_dirs}
        return {
            "task": "vision",
            "dataset": ds.name,
            "values": values,
            "directions": directions,
            "seconds": seconds,
            "steps": steps,
            "peak_memory_mb": peak,
            "memory_basis": basis,
            "splits_read": read,
            "info": info,
            "reused_reference": reused,
            "exact": METHODS.get(unit.method_name).exact,
            "retrain_timing": {
                "seconds": retrained_meta.get("seconds"),
                "source": retrained_meta.get("timing_source"),
                "trained_at": retrained_meta.get("trained_at"),
            },
            "audit": {**({"phi_forget": _rounded(own["phi"][0])} if "phi" in own else {}), "seconds": audit_seconds},
            **self._artifacts(outs),
        }

    def finish(self, records: list[dict[str, Any]], out_dir: Path) -> None:
        return None
