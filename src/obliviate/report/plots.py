"""Figures for reports (matplotlib, Agg backend); each function returns PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np


def _plt():  # type: ignore[no-untyped-def]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'obliviate[report]'") from e
    return plt


def _png(fig) -> bytes:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def confusion_grid(panels: Sequence[tuple[str, np.ndarray]], class_names: Sequence[str]) -> bytes:
    """One row per model: raw counts (left) and row-normalised (right) confusion matrices."""
    plt = _plt()
    n, k = len(panels), len(class_names)
    annotate = k <= 12
    fig, axes = plt.subplots(n, 2, figsize=(2 * (3.2 + 0.25 * k), (2.9 + 0.22 * k) * n), squeeze=False)
    for row, (title, cm) in enumerate(panels):
        cm = np.asarray(cm, dtype=float)
        counts = cm.sum(axis=1, keepdims=True)
        norm = np.divide(cm, counts, out=np.zeros_like(cm), where=counts > 0)
        for col, (mat, label, fmt) in enumerate(((cm, "counts", "{:.0f}"), (norm, "normalised", "{:.2f}"))):
            ax = axes[row][col]
            ax.imshow(mat, cmap="Blues", vmin=0, vmax=mat.max() if col == 0 else 1.0)
            ax.set_title(f"{title} ({label})", fontsize=9)
            ticks = range(k) if k <= 20 else []
            ax.set_xticks(list(ticks), [class_names[i] for i in ticks], rotation=60, fontsize=7, ha="right")
            ax.set_yticks(list(ticks), [class_names[i] for i in ticks], fontsize=7)
            ax.set_xlabel("predicted", fontsize=8)
            ax.set_ylabel("true", fontsize=8)
            if annotate:
                for i in range(k):
                    for j in range(k):
                        v = mat[i, j]
                        if v:
                            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=6,
                                    color="white" if v > 0.6 * (mat.max() if col == 0 else 1.0) else "black")
    fig.tight_layout()
    return _png(fig)


def per_class_bars(series: Sequence[tuple[str, Sequence[float | None]]], class_names: Sequence[str],
                   highlight: Sequence[int] = ()) -> bytes:
    """Grouped bars of test accuracy per class, one colour per model; forgotten classes shaded."""
    plt = _plt()
    k, m = len(class_names), len(series)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.55 * k * max(1, m) / 2.5), 3.6))
    width = 0.8 / max(m, 1)
    x = np.arange(k)
    for c in highlight:
        ax.axvspan(c - 0.45, c + 0.45, color="#fde2e2", zorder=0)
    for i, (name, vals) in enumerate(series):
        v = [np.nan if a is None else 100 * a for a in vals]
        ax.bar(x - 0.4 + width * (i + 0.5), v, width, label=name)
    ax.set_xticks(x, list(class_names), rotation=45 if k <= 20 else 90, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, ncol=min(m, 5), loc="lower left")
    fig.tight_layout()
    return _png(fig)


def scatter_with_errors(points: Sequence[tuple[str, float, float, float, float]], xlabel: str, ylabel: str,
                        title: str = "", logx: bool = False, mark: str | None = None) -> bytes:
    """Labelled points (name, x, x_std, y, y_std); ``mark`` names a reference point drawn as a star."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, x, xs, y, ys in points:
        star = name == mark
        ax.errorbar(x, y, xerr=xs or None, yerr=ys or None, fmt="*" if star else "o", ms=12 if star else 6, capsize=2)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)
