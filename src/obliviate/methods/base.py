"""The vision half of the method contract: the split view, the guarded data and the context.

The task-free contract (``MethodConfig``, ``UnlearningMethod``, ``METHODS``, ``run_method``,
``SplitAccessError``) lives in :mod:`obliviate.core` and is re-exported here, so that a method
file imports everything it needs from one place. ``UnlearnData`` raises
:class:`SplitAccessError` on any split a method did not declare, so that, e.g., retraining
provably never reads the forget set.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

import numpy as np
import torch
from torch import nn

from ..core import (
    METHODS,
    SPLITS,
    Choice,
    ConfigError,
    GuardedSplits,
    MethodConfig,
    MethodContext,
    MethodResult,
    Range,
    RunStats,
    SplitAccessError,
    UnlearningMethod,
    build_method,
    describe_method,
    get_method,
    list_methods,
    param,
    register_method,
    run_method,
)
from ..data import Augment, Batch, BatchLoader, ForgetSplit, ImageDataset
from ..training import TrainConfig


@dataclass(frozen=True)
class SplitView:
    """A read-only view of one split: uint8 images, labels and their row positions."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    rows: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def train_loader(self, cfg: TrainConfig, seed: int) -> BatchLoader:
        """A shuffled, augmented loader configured like :func:`obliviate.training.make_loader`."""
        aug = Augment(pad=cfg.crop_pad, flip=cfg.flip) if cfg.augment else None
        return self.loader(cfg.batch_size, shuffle=True, augment=aug, seed=seed, channels_last=cfg.channels_last)

    def loader(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        augment: Augment | None = None,
        seed: int = 0,
        channels_last: bool = False,
        drop_last: bool = False,
        rows: torch.Tensor | None = None,
    ) -> BatchLoader:
        """Batches of this split; ``rows`` (positions within the split) selects a subset."""
        return BatchLoader(
            self.images,
            self.labels,
            mean=self.mean,
            std=self.std,
            rows=rows,
            batch_size=batch_size,
            shuffle=shuffle,
            augment=augment,
            seed=seed,
            channels_last=channels_last,
            drop_last=drop_last,
        )


