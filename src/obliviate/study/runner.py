"""The study runner: trains (or takes from the cache) the original and retrained models, runs
every method, evaluates every model on the same splits once, and stores one record per run.

Data flow for one (model, request, seed) group::

    dataset --split_indices--> ForgetSplit
    original  = cache[spec] or fit(all training rows)
    retrained = cache[spec + request] or Retrain().unlearn(...)   (never reads the forget set)
    random    = freshly initialised model                         (for ZRF)
    outputs[role][split] = predict_logits(...)                    (once per model and split)
    for each method: run_method -> outputs -> compute_metrics -> runs/<key>.json
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ..data import ForgetRequest, ForgetSplit, ImageDataset, load_dataset, split_indices
from ..methods import METHODS, UnlearnContext, UnlearnData, run_method
from ..metrics import METRICS, EvalInputs, Outputs, compute_metrics, list_metrics
from ..metrics.classification import confusion, per_class_accuracy
from ..models import ModelCache, create_model, num_parameters
from ..train import TrainConfig, fit, make_loader, predict_logits
from ..utils import environment_info, resolve_device, stable_hash, write_json_atomic
from .spec import ModelSpec, StudySpec
from .store import ResultStore, record_rows, safe_key

log = logging.getLogger(__name__)


class Progress(Protocol):
    """What the runner reports while it works (the CLI draws progress bars from it)."""

    def stage(self, text: str) -> None: ...

    def steps(self, desc: str) -> AbstractContextManager[Callable[[dict[str, Any]], None]]: ...


class _LogProgress:
    def stage(self, text: str) -> None:
        log.info(text)

    def steps(self, desc: str) -> AbstractContextManager[Callable[[dict[str, Any]], None]]:
        return nullcontext(lambda _ev: None)


def default_cache_dir() -> Path:
    return Path(os.environ.get("OBLIVIATE_CACHE", Path.home() / ".cache" / "obliviate"))


def dataset_fingerprint(ds: ImageDataset) -> str:
    """Content hash of a dataset's images and labels (so the cache survives path changes)."""
    h = hashlib.sha256()
    for t in (ds.train_images, ds.train_labels, ds.test_images, ds.test_labels, ds.train_ids):
        h.update(t.cpu().numpy().tobytes())
    h.update(repr((ds.class_names, ds.mean, ds.std)).encode())
    return h.hexdigest()[:20]


def load_study_dataset(spec: StudySpec) -> ImageDataset:
    d = spec.dataset
    ds = load_dataset(d["name"], root=d.get("root"), download=bool(d.get("download", False)))
    if d.get("train_per_class") or d.get("test_per_class"):
        ds = ds.subset(d.get("train_per_class"), d.get("test_per_class"), seed=int(d.get("subset_seed", 0)))
    return ds


@dataclass
class _Group:
    """References shared by every method of one (model, request, seed)."""

    model_spec: ModelSpec
    request: ForgetRequest
    seed: int
    split: ForgetSplit
    eval_rows: dict[str, np.ndarray]
    validation_rows: np.ndarray
    original: nn.Module
    original_meta: dict[str, Any]
    retrained: nn.Module
    retrained_meta: dict[str, Any]
    outputs: dict[str, dict[str, Outputs]]
    memo: dict[tuple[str, str], Any]


