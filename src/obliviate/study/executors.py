"""Where a study's groups run: in this process, or as Ray tasks on a local or remote cluster.

The runner plans the study, writes ``study.json`` and retires stale records in the driver; then an
executor runs every group (model × request × seed: its references, then its pending units) with
the one :meth:`StudyRunner.run_group`. The executors differ only in *where* that call happens:

* :class:`SerialExecutor` — one group after another in this process (``obliviate run``);
* :class:`RayExecutor` — one Ray task per group that has work left, with declared resources
  (``cpus_per_group``, ``gpus_per_group``); ``obliviate run --executor ray [--address ADDR]``.
  Each worker plans the same spec (so every unit has the same content key as in a serial run)
  and writes its records into the same store, atomically; a serial rerun skips them and vice
  versa. Two workers that need the same original or retrained model share the model cache's
  per-entry lock: one trains it, the other waits and loads it. Progress lines of the workers
  reach the driver through a Ray queue and are printed as in a serial run, each group announcing
  the worker (pid, host) it runs on. A group whose worker dies is retried ``max_retries`` times
  by Ray; a group that still does not finish is reported, the others go on, and
  :class:`StudyIncompleteError` tells the user that running the same command again resumes.

Ray is imported only here, lazily (``pip install 'obliviate[dist]'``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..core.typed import ConfigError, check_fields

if TYPE_CHECKING:  # pragma: no cover
    from .spec import StudySpec
    from .tasks.base import GroupPlan, Progress

EXECUTORS = ("serial", "ray")


class StudyIncompleteError(RuntimeError):
    """Some groups of a study did not finish (a worker or node died); what finished is stored."""

    def __init__(self, lost: list[str]) -> None:
        self.lost = list(lost)
        super().__init__(
            f"{len(lost)} group(s) did not finish: {'; '.join(lost[:4])}{' ...' if len(lost) > 4 else ''}. "
            "Every finished run is stored: run the same command again to resume"
        )


class GroupRunner(Protocol):
    """What an executor needs of the study runner (:class:`~obliviate.study.StudyRunner`)."""

    spec: StudySpec
    progress: Progress
    device_name: str | None
    model_cache_dir: Path | None

    @property
    def out_dir(self) -> Path: ...

    def group_done(self, group: GroupPlan) -> bool: ...

    def run_group(self, group: GroupPlan) -> None: ...

    @staticmethod
    def on_worker(
        spec: StudySpec, out_dir: str, cache_dir: str | None, device: str | None, group_key: str, progress: Progress
    ) -> None: ...


class Executor(Protocol):
    """Runs the groups of a planned study; returns the labels (and why) of groups that did not finish."""

    def run_groups(self, runner: GroupRunner, groups: list[GroupPlan]) -> list[str]: ...


class SerialExecutor:
    """Every group in this process, in plan order."""

    def run_groups(self, runner: GroupRunner, groups: list[GroupPlan]) -> list[str]:
        for i, group in enumerate(groups, 1):
            if len(groups) > 1:
                runner.progress.stage(f"group {i}/{len(groups)}: {group.label} ({len(group.units)} runs)")
            runner.run_group(group)
        return []


@dataclass(frozen=True, kw_only=True)
class RayExecutor:
    """One Ray task per group with work left.

    ``address``: a running cluster (``ray start --head`` prints it; ``auto`` finds the local one);
    ``None`` starts a local Ray for the command and stops it afterwards (``num_cpus``: its size,
    default all cores). ``cpus_per_group`` / ``gpus_per_group``: the resources each group's task
    declares — torch in the worker uses ``cpus_per_group`` threads. ``max_retries``: how often
    Ray re-runs a group whose worker died (the rerun skips the units already stored)."""

    address: str | None = None
    cpus_per_group: float = 1.0
    gpus_per_group: float = 0.0
    max_retries: int = 1
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.cpus_per_group > 0:
            raise ConfigError(f"RayExecutor.cpus_per_group must be > 0, got {self.cpus_per_group!r}", "cpus_per_group")
        if self.gpus_per_group < 0:
            raise ConfigError(f"RayExecutor.gpus_per_group must be >= 0, got {self.gpus_per_group!r}", "gpus_per_group")
        if self.max_retries < 0:
            raise ConfigError(f"RayExecutor.max_retries must be >= 0, got {self.max_retries!r}", "max_retries")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ConfigError(f"RayExecutor.num_cpus must be >= 1 or None, got {self.num_cpus!r}", "num_cpus")
        if self.num_cpus is not None and self.address is not None:
            raise ConfigError(
                "RayExecutor.num_cpus sizes a local Ray; the cluster at address has its own size", "num_cpus"
            )

    def run_groups(self, runner: GroupRunner, groups: list[GroupPlan]) -> list[str]:
        say = runner.progress.stage
        todo = []
        for i, group in enumerate(groups, 1):
            if runner.group_done(group):
                runner.run_group(group)  # says it is done (or records what is not applicable); opens nothing
            else:
                todo.append((i, group))
        if not todo:
            return []
        with ray_session(self.address, self.num_cpus, say) as (ray, _started):
            from ray.util.queue import Queue

            queue = Queue()
            spec_ref = ray.put(with_absolute_paths(runner.spec))
            remote = ray.remote(_run_group_task).options(
                num_cpus=self.cpus_per_group,
                num_gpus=self.gpus_per_group,
                max_retries=self.max_retries,
                retry_exceptions=False,
            )
            threads = max(1, int(self.cpus_per_group))
            cache = str(runner.model_cache_dir.resolve()) if runner.model_cache_dir is not None else None
            pending = {}
            for i, group in todo:
                say(f"group {i}/{len(groups)}: {group.label} ({len(group.units)} runs) submitted")
                ref = remote.remote(
                    type(runner).on_worker,
                    spec_ref,
                    str(runner.out_dir.resolve()),
                    cache,
                    runner.device_name,
                    group.key,
                    queue,
                    threads,
                )
                pending[ref] = group
            lost: list[str] = []
            try:
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)
                    _drain(queue, say)
                    for ref in done:
                        group = pending.pop(ref)
                        try:
                            ray.get(ref)
                        except Exception as e:
                            why = _ray_error_text(e)
                            say(f"{group.label}: DID NOT FINISH ({why})")
                            lost.append(f"{group.label} ({why})")
                _drain(queue, say)
            except BaseException:
                for ref in pending:
                    ray.cancel(ref, force=True)
                raise
            return lost


def with_absolute_paths(spec: StudySpec) -> StudySpec:
    """``spec`` with a relative dataset root made absolute: a worker need not share the driver's
    working directory (the content fingerprint, not the path, is in every key)."""
    import dataclasses

    from .spec import DatasetSpec

    ds = spec.dataset
    if not isinstance(ds, DatasetSpec) or ds.root is None or Path(ds.root).is_absolute() or not Path(ds.root).exists():
        return spec
    return dataclasses.replace(spec, dataset=dataclasses.replace(ds, root=str(Path(ds.root).resolve())))


def import_ray() -> Any:
    try:
        import ray
    except ImportError as e:  # pragma: no cover - the dist extra is part of dev
        raise ImportError("the Ray executor needs Ray: pip install 'obliviate[dist]' (ray[tune], optuna)") from e
    return ray


class ray_session:
    """``ray.init`` for a command: connect to ``address``, or start a local Ray (stopped on exit).
    An already initialised Ray (a user's own script) is used as it is and left running."""

    def __init__(self, address: str | None, num_cpus: int | None, say: Callable[[str], None]) -> None:
        self.address, self.num_cpus, self.say = address, num_cpus, say
        self.started = False

    def __enter__(self) -> tuple[Any, bool]:
        ray = import_ray()
        if ray.is_initialized():
            return ray, False
        t0 = time.perf_counter()
        if self.address is None:
            # a Ray that lives and dies with this command, on this machine only
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
            what = f"local Ray started ({int(ray.cluster_resources().get('CPU', 0))} CPUs)"
        else:
            try:
                ray.init(address=self.address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise RuntimeError(
                    f"cannot connect to the Ray cluster at {self.address!r}: {e}. Start one with "
                    "`ray start --head` (it prints the address) or leave --address out for a "
                    "local Ray"
                ) from None
            res = ray.cluster_resources()
            what = f"connected to Ray at {self.address} ({int(res.get('CPU', 0))} CPUs, {int(res.get('GPU', 0))} GPUs)"
        self.started = True
        self.say(f"{what} in {time.perf_counter() - t0:.1f}s")
        return ray, True

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            import ray

            ray.shutdown()


def _drain(queue: Any, say: Callable[[str], None]) -> None:
    while True:
        try:
            items = queue.get_nowait_batch(max(1, queue.qsize()))
        except Exception:
            return
        if not items:
            return
        for text in items:
            say(text)


def _ray_error_text(e: BaseException) -> str:
    text = str(getattr(e, "cause", None) or e).strip().splitlines()
    first = next((ln for ln in text if ln.strip()), type(e).__name__)
    return f"{type(e).__name__}: {first[:200]}"


class _QueueProgress:
    """A worker's progress: stage lines go to the driver's queue; step bars stay local (none)."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def stage(self, text: str) -> None:
        with suppress(Exception):
            self.queue.put(text, block=False)

    def steps(self, desc: str) -> Any:
        return nullcontext(lambda _ev: None)


def _run_group_task(
    run: Callable[..., None],
    spec: StudySpec,
    out_dir: str,
    cache_dir: str | None,
    device: str | None,
    group_key: str,
    queue: Any,
    threads: int,
) -> str:
    """The body of one Ray task: ``run`` (the runner's :meth:`~obliviate.study.StudyRunner.on_worker`)
    plans ``spec`` as the driver did and runs the group ``group_key``, its progress sent to the driver."""
    import torch

    torch.set_num_threads(threads)
    run(spec, out_dir, cache_dir, device, group_key, _QueueProgress(queue))
    return group_key


def make_executor(name: str, **kw: Any) -> Executor:
    """``serial`` or ``ray`` (``kw``: :class:`RayExecutor` fields); errors name what is allowed."""
    if name == "serial":
        if any(v is not None for v in kw.values()):
            raise ValueError(
                f"options {sorted(k for k, v in kw.items() if v is not None)} apply to --executor ray only"
            )
        return SerialExecutor()
    if name == "ray":
        return RayExecutor(**{k: v for k, v in kw.items() if v is not None})
    raise ValueError(f"unknown executor {name!r}; allowed: {', '.join(EXECUTORS)}")


__all__ = [
    "EXECUTORS",
    "Executor",
    "GroupRunner",
    "RayExecutor",
    "SerialExecutor",
    "StudyIncompleteError",
    "make_executor",
    "ray_session",
]
