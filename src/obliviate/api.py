"""The Python door onto the library, above every layer (the CLI is the other door)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from .report import render_report
from .study import StudyRunner, StudySpec
from .study.tune import TuneResult, TuneSettings
from .training import TrainConfig


def run_study(spec: StudySpec, out_dir: str | Path, **kw: Any) -> list[dict[str, Any]]:
    """Run a vision or LLM study into ``out_dir`` (skipping runs whose key is already done) and
    render its report; returns the current spec's result rows. ``kw``: ``cache_dir``,
    ``progress``, ``device``, ``executor`` (see :class:`~obliviate.study.StudyRunner` and
    :mod:`obliviate.study.executors`)."""
    rows = StudyRunner(spec, out_dir, **kw).run()
    render_report(out_dir)
    return rows


def tune_method(
    spec: StudySpec, method: str, out_dir: str | Path, *, settings: TuneSettings | None = None, **kw: Any
) -> TuneResult:
    """Search ``method``'s declared hyperparameter ranges on ``spec``'s ``tune:`` split with Ray Tune
    and Optuna; writes ``out_dir/best.yaml`` for the held-out evaluation (:func:`obliviate.study.tune.tune_method`;
    ``kw``: ``params``, ``kinds``, ``cache_dir``, ``device``, ``progress``)."""
    from .study.tune import tune_method as _tune

    return _tune(spec, method, out_dir, settings=settings, **kw)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` wrote and measured."""

    checkpoint: Path
    test_accuracy: float
    seconds: float
    steps: int
    images_per_second: float


