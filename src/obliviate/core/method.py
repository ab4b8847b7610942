"""The contract every unlearning method follows, for every kind of task (vision, LLM).

A method is one file, one registered class and one frozen, fully defaulted, self-validating
config. ``unlearn(model, data, ctx) -> MethodResult`` only transforms the model: it does not
evaluate, log metrics, plot or save. It declares the splits it reads in ``uses``; the data object
it receives (a :class:`GuardedSplits`) raises :class:`SplitAccessError` on any other split, so
that, e.g., retraining provably never reads the forget set.

This module knows no task: the vision data view lives in :mod:`obliviate.methods.base`, the LLM
one in :mod:`obliviate.methods.lm_base`; both subclass :class:`GuardedSplits`.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar, cast

import torch
from torch import nn

from .._registry import Registry
from .faults import check_model
from .typed import ConfigError, check_fields, from_mapping

SPLITS = ("forget", "retain", "validation")
KINDS = ("vision", "llm")


class SplitAccessError(PermissionError):
    """A method touched a split it did not declare in ``uses``."""


@dataclass(frozen=True)
class Range:
    """A tunable numeric range of a config field: ``[low, high]``, on a log scale with ``log``,
    integers only with ``integer``. Declared beside the field (``param(..., tune=Range(1, 50, log=True))``);
    ``obliviate tune`` searches it."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ConfigError(f"Range needs low < high, got [{self.low!r}, {self.high!r}]")
        if self.log and self.low <= 0:
            raise ConfigError(f"a log Range needs low > 0, got {self.low!r}")

    def describe(self) -> str:
        return f"[{self.low:g}, {self.high:g}]" + (" log" if self.log else "") + (" int" if self.integer else "")


@dataclass(frozen=True)
class Choice:
    """A tunable set of values of a config field (``param(..., tune=Choice(("keep", "eval")))``)."""

    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if len(self.values) < 2:
            raise ConfigError(f"a Choice needs at least two values, got {self.values!r}")

    def describe(self) -> str:
        return "{" + ", ".join(str(v) for v in self.values) + "}"


def param(default: Any, doc: str, symbol: str | None = None, tune: Range | Choice | None = None) -> Any:
    """A config field with its meaning (and the paper's symbol) attached for ``describe``; ``tune``:
    the range ``obliviate tune`` searches for it."""
    return field(default=default, metadata={"doc": doc, "symbol": symbol, "tune": tune})


def search_space(config_cls: type) -> dict[str, Range | Choice]:
    """The tunable fields a method config declares (``param(..., tune=...)``), in field order."""
    return {f.name: f.metadata["tune"] for f in dataclasses.fields(config_cls) if f.metadata.get("tune") is not None}


