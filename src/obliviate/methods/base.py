"""The contract every unlearning method follows.

A method is one file, one registered class and one frozen, fully defaulted, self-validating
config. ``unlearn(model, data, ctx) -> MethodResult`` only transforms the model: it does not
evaluate, log metrics, plot or save. It declares the splits it reads in ``uses``; the data object
it receives raises :class:`SplitAccessError` on any other split, so that, e.g., retraining provably
never reads the forget set.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .._registry import Registry
from ..data import Augment, BatchLoader, ForgetSplit, ImageDataset
from ..train import TrainConfig

SPLITS = ("forget", "retain", "validation")


class SplitAccessError(PermissionError):
    """A method touched a split it did not declare in ``uses``."""


def param(default: Any, doc: str, symbol: str | None = None) -> Any:
    """A config field with its meaning (and the paper's symbol) attached for ``describe``."""
    return field(default=default, metadata={"doc": doc, "symbol": symbol})


@dataclass(frozen=True, kw_only=True)
class MethodConfig:
    """Base of every method config: frozen, keyword-only, validated in ``__post_init__``."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field, the bad value and what is allowed."""

    def _require(self, ok: bool, field_name: str, allowed: str) -> None:
        if not ok:
            raise ValueError(
                f"{type(self).__name__}.{field_name} must be {allowed}, got {getattr(self, field_name)!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> MethodConfig:
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown field(s) {unknown} for {cls.__name__}; allowed: {sorted(known)}")
        return cls(**d)


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
        """A shuffled, augmented loader configured like :func:`obliviate.train.make_loader`."""
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
            self.images, self.labels, mean=self.mean, std=self.std, rows=rows, batch_size=batch_size,
            shuffle=shuffle, augment=augment, seed=seed, channels_last=channels_last, drop_last=drop_last,
        )


class UnlearnData:
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
        self._dataset = dataset
        self._split = split
        self._allowed = frozenset(allowed)
        self._validation_rows = np.asarray([] if validation_rows is None else validation_rows, dtype=np.int64)
        self._device = torch.device(device)
        self._cache: dict[str, SplitView] = {}
        self.accessed: set[str] = set()

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
        return {"forget": len(self._split.forget), "retain": len(self._split.retain),
                "validation": len(self._validation_rows)}[name]

    # -- guarded splits --------------------------------------------------------------------------
    def _view(self, name: str) -> SplitView:
        if name not in self._allowed:
            raise SplitAccessError(
                f"this method declared uses={sorted(self._allowed)} but read the {name!r} split"
            )
        self.accessed.add(name)
        if name not in self._cache:
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
            self._cache[name] = SplitView(
                name, x.index_select(0, idx).to(self._device), y.index_select(0, idx.to(y.device)).to(self._device),
                np.asarray(rows), ds.mean, ds.std,
            )
        return self._cache[name]

    @property
    def forget(self) -> SplitView:
        return self._view("forget")

    @property
    def retain(self) -> SplitView:
        return self._view("retain")

    @property
    def validation(self) -> SplitView:
        return self._view("validation")


@dataclass
class UnlearnContext:
    """What a method may use besides the model and data.

    ``model_factory(seed)`` builds a freshly initialised model of the same architecture (for
    retraining and for the incompetent teacher); ``train_config`` is how the original was trained.
    """

    device: torch.device
    seed: int
    model_factory: Callable[[int], nn.Module]
    train_config: TrainConfig
    bf16: bool = False
    channels_last: bool = False
    progress: Callable[[dict[str, Any]], None] | None = None

    def generator(self, offset: int = 0) -> torch.Generator:
        g = torch.Generator()
        g.manual_seed(self.seed * 7919 + offset)
        return g

    def subset(self, n: int, k: int | None, offset: int = 0) -> torch.Tensor | None:
        """``k`` of ``n`` row positions drawn with ``generator(offset)``, sorted; ``None`` (every
        row) when ``k`` is ``None`` or at least ``n`` — the methods' ``*_samples`` cost knobs."""
        if k is None or k >= n:
            return None
        return torch.randperm(n, generator=self.generator(offset))[:k].sort().values


@dataclass
class MethodResult:
    """The unlearned model, the optimizer steps (or equivalent updates) spent, and facts worth
    reporting (JSON-serialisable, e.g. how many units were masked)."""

    model: nn.Module
    steps: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    # Wall seconds of the unlearning itself when ``unlearn`` also builds its own original first
    # (SISA trains its sharded ensemble, then deletes); ``None``: the whole call is unlearning.
    unlearning_seconds: float | None = None


class UnlearningMethod:
    """Base class: subclasses set ``Config``, ``uses``, ``reference`` and implement ``unlearn``.

    ``kind`` is ``"vision"`` or ``"llm"``; ``exact`` marks methods whose result provably holds no
    influence of the forget set (retraining, SISA). ``keeps_architecture`` is false only for
    methods that return a different model class (SISA's ensemble). ``class_level`` marks methods
    that can only forget whole classes (UNSIR): a study skips them, and says so, on a random,
    sample-id or sub-class request.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    uses: ClassVar[frozenset[str]] = frozenset()
    reference: ClassVar[str] = ""
    kind: ClassVar[str] = "vision"
    exact: ClassVar[bool] = False
    keeps_architecture: ClassVar[bool] = True
    class_level: ClassVar[bool] = False
    # A cheap configuration (overrides of Config's defaults) for smoke tests and quick previews.
    smoke: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: MethodConfig | dict[str, Any] | None = None, **overrides: Any) -> None:
        if isinstance(config, MethodConfig):
            if not isinstance(config, self.Config):
                raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
            cfg = dataclasses.replace(config, **overrides) if overrides else config
        else:
            cfg = self.Config.from_dict({**(config or {}), **overrides})
        self.config = cfg

    def unlearn(self, model: nn.Module, data: Any, ctx: Any) -> MethodResult:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


METHODS: Registry[type[UnlearningMethod]] = Registry("method")


def register_method(name: str) -> Callable[[type[UnlearningMethod]], type[UnlearningMethod]]:
    """Class decorator: validates the declaration and registers it under ``name``."""

    def deco(cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
        cfg = cls.Config
        if not (dataclasses.is_dataclass(cfg) and issubclass(cfg, MethodConfig)):
            raise TypeError(f"{cls.__name__}.Config must be a MethodConfig dataclass")
        if not cfg.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError(f"{cfg.__name__} must be a frozen dataclass")
        try:
            cfg()
        except TypeError as e:
            raise TypeError(f"{cfg.__name__} must be fully defaulted: {e}") from e
        bad = set(cls.uses) - set(SPLITS)
        if bad:
            raise TypeError(f"{cls.__name__}.uses must be a subset of {SPLITS}, got {sorted(cls.uses)}")
        if cls.kind not in ("vision", "llm"):
            raise TypeError(f"{cls.__name__}.kind must be 'vision' or 'llm'")
        cls.name = name
        METHODS.register(name)(cls)
        return cls

    return deco


def get_method(name: str) -> type[UnlearningMethod]:
    return METHODS.get(name)


def build_method(name: str, config: dict[str, Any] | None = None) -> UnlearningMethod:
    return METHODS.get(name)(config)


def list_methods(pattern: str = "*", kind: str | None = None) -> list[str]:
    return [n for n in METHODS.names(pattern) if kind is None or METHODS.get(n).kind == kind]


def describe_method(name: str) -> dict[str, Any]:
    """Fields with defaults, meaning and paper symbol, plus the reference and declared splits."""
    cls = METHODS.get(name)
    fields = []
    for f in dataclasses.fields(cls.Config):
        fields.append({
            "name": f.name,
            "default": f.default if f.default is not dataclasses.MISSING else None,
            "doc": f.metadata.get("doc", ""),
            "symbol": f.metadata.get("symbol"),
        })
    return {
        "name": name,
        "class": cls.__name__,
        "kind": cls.kind,
        "summary": (cls.__doc__ or "").strip().split("\n")[0],
        "reference": cls.reference,
        "uses": sorted(cls.uses),
        "exact": cls.exact,
        "fields": fields,
    }


@dataclass
class RunStats:
    """Efficiency of one ``unlearn`` call, measured by :func:`run_method`."""

    seconds: float  # the unlearning's wall time (MethodResult.unlearning_seconds when given)
    steps: int
    peak_memory_mb: float | None  # CUDA peak allocation, or the process's peak RSS on a CPU
    splits_read: list[str]


def run_method(
    method: UnlearningMethod,
    model: nn.Module,
    data: UnlearnData | Any,
    ctx: UnlearnContext | Any,
) -> tuple[MethodResult, RunStats]:
    """Apply ``method`` to a deep copy of ``model`` (the original is never touched); time it."""
    work = copy.deepcopy(model)
    spec = getattr(model, "obliviate_spec", None)
    device = getattr(ctx, "device", torch.device("cpu"))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seed = getattr(ctx, "seed", None)
    if seed is not None:
        torch.manual_seed(seed)  # methods that draw from the global RNG stay reproducible
    t0 = time.perf_counter()
    result = method.unlearn(work, data, ctx)
    seconds = time.perf_counter() - t0
    if spec is not None and not hasattr(result.model, "obliviate_spec"):
        result.model.obliviate_spec = spec  # type: ignore[assignment]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _rss_peak_mb()
    if result.unlearning_seconds is not None:
        seconds = result.unlearning_seconds
    return result, RunStats(seconds, result.steps, peak, sorted(getattr(data, "accessed", set())))


def _rss_peak_mb() -> float | None:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    except Exception:  # pragma: no cover - platform dependent
        return None
