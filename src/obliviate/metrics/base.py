"""The metric contract: registered metrics read model outputs computed once per model and split.

The study runner predicts every model (the unlearned one and the references: ``original``,
``retrained``, ``random``) once per split and hands the logits to every metric through
:class:`EvalInputs`. A metric declares the reference models it ``needs``, the direction in
which it is better, and returns named scalar values.

Splits: ``forget`` / ``retain`` (training rows), ``test`` (all test rows), ``test_forget``
(test images of the forgotten class(es); empty for random and id requests) and ``test_retain``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from .._registry import Registry

ROLES = ("unlearned", "original", "retrained", "random")
EVAL_SPLITS = ("forget", "retain", "test", "test_forget", "test_retain")
DIRECTIONS = ("higher", "lower", "closest_to_retrained", "info")


class MissingInputError(KeyError):
    """A metric asked for a model or split that was not computed (or is empty)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class Outputs:
    """One model's logits on one split, with the true labels. Derived values are cached."""

    logits: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        self.logits = self.logits.detach().float().cpu()
        self.labels = self.labels.detach().long().cpu()
        if self.logits.ndim != 2 or len(self.logits) != len(self.labels):
            raise ValueError(
                f"logits (N, K) and labels (N,) disagree: {tuple(self.logits.shape)} vs {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @cached_property
    def probs(self) -> torch.Tensor:
        """Softmax probabilities in float64 (divergences need the precision)."""
        return F.softmax(self.logits.double(), dim=1)

    @cached_property
    def preds(self) -> torch.Tensor:
        return self.logits.argmax(1)

    @cached_property
    def loss(self) -> torch.Tensor:
        """Per-sample cross-entropy (nats)."""
        return F.cross_entropy(self.logits.double(), self.labels, reduction="none")

    def subset(self, rows: torch.Tensor) -> Outputs:
        return Outputs(self.logits[rows], self.labels[rows])


@dataclass
class EvalInputs:
    """Everything metrics may read for one unlearned model.

    ``outputs[role][split]``; ``run`` holds efficiency facts (``seconds``, ``steps``,
    ``peak_memory_mb``, ``retrain_seconds``, ``retrain_steps``). ``relearn`` (optional) is a
    callable used by training-based metrics: ``relearn(role, max_steps) -> list[float]`` forget
    accuracy after each fine-tuning step on the forget set.
    """

    outputs: Mapping[str, Mapping[str, Outputs]]
    num_classes: int
    class_names: tuple[str, ...] = ()
    forget_classes: tuple[int, ...] = ()
    seed: int = 0
    run: dict[str, float] = field(default_factory=dict)
    relearn: Callable[..., Any] | None = None
    # Values computed on reference models, shared by every method of one (model, request, seed):
    # the runner passes the same dict to each method's EvalInputs so that, e.g., an attack fitted
    # on the retrained model's outputs runs once per group, not once per method.
    memo: dict[tuple[str, str], Any] = field(default_factory=dict)
    # The per-example audit against K reference models (metrics/membership.py), when the study
    # trains them; and the number of seeded row draws each population attack is repeated over.
    audit: Any = None
    draws: int = 1

    def reference_value(self, name: str, role: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` for ``role``, memoised across methods when ``role`` is a reference."""
        if role == "unlearned":
            return compute()
        if (name, role) not in self.memo:
            self.memo[(name, role)] = compute()
        return self.memo[(name, role)]

    def out(self, split: str, role: str = "unlearned") -> Outputs:
        if split not in EVAL_SPLITS:
            raise ValueError(f"unknown split {split!r}; allowed: {EVAL_SPLITS}")
        try:
            o = self.outputs[role][split]
        except KeyError:
            raise MissingInputError(f"no outputs for model {role!r} on split {split!r}") from None
        if len(o) == 0:
            raise MissingInputError(f"split {split!r} is empty for model {role!r}")
        return o

    def has(self, split: str, role: str = "unlearned") -> bool:
        o = self.outputs.get(role, {}).get(split)
        return o is not None and len(o) > 0

    def roles(self) -> set[str]:
        """The models whose outputs are available (a metric that needs another is skipped)."""
        return set(self.outputs)


class Metric:
    """Base class. ``compute`` returns ``{key: value}``; keys are ``name`` or ``name/part``."""

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    direction: ClassVar[str] = "info"
    summary: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    costly: ClassVar[bool] = False  # needs training (not in the default set)
    # "vision": reads EvalInputs (logits per model and split); "llm": reads LLMEvalInputs
    # (token-level evaluations of causal LMs, obliviate.metrics.llm)
    kind: ClassVar[str] = "vision"

    def compute(self, inputs: Any) -> dict[str, float]:
        raise NotImplementedError

    def direction_of(self, key: str) -> str:
        """Direction of one returned key (override when parts differ)."""
        return self.direction


METRICS: Registry[type[Metric]] = Registry("metric")


def register_metric(name: str) -> Callable[[type[Metric]], type[Metric]]:
    def deco(cls: type[Metric]) -> type[Metric]:
        if cls.direction not in DIRECTIONS:
            raise TypeError(f"{cls.__name__}.direction must be one of {DIRECTIONS}")
        bad = set(cls.needs) - set(ROLES)
        if bad:
            raise TypeError(f"{cls.__name__}.needs must be a subset of {ROLES}, got {sorted(bad)}")
        if not cls.summary:
            raise TypeError(f"{cls.__name__} needs a one-sentence summary")
        if cls.kind not in ("vision", "llm"):
            raise TypeError(f"{cls.__name__}.kind must be 'vision' or 'llm', got {cls.kind!r}")
        cls.name = name
        METRICS.register(name)(cls)
        return cls

    return deco


def list_metrics(pattern: str = "*", include_costly: bool = True, kind: str | None = None) -> list[str]:
    return [
        n
        for n in METRICS.names(pattern)
        if (include_costly or not METRICS.get(n).costly) and (kind is None or METRICS.get(n).kind == kind)
    ]


def describe_metric(name: str) -> dict[str, Any]:
    cls = METRICS.get(name)
    return {
        "name": name,
        "summary": cls.summary,
        "direction": cls.direction,
        "needs": sorted(cls.needs),
        "reference": cls.reference,
        "costly": cls.costly,
        "kind": cls.kind,
        "doc": (cls.__doc__ or "").strip(),
    }


def compute_metrics(names: list[str], inputs: Any) -> tuple[dict[str, float], dict[str, str]]:
    """Run metrics by name; returns ``(values, directions)`` keyed by result key.

    A metric whose reference model or split is unavailable is skipped (its keys are absent);
    any other error propagates.
    """
    values: dict[str, float] = {}
    directions: dict[str, str] = {}
    for name in names:
        metric = METRICS.get(name)()
        if any(role not in inputs.roles() for role in metric.needs):
            continue
        try:
            res = metric.compute(inputs)
        except MissingInputError:
            continue
        for k, v in res.items():
            values[k] = float(v)
            directions[k] = metric.direction_of(k)
    return values, directions