class StudyRunner:
    """Runs a validated :class:`StudySpec` into ``out_dir`` (records, tables; the report is
    rendered by :mod:`obliviate.report`)."""

    def __init__(
        self,
        spec: StudySpec,
        out_dir: str | Path,
        *,
        cache_dir: str | Path | None = None,
        progress: Progress | None = None,
        device: str | None = None,
    ) -> None:
        if spec.task != "vision":
            raise ValueError("StudyRunner runs vision studies; LLM studies go through obliviate.llm.study")
        self.spec = spec
        self.store = ResultStore(out_dir)
        self.cache = ModelCache(Path(cache_dir) if cache_dir is not None else default_cache_dir() / "models")
        self.progress: Progress = progress or _LogProgress()
        self.device = resolve_device(device or spec.device)
        self.metric_names = self._metric_names()

    # -- public ----------------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        """Run everything not already finished; returns all result rows."""
        spec = self.spec
        t_start = time.perf_counter()
        self.progress.stage(f"loading dataset {spec.dataset['name']}")
        ds = load_study_dataset(spec).to(self.device)
        fingerprint = dataset_fingerprint(ds)
        labels = ds.label_info()
        # splits are computed (and validated) for every request and seed before any training
        splits = {(ri, seed): split_indices(labels, r, seed) for ri, r in enumerate(spec.requests) for seed in spec.seeds}
        write_json_atomic(self.store.out_dir / "study.json", {
            "name": spec.name, "scale": spec.scale, "description": spec.description,
            "scale_note": spec.scale_note, "spec": spec.raw, "dataset": ds.describe(),
            "environment": environment_info(), "device": str(self.device), "paper": spec.paper,
            "metrics": self.metric_names, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        })
        for mspec in spec.models:
            for ri, request in enumerate(spec.requests):
                for seed in spec.seeds:
                    self._run_group(ds, fingerprint, mspec, request, seed, splits[(ri, seed)])
        rows = self.rows()
        self.store.write_tables(rows)
        self.progress.stage(f"study {spec.name} finished in {time.perf_counter() - t_start:.1f}s")
        return rows

    def rows(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for rec in self.store.runs():
            out.extend(record_rows(rec, self.spec.name, self.spec.scale))
        return out

    # -- internals -------------------------------------------------------------------------------
    def _metric_names(self) -> list[str]:
        if self.spec.metrics == "default":
            try:
                from ..metrics.defaults import DEFAULT_METRICS

                return list(DEFAULT_METRICS)
            except ImportError:
                return list_metrics(include_costly=False)
        return list(self.spec.metrics)

    def _factory(self, ds: ImageDataset, mspec: ModelSpec) -> Callable[[int], nn.Module]:
        def make(seed: int) -> nn.Module:
            return create_model(mspec.name, num_classes=ds.num_classes, in_chans=ds.channels, seed=seed, **mspec.kwargs)

        return make

    def _cached_or_train(
        self, key_spec: dict[str, Any], desc: str, train: Callable[[Callable[[dict[str, Any]], None]], tuple[nn.Module, dict[str, Any]]]
    ) -> tuple[nn.Module, dict[str, Any]]:
        hit = self.cache.load(key_spec, map_location=self.device)
        if hit is not None:
            self.progress.stage(f"{desc}: from cache ({self.cache.key(key_spec)})")
            return hit
        self.progress.stage(f"{desc}: training")
        with self.progress.steps(desc) as cb:
            model, meta = train(cb)
        self.cache.store(key_spec, model, meta)
        return model, {**meta, "cache_spec_key": self.cache.key(key_spec)}

    def _run_group(
        self, ds: ImageDataset, fingerprint: str, mspec: ModelSpec, request: ForgetRequest, seed: int, split: ForgetSplit
    ) -> None:
        spec = self.spec
        group_key = safe_key(mspec.label, request.describe(), f"seed{seed}")
        skipped = {m.label: f"{m.name} forgets whole classes only; this request ({request.describe()}) has none"
                   for m in spec.methods if METHODS.get(m.name).class_level and not split.forget_classes}
        pending = [m for m in spec.methods
                   if m.label not in skipped and not self.store.has_run(safe_key(group_key, m.label))]
        for label, why in skipped.items():
            self.progress.stage(f"{group_key}: {label} not applicable, skipped: {why}")
        if not pending:
            self.progress.stage(f"{group_key}: all {len(spec.methods)} runs already finished, skipped")
            return
        factory = self._factory(ds, mspec)
        train_cfg = spec.train
        base_key = {"dataset": fingerprint, "model": {"name": mspec.name, **mspec.kwargs},
                    "num_classes": ds.num_classes, "train": train_cfg.to_dict(), "seed": seed}

        def train_original(cb: Callable[[dict[str, Any]], None]) -> tuple[nn.Module, dict[str, Any]]:
            model = factory(seed)
            res = fit(model, make_loader(ds, torch.arange(len(ds.train_labels)), train_cfg, seed), train_cfg,
                      device=self.device, progress=cb)
            return model, {"seconds": res.seconds, "steps": res.steps, "epoch_loss": res.epoch_loss}

        original, original_meta = self._cached_or_train({**base_key, "role": "original"}, f"original {mspec.label} seed {seed}", train_original)
        original.to(self.device)

        validation_rows = self._validation_rows(ds, seed)
        ctx_base = dict(device=self.device, seed=seed, model_factory=factory, train_config=train_cfg,
                        bf16=train_cfg.bf16, channels_last=train_cfg.channels_last)
        retrain_cls = METHODS.get("retrain")

        def train_retrained(cb: Callable[[dict[str, Any]], None]) -> tuple[nn.Module, dict[str, Any]]:
            data = UnlearnData(ds, split, retrain_cls.uses, validation_rows, self.device)
            result, stats = run_method(retrain_cls(), original, data, UnlearnContext(**ctx_base, progress=cb))
            return result.model, {"seconds": stats.seconds, "steps": stats.steps, "splits_read": stats.splits_read}

        forget_hash = hashlib.sha256(np.asarray(ds.train_ids.cpu())[split.forget].tobytes()).hexdigest()[:16]
        retrained, retrained_meta = self._cached_or_train(
            {**base_key, "role": "retrained", "request": request.to_dict(), "forget_ids": forget_hash},
            f"retrained {mspec.label} {request.describe()} seed {seed}", train_retrained)
        retrained.to(self.device)
        random_model = factory(seed + 1_000_003).to(self.device)

        eval_rows = self._eval_rows(ds, split, validation_rows, seed)
        self.progress.stage(f"{group_key}: evaluating references")
        outputs = {role: self._outputs(m, ds, eval_rows) for role, m in
                   (("original", original), ("retrained", retrained), ("random", random_model))}
        group = _Group(mspec, request, seed, split, eval_rows, validation_rows, original, original_meta,
                       retrained, retrained_meta, outputs, memo={})
        self.store.save_group(group_key, {**self._group_record(ds, group), "not_applicable": skipped})

        for mspec_m in pending:
            key = safe_key(group_key, mspec_m.label)
            self.progress.stage(f"{key}: running {mspec_m.label}")
            record = self._run_method(ds, group, mspec_m, ctx_base)
            self.store.save_run(key, record)

    def _validation_rows(self, ds: ImageDataset, seed: int) -> np.ndarray:
        n = len(ds.test_labels)
        k = int(round(self.spec.validation_fraction * n))
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        return np.sort(np.random.default_rng(seed + 17).permutation(n)[:k])

    def _eval_rows(self, ds: ImageDataset, split: ForgetSplit, validation_rows: np.ndarray, seed: int) -> dict[str, np.ndarray]:
        retain = split.retain
        cap = self.spec.eval.get("retain_max")
        if cap is not None and len(retain) > int(cap):
            retain = np.sort(np.random.default_rng(seed + 29).choice(retain, int(cap), replace=False))
        held = np.zeros(len(ds.test_labels), dtype=bool)
        held[validation_rows] = True
        return {
            "forget": split.forget, "retain": retain,
            "test_forget": split.test_forget[~held[split.test_forget]],
            "test_retain": split.test_retain[~held[split.test_retain]],
        }

    def _outputs(self, model: nn.Module, ds: ImageDataset, rows: dict[str, np.ndarray]) -> dict[str, Outputs]:
        ev = self.spec.eval
        kw = dict(mean=ds.mean, std=ds.std, batch_size=int(ev.get("batch_size", 512)), device=self.device,
                  bf16=bool(ev.get("bf16", self.spec.train.bf16)), channels_last=self.spec.train.channels_last,
                  tta=str(ev.get("tta", self.spec.train.tta)))
        out: dict[str, Outputs] = {}
        for split in ("forget", "retain"):
            r = torch.as_tensor(rows[split])
            out[split] = Outputs(predict_logits(model, ds.train_images, rows=r, **kw), ds.train_labels[r.to(ds.train_labels.device)])
        test_rows = np.sort(np.concatenate([rows["test_forget"], rows["test_retain"]]))
        test = Outputs(predict_logits(model, ds.test_images, rows=torch.as_tensor(test_rows), **kw),
                       ds.test_labels[torch.as_tensor(test_rows, device=ds.test_labels.device)])
        out["test"] = test
        pos = {int(r): i for i, r in enumerate(test_rows)}
        for split in ("test_forget", "test_retain"):
            out[split] = test.subset(torch.as_tensor([pos[int(r)] for r in rows[split]], dtype=torch.long))
        return out

    def _artifacts(self, outs: dict[str, Outputs], ds: ImageDataset) -> dict[str, Any]:
        return {
            "confusion_test": confusion(outs["test"], ds.num_classes).tolist(),
            "per_class_test": per_class_accuracy(outs["test"], ds.num_classes),
        }

    def _group_record(self, ds: ImageDataset, g: _Group) -> dict[str, Any]:
        return {
            "model": g.model_spec.label, "request": g.request.describe(), "request_spec": g.request.to_dict(),
            "seed": g.seed, "split_sizes": {**g.split.sizes(), **{f"eval_{k}": len(v) for k, v in g.eval_rows.items()}},
            "forget_classes": list(g.split.forget_classes), "class_names": list(ds.class_names),
            "num_parameters": num_parameters(g.original),
            "original": {"seconds": g.original_meta.get("seconds"), "steps": g.original_meta.get("steps"),
                         **self._artifacts(g.outputs["original"], ds)},
            "retrained": {"seconds": g.retrained_meta.get("seconds"), "steps": g.retrained_meta.get("steps"),
                          **self._artifacts(g.outputs["retrained"], ds)},
        }

    def _relearn_fn(self, ds: ImageDataset, g: _Group, models: dict[str, nn.Module]) -> Callable[..., Any] | None:
        try:
            from ..metrics.relearn import relearn_curve
        except ImportError:
            return None
        cfg = self.spec.relearn

        def relearn(role: str, max_steps: int | None = None) -> list[float]:
            data = UnlearnData(ds, g.split, frozenset({"forget"}), device=self.device)
            return relearn_curve(
                copy.deepcopy(models[role]), data.forget, steps=int(max_steps or cfg.get("max_steps", 100)),
                lr=float(cfg.get("lr", 0.01)), batch_size=int(cfg.get("batch_size", 64)),
                device=self.device, seed=g.seed,
            )

        return relearn

    def _run_method(self, ds: ImageDataset, g: _Group, mspec_m: Any, ctx_base: dict[str, Any]) -> dict[str, Any]:
        method = mspec_m.build()
        reused = None
        if mspec_m.name == "retrain" and method.config == type(method.config)():
            # the retrained reference *is* this run (same recipe, seed and split): reuse it
            model, seconds, steps, peak, read, info = g.retrained, float(g.retrained_meta.get("seconds", 0.0)), int(g.retrained_meta.get("steps", 0)), None, ["retain"], {}
            reused = g.retrained_meta.get("cache_spec_key")
        else:
            data = UnlearnData(ds, g.split, method.uses, g.validation_rows, self.device)
            with self.progress.steps(mspec_m.label) as cb:
                ctx = UnlearnContext(**ctx_base, progress=cb)
                result, stats = run_method(method, g.original, data, ctx)
            model, seconds, steps, peak, read, info = result.model, stats.seconds, stats.steps, stats.peak_memory_mb, stats.splits_read, result.info
        model.to(self.device)
        outs = g.outputs["original"] if mspec_m.name == "original" else self._outputs(model, ds, g.eval_rows)
        run = {"seconds": seconds, "steps": float(steps),
               "retrain_seconds": float(g.retrained_meta.get("seconds") or 0.0),
               "retrain_steps": float(g.retrained_meta.get("steps") or 0.0)}
        if peak is not None:
            run["peak_memory_mb"] = float(peak)
        models = {"unlearned": model, "original": g.original, "retrained": g.retrained}
        inputs = EvalInputs(
            outputs={"unlearned": outs, **g.outputs}, num_classes=ds.num_classes, class_names=ds.class_names,
            forget_classes=g.split.forget_classes, seed=g.seed, run=run,
            relearn=self._relearn_fn(ds, g, models) if any(METRICS.get(n).costly for n in self.metric_names) else None,
            memo=g.memo,
        )
        values, directions = compute_metrics(self.metric_names, inputs)
        return {
            "model": g.model_spec.label, "dataset": ds.name, "request": g.request.describe(), "method": mspec_m.label,
            "method_name": mspec_m.name, "method_config": method.config.to_dict(), "seed": g.seed,
            "values": values, "directions": directions, "seconds": seconds, "steps": steps,
            "peak_memory_mb": peak, "splits_read": read, "info": info, "reused_reference": reused,
            "exact": METHODS.get(mspec_m.name).exact,
            **self._artifacts(outs, ds),
        }


def run_study(spec: StudySpec, out_dir: str | Path, **kw: Any) -> list[dict[str, Any]]:
    """Run a vision or LLM study into ``out_dir`` and render its report; returns result rows."""
    out_dir = Path(out_dir)
    if spec.task == "llm":
        from ..llm.study import run_llm_study

        stage = kw.get("progress").stage if kw.get("progress") is not None else None
        rows = run_llm_study(spec.raw, out_dir, progress=stage)
        ResultStore(out_dir).write_tables([{**r, "study": spec.name, "scale": spec.scale or ""} for r in rows])
        write_json_atomic(out_dir / "study.json", {
            "name": spec.name, "scale": spec.scale, "description": spec.description, "scale_note": spec.scale_note,
            "spec": spec.raw, "environment": environment_info(), "paper": spec.paper, "task": "llm",
        })
    else:
        rows = StudyRunner(spec, out_dir, **kw).run()
    from ..report import render_report

    render_report(out_dir)
    return rows


__all__ = ["StudyRunner", "run_study", "dataset_fingerprint", "default_cache_dir", "stable_hash", "TrainConfig"]