class UnlearnData(GuardedSplits):
    """The splits a method may read. Accessing an undeclared split raises :class:`SplitAccessError`.

    ``forget`` and ``retain`` are training rows; ``validation`` is held-out test rows (may be empty).
    """

    def __init__(
        self,
        dataset: ImageDataset,
        split: ForgetSplit,
        allowed: frozenset[str],
        validation_rows: np.ndarray | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(allowed)
        self._dataset = dataset
        self._split = split
        self._validation_rows = np.asarray([] if validation_rows is None else validation_rows, dtype=np.int64)
        self._device = torch.device(device)

    # -- facts that reveal no sample -------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self._dataset.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._dataset.class_names

    @property
    def forget_classes(self) -> tuple[int, ...]:
        """Target classes removed whole (empty for random, id and sub-class requests)."""
        return self._split.forget_classes

    @property
    def mean(self) -> tuple[float, ...]:
        return self._dataset.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self._dataset.std

    @property
    def in_chans(self) -> int:
        return self._dataset.channels

    def size(self, name: str) -> int:
        """Number of samples in a split (allowed for any split: sizes leak no data)."""
        return {
            "forget": len(self._split.forget),
            "retain": len(self._split.retain),
            "validation": len(self._validation_rows),
        }[name]

    def with_forget(self, positions: np.ndarray | torch.Tensor) -> UnlearnData:
        """The same data with the forget split cut to ``positions`` (positions within it) and the
        retain split unchanged: for meta-methods that unlearn a request in pieces (RUM)."""
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size and (pos.min() < 0 or pos.max() >= len(self._split.forget)):
            raise ValueError(
                f"forget positions must lie in [0, {len(self._split.forget)}), got {pos.min()}..{pos.max()}"
            )
        split = dataclasses.replace(self._split, forget=self._split.forget[pos])
        piece = UnlearnData(self._dataset, split, self._allowed, self._validation_rows, self._device)
        piece.accessed = self.accessed  # what a piece reads, the request read
        piece._views.update({k: v for k, v in self._views.items() if k != "forget"})
        return piece

    # -- guarded splits (GuardedSplits.forget / .retain / .validation go through _view) ---------
    def _make_view(self, name: str) -> SplitView:
        ds = self._dataset
        if name == "validation":
            if len(self._validation_rows) == 0:
                raise SplitAccessError("the validation split is empty: set the study's validation_fraction > 0")
            rows = self._validation_rows
            x, y = ds.test_images, ds.test_labels
        else:
            rows = self._split.forget if name == "forget" else self._split.retain
            x, y = ds.train_images, ds.train_labels
        idx = torch.as_tensor(rows, device=x.device)
        return SplitView(
            name,
            x.index_select(0, idx).to(self._device),
            y.index_select(0, idx.to(y.device)).to(self._device),
            np.asarray(rows),
            ds.mean,
            ds.std,
        )

    @property
    def forget(self) -> SplitView:
        return self._view("forget")

    @property
    def retain(self) -> SplitView:
        return self._view("retain")

    @property
    def validation(self) -> SplitView:
        return self._view("validation")


def forever(loader: BatchLoader) -> Iterator[Batch]:
    """Cycle a loader; each pass reshuffles (the loader's epoch counter advances)."""
    while True:
        yield from loader


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every parameter's gradient switched off."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def random_other_labels(
    labels: torch.Tensor,
    num_classes: int,
    generator: torch.Generator,
    *,
    excluded: tuple[int, ...] = (),
    any_class: bool = False,
) -> torch.Tensor:
    """The one random relabelling of the relabelling methods (random labelling, SalUn's RL):
    per label y a class drawn uniformly from {0..K-1} \\ ({y} ∪ ``excluded``) — one vectorised
    random score per class and an argmax, seeded by ``generator`` — or, with ``any_class``
    (SalUn's code), uniformly from all K classes."""
    if any_class:
        return torch.randint(0, num_classes, labels.shape, generator=generator).to(labels.device)
    y = labels.cpu()
    allowed = torch.ones(len(y), num_classes, dtype=torch.bool)
    allowed[torch.arange(len(y)), y] = False
    if excluded:
        allowed[:, list(excluded)] = False
    if not bool(allowed.any(1).all()):
        raise ValueError(
            f"no class is left to relabel with: {num_classes} classes, excluded {sorted(excluded)} "
            "plus each sample's own label"
        )
    scores = torch.rand(len(y), num_classes, generator=generator)
    return scores.masked_fill(~allowed, -1.0).argmax(1).to(labels.device)


