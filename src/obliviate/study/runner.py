"""The one study runner: every task (vision, LLM) goes through :class:`StudyRunner`.

::

    spec --task.prepare--> data loaded, every split resolved (bad requests fail here)
         --task.plan-----> groups (model × request × seed), each unit with its content key
    study.json  <- the plan (which keys make up this study), written before any training
    superseded/ <- every record in runs/ or groups/ that the plan does not name
    executor.run_groups(plan)    serial: here, in order; ray: a Ray task per group (executors.py)
    for each group with a pending unit (no finished record of its key):       (run_group)
        task.open(group)           references trained or taken from the cache, once
        for each pending unit:     task's run(unit) -> record  (a failure is a record too)
            runs/<key>.json        atomic write; a rerun skips it on an exact key match
    results.{jsonl,csv}          <- the plan's finished records only

A run that diverges (NaN/inf loss, weights or outputs) or raises is recorded as ``failed``
with the method, the step and the value, and the study goes on. A non-finite failure is
deterministic and is kept like a result; any other error is retried on the next run.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from ..core import NonFiniteError
from ..models import ModelCache
from ..utils import environment_info, resolve_device, write_json_atomic
from .executors import Executor, SerialExecutor, StudyIncompleteError
from .keys import key_of
from .spec import StudySpec
from .store import ResultStore, _checked, record_rows
from .targets import request_kind
from .tasks.base import GroupPlan, Progress, Task, Unit

log = logging.getLogger(__name__)


class _LogProgress:
    def stage(self, text: str) -> None:
        log.info(text)

    def steps(self, desc: str) -> AbstractContextManager[Callable[[dict[str, Any]], None]]:
        return nullcontext(lambda _ev: None)


def default_cache_dir() -> Path:
    """``$OBLIVIATE_CACHE``, else ``~/.cache/obliviate`` (models go in ``models/``)."""
    import os

    return Path(os.environ.get("OBLIVIATE_CACHE", Path.home() / ".cache" / "obliviate"))


def make_task(spec: StudySpec, model_cache: Path, llm_cache: Path, device: Any) -> Task:
    """The task object of ``spec.task`` (the one place that dispatches on it)."""
    if spec.task == "llm":
        from .tasks.llm import LLMTask

        return LLMTask(spec, llm_cache, device)
    if spec.task == "llm_qa":
        from .tasks.llm_qa import QATask

        return QATask(spec, llm_cache, device)
    from .tasks.vision import VisionTask

    return VisionTask(spec, ModelCache(model_cache), device)


# One runner per worker process and study (data loaded once, reused by the next group of that study).
_WORKER_RUNNERS: dict[tuple[str, str, str | None, str | None], StudyRunner] = {}


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
        executor: Executor | None = None,
    ) -> None:
        self.spec = spec
        self.progress: Progress = progress or _LogProgress()
        self.store = ResultStore(out_dir, say=self.progress.stage)
        self.device_name = device  # as given (a Ray worker resolves it on its own machine)
        self.device = resolve_device(device or spec.device)
        # ``cache_dir`` is the vision model cache itself (the CLI's --cache); LLM models go in its llm/
        self.model_cache_dir = Path(cache_dir) if cache_dir is not None else None
        models = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "models"
        llm = Path(cache_dir) / "llm" if cache_dir is not None else default_cache_dir() / "llm"
        self.task = make_task(spec, models, llm, self.device)
        self.executor: Executor = executor or SerialExecutor()
        self.failed: list[str] = []
        self.lost: list[str] = []
        self._facts: dict[str, Any] | None = None
        self._plan: list[GroupPlan] = []

    def run(self) -> list[dict[str, Any]]:
        """Run everything not already finished; returns the current spec's result rows. Raises
        :class:`~obliviate.study.executors.StudyIncompleteError` (after writing the tables of what
        finished) when the executor lost a group."""
        with self.store.lock():
            return self._run()

    def prepare(self) -> list[GroupPlan]:
        """Load the data, resolve every split and plan the groups (once); returns the plan."""
        if self._facts is None:
            self._facts = self.task.prepare(self.progress)
            self._plan = _restrict_to_kinds(self.task.plan(), getattr(self.spec, "methods", None) or [])
        return self._plan

    def group_by_key(self, key: str) -> GroupPlan:
        """The planned group of content key ``key`` (a Ray worker finds its group this way)."""
        for g in self.prepare():
            if g.key == key:
                return g
        raise KeyError(
            f"group {key} is not part of this study's plan (the worker's spec or code differs "
            "from the driver's: install the same obliviate version on every node)"
        )

    @property
    def out_dir(self) -> Path:
        return self.store.out_dir

    @staticmethod
    def on_worker(
        spec: StudySpec, out_dir: str, cache_dir: str | None, device: str | None, group_key: str, progress: Progress
    ) -> None:
        """Run the group ``group_key`` of ``spec`` in a worker process (a Ray task): the worker
        plans the same spec as the driver, reusing one runner per study (data loaded once)."""
        memo = (key_of({"spec": spec.raw, "scale": spec.scale}), out_dir, cache_dir, device)
        runner = _WORKER_RUNNERS.get(memo)
        if runner is None:
            runner = StudyRunner(spec, Path(out_dir), cache_dir=cache_dir, progress=progress, device=device)
            runner.prepare()
            _WORKER_RUNNERS.clear()  # one study's data per worker at a time
            _WORKER_RUNNERS[memo] = runner
        runner.set_progress(progress)
        group = runner.group_by_key(group_key)
        import torch

        progress.stage(
            f"{group.label}: on worker pid {os.getpid()} ({socket.gethostname()}), {torch.get_num_threads()} thread(s)"
        )
        runner.run_group(group)

    def set_progress(self, progress: Progress) -> None:
        self.progress = progress
        self.store.say = progress.stage

    def _run(self) -> list[dict[str, Any]]:
        spec, say = self.spec, self.progress.stage
        t_start = time.perf_counter()
        plan = self.prepare()
        facts = self._facts or {}
        seen: dict[str, str] = {}
        for g in plan:
            for key, what in [(g.key, f"group {g.label}")] + [(u.key, f"{u.label} on {g.label}") for u in g.units]:
                if key in seen:
                    raise ValueError(
                        f"the study asks for the same run twice: {what} is {seen[key]} again "
                        "(same model, data, request, seed and config); remove one"
                    )
                seen[key] = what
        write_json_atomic(
            self.store.out_dir / "study.json",
            {
                "name": spec.name,
                "scale": spec.scale,
                "description": spec.description,
                "task": spec.task,
                "scale_note": spec.scale_note,
                "spec": spec.raw,
                "environment": environment_info(),
                "device": str(self.device),
                "paper": spec.paper,
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                **facts,
                "plan": _plan_json(plan),
            },
        )
        moved = self.store.retire([u.key for g in plan for u in g.units], [g.key for g in plan])
        if moved:
            say(
                f"{len(moved)} record(s) are not part of this spec (another config, seed, method or code "
                f"version) and were moved to {self.store.superseded_dir}: {', '.join(moved[:6])}"
                + (" ..." if len(moved) > 6 else "")
            )
        self.lost = self.executor.run_groups(self, plan)
        records = self.store.runs([u.key for g in plan for u in g.units])
        self.task.finish(records, self.store.out_dir)
        rows = [r for rec in records for r in record_rows(rec, spec.name, spec.scale)]
        self.store.write_tables(rows)
        self.failed = [
            f"{r['method']} ({r['model']}, {r['request']}, seed {r['seed']}): {r['error']['message']}"
            for r in records
            if r.get("status") == "failed"
        ]
        say(
            f"study {spec.name} finished in {time.perf_counter() - t_start:.1f}s"
            + (f"; {len(self.failed)} run(s) FAILED — see the report" if self.failed else "")
        )
        if self.lost:
            raise StudyIncompleteError(self.lost)
        return rows

    def group_done(self, group: GroupPlan) -> bool:
        """The group record exists and every unit has its record or is not applicable: ``run_group``
        opens nothing (the Ray executor runs such a group in the driver)."""
        if self.store.load_group(group.key) is None:
            return False
        return all(u.not_applicable for u in self._pending(group))

    def _pending(self, group: GroupPlan) -> list[Unit]:
        pending = []
        for u in group.units:
            rec = self.store.load_run(u.key)
            if rec is None or (rec["status"] == "failed" and rec.get("error", {}).get("kind") != "non_finite"):
                pending.append(u)
            elif rec.get("method") != u.label:  # a label is a display name, not a key input: rename only
                self.store.save_run(u.key, {**rec, "method": u.label})
        return pending

    def run_group(self, group: GroupPlan) -> None:
        say = self.progress.stage
        have_group = self.store.load_group(group.key) is not None  # a damaged one is named and moved aside
        pending = self._pending(group)
        for u in [u for u in pending if u.not_applicable]:
            say(f"{group.label}: {u.label} not applicable, skipped: {u.not_applicable}")
            self.store.save_run(u.key, self._base_record(group, u, "not_applicable", reason=u.not_applicable))
        pending = [u for u in pending if not u.not_applicable]
        if not pending and have_group:
            say(f"{group.label}: all {len(group.units)} runs already finished, skipped")
            return
        try:
            opened = self.task.open(group, self.progress)
        except NonFiniteError as e:
            self._fail_all(group, pending, e.to_dict(), "a reference model of this group diverged")
            return
        except Exception as e:
            if isinstance(e, (KeyboardInterrupt, MemoryError)):
                raise
            self._fail_all(group, pending, _error_dict(e), "a reference model of this group could not be built")
            return
        try:
            self.store.save_group(group.key, {**opened.record, "inputs": group.inputs})
        except (ValueError, TypeError) as e:
            opened.close()
            self._fail_all(group, pending, _error_dict(e), "the group record could not be stored")
            return
        try:
            for i, u in enumerate(pending, 1):
                say(f"{group.label}: running {u.label} ({i}/{len(pending)})")
                try:
                    body = opened.run(u)
                    rec = self._base_record(group, u, "ok", **_finite_values(body))
                    _checked(rec, u.key)  # a record that cannot be stored is a failure too
                except NonFiniteError as e:
                    say(f"{group.label}: {u.label} FAILED: {e}")
                    rec = self._base_record(group, u, "failed", error={**e.to_dict(), "method": u.label})
                except Exception as e:
                    if isinstance(e, (KeyboardInterrupt, MemoryError)):
                        raise
                    say(f"{group.label}: {u.label} FAILED: {type(e).__name__}: {e}")
                    rec = self._base_record(group, u, "failed", error={**_error_dict(e), "method": u.label})
                self.store.save_run(u.key, rec)
        finally:
            opened.close()

    def _fail_all(self, group: GroupPlan, units: list[Unit], error: dict[str, Any], why: str) -> None:
        self.progress.stage(f"{group.label}: FAILED ({why}): {error['message']}")
        for u in units:
            self.store.save_run(
                u.key, self._base_record(group, u, "failed", error={**error, "method": u.label, "stage": why})
            )

    def _base_record(self, group: GroupPlan, unit: Unit, status: str, **body: Any) -> dict[str, Any]:
        return {
            "status": status,
            "task": self.spec.task,
            "model": group.model,
            "request": group.request,
            "seed": group.seed,
            "method": unit.label,
            "method_name": unit.method_name,
            "method_config": unit.method_config,
            "inputs": unit.inputs,
            "group_key": group.key,
            "values": {},
            "directions": {},
            **body,
        }


def _restrict_to_kinds(plan: list[GroupPlan], methods: list[Any]) -> list[GroupPlan]:
    """Mark the runs of a method entry with ``kinds`` not applicable on requests of other kinds."""
    restricted = {m.label: m for m in methods if getattr(m, "kinds", ())}
    for group in plan:
        kind = request_kind(group.request)
        for u in group.units:
            m = restricted.get(u.label)
            if m is not None and not m.applies_to(kind) and not u.not_applicable:
                u.not_applicable = f"the study runs {u.label} on {', '.join(m.kinds)} requests only; this one is {kind}"
    return plan


def _plan_json(plan: list[GroupPlan]) -> dict[str, Any]:
    return {
        "groups": [
            {
                "key": g.key,
                "model": g.model,
                "request": g.request,
                "seed": g.seed,
                "units": [{"key": u.key, "method": u.label, "method_name": u.method_name} for u in g.units],
            }
            for g in plan
        ]
    }


def _error_dict(e: BaseException) -> dict[str, Any]:
    return {
        "kind": "error",
        "type": type(e).__name__,
        "message": f"{type(e).__name__}: {e}",
        "traceback": traceback.format_exc(limit=6)[-3000:],
    }


def _finite_values(body: dict[str, Any]) -> dict[str, Any]:
    """Metric values that are NaN or ±inf (undefined on this split) are left out and listed."""
    values = body.get("values", {})
    bad = sorted(k for k, v in values.items() if not math.isfinite(float(v)))
    if bad:
        body = {
            **body,
            "values": {k: v for k, v in values.items() if k not in bad},
            "directions": {k: v for k, v in body.get("directions", {}).items() if k not in bad},
            "undefined_values": bad,
        }
    return body


__all__ = ["StudyRunner", "default_cache_dir", "make_task"]