@dataclass(frozen=True, kw_only=True)
class MethodConfig:
    """Base of every method config: frozen, keyword-only, typed and validated on construction.

    Field types are checked against the annotations first (:func:`~obliviate.core.typed.check_fields`:
    no NaN or ±inf, no strings for numbers except YAML's ``1e-3``), then ``validate()`` checks ranges.
    """

    def __post_init__(self) -> None:
        check_fields(self)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field, the bad value and what is allowed."""

    def _require(self, ok: bool, field_name: str, allowed: str) -> None:
        if not ok:
            raise ConfigError(
                f"{type(self).__name__}.{field_name} must be {allowed}, got {getattr(self, field_name)!r}", field_name
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> MethodConfig:
        cfg: MethodConfig = from_mapping(cls, dict(d or {}))
        return cfg


class GuardedSplits:
    """Base of the data a method receives: the splits it declared, and nothing else.

    Subclasses implement ``_make_view(name)``; reading a split goes through :meth:`_view`, which
    raises :class:`SplitAccessError` for an undeclared split and records what was read.
    """

    def __init__(self, allowed: frozenset[str]) -> None:
        self._allowed = frozenset(allowed)
        self._views: dict[str, Any] = {}
        self.accessed: set[str] = set()

    def _make_view(self, name: str) -> Any:
        raise NotImplementedError

    def _view(self, name: str) -> Any:
        if name not in self._allowed:
            raise SplitAccessError(f"this method declared uses={sorted(self._allowed)} but read the {name!r} split")
        self.accessed.add(name)
        if name not in self._views:
            self._views[name] = self._make_view(name)
        return self._views[name]

    @property
    def forget(self) -> Any:
        return self._view("forget")

    @property
    def retain(self) -> Any:
        return self._view("retain")

    @property
    def validation(self) -> Any:
        return self._view("validation")


@dataclass(kw_only=True)
class MethodContext:
    """What every method may use besides the model and data, whatever the task: the device, the
    seed (all of a method's randomness comes from it), bf16 autocast, and a progress callback.
    The vision and LLM contexts extend it with what their methods also need."""

    device: torch.device
    seed: int
    bf16: bool = False
    progress: Callable[[dict[str, Any]], None] | None = None

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator seeded from ``seed`` and ``offset`` (one stream per use)."""
        g = torch.Generator()
        g.manual_seed(self.seed * 7919 + offset)
        return g

    def autocast(self) -> Any:
        """bf16 autocast on this context's device when ``bf16`` is set."""
        from ..utils import autocast_context

        return autocast_context(self.device, self.bf16)


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
    # What the model's change is, where a method has it in a smaller form than the model (an LLM
    # method's LoRA adapter before merging): written instead of the model on request.
    adapter: Any = None


C = TypeVar("C", bound=MethodConfig)


class UnlearningMethod(Generic[C]):
    """Base class: subclasses set ``Config``, ``uses``, ``reference`` and implement ``unlearn``.

    Generic over the config type, so that ``self.config`` is typed: a method subclasses
    ``UnlearningMethod[ItsConfig]`` (or ``VisionMethod[ItsConfig]``) and sets ``Config = ItsConfig``.

    ``kind`` is ``"vision"`` or ``"llm"``; ``exact`` marks methods whose result provably holds no
    influence of the forget set (retraining, SISA). ``keeps_architecture`` is false only for
    methods that return a different model class (SISA's ensemble). ``class_level`` marks methods
    that can only forget whole classes (UNSIR): a study skips them, and says so, on a random,
    sample-id or sub-class request; ``sample_level`` the reverse (AMUN): skipped on a request that
    forgets whole classes.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    # The splits the method reads; a class attribute that an instance may widen (VisionMethod's calibrated stop).
    uses: frozenset[str] = frozenset()
    reference: ClassVar[str] = ""
    kind: ClassVar[str] = "vision"
    exact: ClassVar[bool] = False
    keeps_architecture: ClassVar[bool] = True
    class_level: ClassVar[bool] = False
    sample_level: ClassVar[bool] = False
    # A cheap configuration (overrides of Config's defaults) for smoke tests and quick previews.
    smoke: ClassVar[dict[str, Any]] = {}

    config: C

    def __init__(self, config: MethodConfig | dict[str, Any] | None = None, **overrides: Any) -> None:
        if isinstance(config, MethodConfig):
            if not isinstance(config, self.Config):
                raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
            cfg = dataclasses.replace(config, **overrides) if overrides else config
        else:
            cfg = self.Config.from_dict({**(config or {}), **overrides})
        # ``Config`` is the class the type parameter ``C`` names (a ClassVar cannot hold a type variable).
        self.config = cast(C, cfg)

    def unlearn(self, model: nn.Module, data: Any, ctx: Any) -> MethodResult:
        raise NotImplementedError

    def run(self, model: nn.Module, data: Any, ctx: Any) -> MethodResult:
        """What :func:`run_method` calls: :meth:`unlearn`, plus whatever a task's base class wraps
        around every method of its kind (the vision base applies the batch-norm policy)."""
        return self.unlearn(model, data, ctx)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


METHODS: Registry[type[UnlearningMethod]] = Registry("method")


M = TypeVar("M", bound=type[UnlearningMethod[Any]])


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: validates the declaration and registers it under ``name``."""

    def deco(cls: M) -> M:
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
        if cls.kind not in KINDS:
            raise TypeError(f"{cls.__name__}.kind must be one of {KINDS}")
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
        fields.append(
            {
                "name": f.name,
                "default": f.default if f.default is not dataclasses.MISSING else None,
                "doc": f.metadata.get("doc", ""),
                "symbol": f.metadata.get("symbol"),
                "tune": f.metadata["tune"].describe() if f.metadata.get("tune") is not None else None,
            }
        )
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
    """Efficiency of one ``unlearn`` call, measured by :func:`run_method`.

    ``peak_memory_mb`` is the call's own peak above what was in use when it began: CUDA's peak
    allocation minus the allocation at the start, or on a CPU the highest resident set size
    sampled every 5 ms minus the resident size at the start (``memory_basis`` says which).
    """

    seconds: float  # the unlearning's wall time (MethodResult.unlearning_seconds when given)
    steps: int
    peak_memory_mb: float | None
    splits_read: list[str]
    memory_basis: str = ""


def _rss_mb() -> float | None:
    """The process's resident set size now (MiB), through psutil; ``None`` where it cannot tell."""
    try:
        import psutil

        return float(psutil.Process().memory_info().rss) / 2**20
    except Exception:
        return None


class _RssSampler:
    """Samples the process's resident set size in a thread while a call runs."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.start = _rss_mb()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            v = _rss_mb()
            if v is not None and (self.peak is None or v > self.peak):
                self.peak = v

    def __enter__(self) -> _RssSampler:
        if self.start is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        v = _rss_mb()
        if v is not None and self.peak is not None and v > self.peak:
            self.peak = v

    @property
    def delta_mb(self) -> float | None:
        return None if self.start is None or self.peak is None else max(0.0, self.peak - self.start)


def run_method(
    method: UnlearningMethod,
    model: nn.Module,
    data: GuardedSplits | Any,
    ctx: Any,
) -> tuple[MethodResult, RunStats]:
    """Apply ``method`` to a deep copy of ``model`` (the original is never touched); time it,
    measure the call's own peak memory, and refuse a result with non-finite weights
    (:class:`~obliviate.core.faults.NonFiniteError`)."""
    work = copy.deepcopy(model)
    spec = getattr(model, "obliviate_spec", None)
    device = getattr(ctx, "device", torch.device("cpu"))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    seed = getattr(ctx, "seed", None)
    if seed is not None:
        torch.manual_seed(seed)  # methods that draw from the global RNG stay reproducible
    with _RssSampler() as rss:
        t0 = time.perf_counter()
        result = method.run(work, data, ctx)
        seconds = time.perf_counter() - t0
    if spec is not None and not hasattr(result.model, "obliviate_spec"):
        result.model.obliviate_spec = spec
    check_model(result.model, "weights after unlearning")
    if device.type == "cuda":
        peak: float | None = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        basis = "cuda peak allocation during the call, above its start"
    else:
        peak, basis = rss.delta_mb, "peak resident memory sampled every 5 ms during the call, above its start"
    if result.unlearning_seconds is not None:
        seconds = result.unlearning_seconds
    return result, RunStats(
        seconds, result.steps, peak, sorted(getattr(data, "accessed", set())), basis if peak is not None else ""
    )
