"""The Python door onto the library, above every layer (the CLI is the other door)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .report import render_report
from .study import StudyRunner, StudySpec
from .study.tune import TuneResult, TuneSettings


def run_study(spec: StudySpec, out_dir: str | Path, **kw: Any) -> list[dict[str, Any]]:
    """Run a vision or LLM study into ``out_dir`` (skipping runs whose key is already done) and
    render its report; returns the current spec's result rows. ``kw``: ``cache_dir``,
    ``progress``, ``device``, ``executor`` (see :class:`~obliviate.study.StudyRunner` and
    :mod:`obliviate.study.executors`)."""
    rows = StudyRunner(spec, out_dir, **kw).run()
    render_report(out_dir)
    return rows


def tune_method(spec: StudySpec, method: str, out_dir: str | Path, *, settings: TuneSettings | None = None,
                **kw: Any) -> TuneResult:
    """Search ``method``'s declared hyperparameter ranges on ``spec``'s ``tune:`` split with Ray Tune
    and Optuna; writes ``out_dir/best.yaml`` for the held-out evaluation (:func:`obliviate.study.tune.tune_method`;
    ``kw``: ``params``, ``kinds``, ``cache_dir``, ``device``, ``progress``)."""
    from .study.tune import tune_method as _tune

    return _tune(spec, method, out_dir, settings=settings, **kw)


__all__ = ["run_study", "tune_method"]
