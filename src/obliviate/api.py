"""The Python door onto the library, above every layer (the CLI is the other door)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .report import render_report
from .study import StudyRunner, StudySpec


def run_study(spec: StudySpec, out_dir: str | Path, **kw: Any) -> list[dict[str, Any]]:
    """Run a vision or LLM study into ``out_dir`` (skipping runs whose key is already done) and
    render its report; returns the current spec's result rows. ``kw``: ``cache_dir``,
    ``progress``, ``device`` (see :class:`~obliviate.study.StudyRunner`)."""
    rows = StudyRunner(spec, out_dir, **kw).run()
    render_report(out_dir)
    return rows


__all__ = ["run_study"]