def train(
    model: str,
    dataset: str,
    out: str | Path,
    *,
    root: str | None = None,
    download: bool = False,
    forget: str | None = None,
    recipe: str | None = None,
    train_config: TrainConfig | dict[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    sisa: tuple[int, int] | None = None,
    device: str | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train a zoo model (``obliviate list models``) on ``dataset`` and save it as a checkpoint
    whose JSON records where its data came from (:mod:`obliviate.models.provenance`) and how it
    was trained, so :func:`evaluate`, :func:`obliviate.unlearn`'s CLI and ``obliviate audit``
    find the same data again.

    ``forget``: a request (``class:airplane``, ``random:500``, ``ids:FILE``…) left out of the
    training rows: the model is then the retrained reference of that request. ``recipe`` names a
    training recipe (``obliviate list recipes``); ``train_config`` (a :class:`TrainConfig` or its
    fields) is applied over it. ``sisa=(shards, slices)`` trains the deployable SISA ensemble
    (Bourtoule et al., 2021) instead, its shard state beside the checkpoint. ``progress``
    receives ``{"step", "total", "loss"}`` events."""
    import time

    import torch

    from .data import parse_request, split_indices
    from .models import create_model, save_checkpoint
    from .models.provenance import load_data, record
    from .recipes import get_recipe
    from .training import FitResult, evaluate_accuracy, fit, make_loader
    from .utils import resolve_device

    dev = resolve_device(device)
    ds = load_data(dataset, root, train_per_class=train_per_class, test_per_class=test_per_class, download=download).to(
        dev
    )
    if isinstance(train_config, TrainConfig):
        if recipe:
            raise ValueError(
                f"give a recipe ({recipe!r}) or a TrainConfig, not both: to change some of the "
                "recipe's fields pass them as a dict"
            )
        cfg = train_config
    else:
        base = get_recipe(recipe) if recipe else TrainConfig()
        cfg = TrainConfig.from_dict({**base.to_dict(), **train_config}) if train_config else base
    rows = torch.arange(len(ds.train_labels))
    request = parse_request(forget) if forget else None
    if request is not None:
        rows = torch.as_tensor(split_indices(ds.label_info(), request, seed).retain)
    net = create_model(model, num_classes=ds.num_classes, in_chans=ds.channels, seed=seed, **(model_kwargs or {}))
    extra: dict[str, Any] = {}
    if sisa is not None:
        from .deletion import sisa_state

        if request is not None:
            raise ValueError("sisa trains the deployable ensemble on every training row; it takes no forget request")
        shards, slices = sisa
        t0 = time.perf_counter()
        net, trainer = sisa_state.train_deployable(
            ds, cast(dict[str, Any], net.obliviate_spec), cfg, shards=shards, slices=slices, seed=seed, device=dev
        )
        res = FitResult(seconds=time.perf_counter() - t0)  # the constituents' steps are in the shard state
        state_base = Path(out).with_suffix("") if Path(out).suffix in (".json", ".safetensors") else Path(out)
        extra["sisa"] = {"plan_sha256": sisa_state.save_state(state_base, trainer, ds.train_ids.cpu().numpy(), [])}
    else:
        res = fit(net, make_loader(ds, rows, cfg, seed), cfg, device=dev, progress=progress, record_confidence=True)
        if res.confidence is not None:  # the memorisation proxy rum and loss_match can rank by (null: not trained on)
            extra["training_confidence"] = [None if c != c else round(float(c), 5) for c in res.confidence.tolist()]
    acc = evaluate_accuracy(net, ds, device=dev, bf16=cfg.bf16, tta=cfg.tta)
    meta = {
        **record(ds, dataset, root, train_per_class=train_per_class, test_per_class=test_per_class),
        "request": request.to_dict() if request else None,
        "seed": seed,
        "train": cfg.to_dict(),
        "seconds": res.seconds,
        "steps": res.steps,
        "test_accuracy": acc,
        **extra,
    }
    path = save_checkpoint(out, net, meta)
    return TrainResult(Path(path), acc, res.seconds, res.steps, res.images_per_second)


def evaluate(
    checkpoint: str | Path,
    *,
    dataset: str | None = None,
    root: str | None = None,
    forget: str | None = None,
    seed: int | None = None,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    allow_other_data: bool = False,
    device: str | None = None,
    bf16: bool = False,
) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1, loss, per-class accuracy and the confusion matrix of a
    saved model on its test set, and — for ``forget`` or the request it was trained without — on
    the forget, retain, test-forget and test-retain splits. The data is the checkpoint's own
    (refused when its content differs, unless ``allow_other_data``); ``dataset``/``root`` and the
    subset sizes override what it records."""
    import torch

    from .data import parse_request, split_indices
    from .metrics import Outputs
    from .metrics.classification import split_summary
    from .models import load_checkpoint, read_meta
    from .models.provenance import load_training_data
    from .training import predict_logits
    from .utils import resolve_device

    meta = read_meta(checkpoint)
    ds = load_training_data(
        meta,
        dataset=dataset,
        root=root,
        train_per_class=train_per_class,
        test_per_class=test_per_class,
        allow_other_data=allow_other_data,
    )
    seed = int(meta.get("seed") or 0) if seed is None else seed
    model, meta = load_checkpoint(checkpoint, expect_num_classes=ds.num_classes, map_location="cpu")
    kw: dict[str, Any] = {"mean": ds.mean, "std": ds.std, "device": resolve_device(device), "bf16": bf16}
    test = Outputs(predict_logits(model, ds.test_images, **kw), ds.test_labels)
    splits: dict[str, Outputs] = {"test": test}
    forget_classes: tuple[int, ...] = ()
    req_spec = forget or meta.get("request")
    if req_spec:
        sp = split_indices(ds.label_info(), parse_request(req_spec), seed)
        forget_classes = sp.forget_classes
        for name, rows in (("forget", sp.forget), ("retain", sp.retain)):
            r = torch.as_tensor(rows)
            splits[name] = Outputs(predict_logits(model, ds.train_images, rows=r, **kw), ds.train_labels[r])
        if len(sp.test_forget):
            splits["test_forget"] = test.subset(torch.as_tensor(sp.test_forget))
        splits["test_retain"] = test.subset(torch.as_tensor(sp.test_retain))
    return {
        "checkpoint": str(checkpoint),
        "splits": {
            name: split_summary(o, ds.class_names, every_class=not name.startswith(("test_retain", "retain")))
            for name, o in splits.items()
        },
        "forget_classes": [ds.class_names[c] for c in forget_classes],
    }


__all__ = ["TrainResult", "evaluate", "run_study", "train", "tune_method"]
