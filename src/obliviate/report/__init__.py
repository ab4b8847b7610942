"""Reports: tables, plots, Markdown and self-contained HTML rendering of study results."""

from .render import aggregate, render_report

__all__ = ["aggregate", "render_report"]