@dataclass(frozen=True, kw_only=True)
class VisionConfig(MethodConfig):
    """Base of every vision method's config: what the method does with batch-norm statistics
    (:mod:`obliviate.methods.bn`), a choice like any other hyperparameter."""

    bn_stats: Literal["method", "keep", "eval", "retain"] = param(
        "method",
        "batch-norm running statistics: the method's own (method), the original's restored "
        "(keep), frozen in eval mode (eval), or re-estimated on the retain set after (retain)",
        tune=Choice(("method", "keep", "eval", "retain")),
    )
    bn_samples: int = param(2000, "retain rows the statistics are re-estimated on (bn_stats: retain)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self._require(self.bn_samples >= 1, "bn_samples", ">= 1")


VC = TypeVar("VC", bound=MethodConfig)


class VisionMethod(UnlearningMethod[VC]):
    """Base of every vision method: :meth:`run` applies the config's ``bn_stats`` around
    :meth:`unlearn` and records it in the result's ``info``. Generic over the config type like
    :class:`~obliviate.core.UnlearningMethod` (``class SSD(VisionMethod[SSDConfig])``)."""

    def __init__(self, config: MethodConfig | dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        policy = getattr(self.config, "bn_stats", "method")
        if policy != "method" and (self.exact or not self.keeps_architecture):
            raise ConfigError(
                f"{type(self).__name__} builds its model anew (exact: {self.exact}): bn_stats must be "
                f"'method', got {policy!r}",
                "bn_stats",
            )
        if policy == "retain" and "retain" not in self.uses:
            raise ConfigError(
                f"bn_stats='retain' reads the retain set, which {type(self).__name__} does not "
                f"(it reads {sorted(self.uses) or 'nothing'}); use 'keep' or 'eval'",
                "bn_stats",
            )
        if getattr(self.config, "stop", "budget") == "calibrated":  # the stop measures forget and held-out rows
            self.uses = frozenset(type(self).uses | {"forget", "validation"})

    def run(self, model: nn.Module, data: Any, ctx: Any) -> MethodResult:
        from .bn import bn_layers, frozen_statistics, reestimate, restore, snapshot

        policy = getattr(self.config, "bn_stats", "method")
        if policy == "method" or not bn_layers(model):
            return self.unlearn(model, data, ctx)
        info: dict[str, Any] = {"bn_stats": policy}
        if policy == "keep":
            saved = snapshot(model)
            result = self.unlearn(model, data, ctx)
            restore(result.model, saved)
        elif policy == "eval":
            with frozen_statistics(model):
                result = self.unlearn(model, data, ctx)
        else:  # retain
            result = self.unlearn(model, data, ctx)
            retain = data.retain
            bn_samples = cast(VisionConfig, self.config).bn_samples  # bn_stats is a VisionConfig field
            rows = ctx.subset(len(retain), bn_samples, offset=97)
            info["bn_rows"] = reestimate(
                result.model, retain.loader(256, shuffle=False, rows=rows, channels_last=ctx.channels_last), ctx.device
            )
        result.model.eval()
        result.info.update(info)
        return result


@dataclass(kw_only=True)
class UnlearnContext(MethodContext):
    """The vision context: the shared :class:`~obliviate.core.MethodContext` plus what image
    methods need. ``model_factory(seed)`` builds a freshly initialised model of the same
    architecture (for retraining and for the incompetent teacher); ``train_config`` is how the
    original was trained; ``channels_last`` its memory format."""

    model_factory: Callable[[int], nn.Module]
    train_config: TrainConfig
    channels_last: bool = False
    # The runner's frozen copy of the original, made once per group and shared by its methods.
    reference_model: Callable[[], nn.Module] | None = None
    # What the original's training recorded per training row (indexed by dataset row, as
    # ``SplitView.rows``): its mean label probability over the steps that trained on the row
    # (``fit(record_confidence=True)``, a memorisation proxy); None when it was not recorded.
    training_confidence: torch.Tensor | None = None

    def frozen_original(self, model: nn.Module) -> nn.Module:
        """The original model frozen (eval mode, no gradients) for teachers and references —
        never modify it. The runner's shared copy when there is one (no copy per method); else a
        frozen copy of ``model``, which must still be unmodified when this is called."""
        if self.reference_model is not None:
            return self.reference_model()
        return frozen_copy(model)

    def subset(self, n: int, k: int | None, offset: int = 0) -> torch.Tensor | None:
        """``k`` of ``n`` row positions drawn with ``generator(offset)``, sorted; ``None`` (every
        row) when ``k`` is ``None`` or at least ``n`` — the methods' ``*_samples`` cost knobs."""
        if k is None or k >= n:
            return None
        return torch.randperm(n, generator=self.generator(offset))[:k].sort().values


__all__ = [
    "METHODS",
    "SPLITS",
    "Choice",
    "GuardedSplits",
    "MethodConfig",
    "MethodContext",
    "MethodResult",
    "Range",
    "RunStats",
    "SplitAccessError",
    "SplitView",
    "UnlearnContext",
    "UnlearnData",
    "UnlearningMethod",
    "VisionConfig",
    "VisionMethod",
    "build_method",
    "describe_method",
    "forever",
    "frozen_copy",
    "get_method",
    "list_methods",
    "param",
    "random_other_labels",
    "register_method",
    "run_method",
]
