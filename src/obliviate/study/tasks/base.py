"""The task interface the one study runner drives (vision and LLM studies alike).

A task turns a validated spec into a *plan* — groups of runs, each run with its content key —
and, for a group with pending runs, opens it (trains or loads the group's reference models once)
and runs one unit at a time into a record. Everything else — keys on disk, skipping, superseding,
failure records, locks, tables, the report — is the runner's and the store's, shared by every task.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..keys import key_of


class Progress(Protocol):
    """What the runner reports while it works (the CLI draws progress bars from it)."""

    def stage(self, text: str) -> None: ...

    def steps(self, desc: str) -> AbstractContextManager[Callable[[dict[str, Any]], None]]: ...


class QuietProgress:
    """A :class:`Progress` that reports nothing (tuning trials, scripts that drive a task)."""

    def stage(self, text: str) -> None:
        pass

    def steps(self, desc: str) -> AbstractContextManager[Callable[[dict[str, Any]], None]]:
        return nullcontext(lambda _ev: None)


@dataclass
class Unit:
    """One run of a group: a method (or a reference the task reports as a row, e.g. the LLM
    study's ``original``), the inputs that determine it and their key."""

    label: str
    method_name: str
    method_config: dict[str, Any]
    inputs: dict[str, Any]
    not_applicable: str | None = None  # why this method cannot run on this group's request

    @property
    def key(self) -> str:
        return key_of(self.inputs)


@dataclass
class GroupPlan:
    """One (model, request, seed): the references its units share, and its units."""

    model: str
    request: str
    seed: int
    inputs: dict[str, Any]
    units: list[Unit]
    handle: Any = None  # task-private facts (the request object, the split)

    @property
    def key(self) -> str:
        return key_of({"group": self.inputs})

    @property
    def label(self) -> str:
        return f"{self.model} {self.request} seed {self.seed}"


@dataclass
class OpenGroup:
    """A group whose references are ready: ``run(unit)`` produces the unit's record body."""

    run: Callable[[Unit], dict[str, Any]]
    record: dict[str, Any] = field(default_factory=dict)  # the group record (references' facts)
    close: Callable[[], None] = lambda: None


class Task(Protocol):
    kind: str

    def prepare(self, progress: Progress) -> dict[str, Any]:
        """Load and fingerprint the data, resolve every split (raising on a bad request); return
        facts for ``study.json`` (the dataset's description)."""
        ...

    def plan(self) -> list[GroupPlan]: ...

    def open(self, group: GroupPlan, progress: Progress) -> OpenGroup: ...

    def finish(self, records: list[dict[str, Any]], out_dir: Any) -> None:
        """Write task-specific side files from the current records (e.g. the LLM answers)."""
        ...
