"""Figures for reports (matplotlib, Agg backend); each function returns PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np


def _plt() -> Any:  # matplotlib.pyplot
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'obliviate[report]'") from e
    return plt


def _png(fig: Any) -> bytes:
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
                            ax.text(
                                j,
                                i,
                                fmt.format(v),
                                ha="center",
                                va="center",
                                fontsize=6,
                                color="white" if v > 0.6 * (mat.max() if col == 0 else 1.0) else "black",
                            )
    fig.tight_layout()
    return _png(fig)


# Kelly's colours of maximum contrast (without white and black): one per method, up to 20.
# The light ones (readable only as markers, not as label text) come last.
PALETTE = (
    "#0067A5",
    "#F38400",
    "#008856",
    "#BE0032",
    "#875692",
    "#882D17",
    "#8DB600",
    "#604E97",
    "#B3446C",
    "#E25822",
    "#654522",
    "#2B3D26",
    "#E68FAC",
    "#F6A600",
    "#848482",
    "#C2B280",
    "#F99379",
    "#A1CAF1",
    "#F3C300",
    "#DCD300",
)
REFERENCE_COLOURS = {"retrain": "#000000", "original": "#7f7f7f", "retrained": "#000000", "pretrained": "#bbbbbb"}
MARKERS = ("o", "s", "^", "D", "v", "P")


def method_colours(methods: Sequence[str]) -> dict[str, tuple[str, str]]:
    """``method -> (colour, marker)``: references black/grey, every other method its own colour
    (in the given order; past 20 methods the colours repeat with another marker)."""
    out: dict[str, tuple[str, str]] = {}
    i = 0
    for m in methods:
        if m in REFERENCE_COLOURS:
            out[m] = (REFERENCE_COLOURS[m], "*")
            continue
        out[m] = (PALETTE[i % len(PALETTE)], MARKERS[(i // len(PALETTE)) % len(MARKERS)])
        i += 1
    return out


def _place_labels(ax: Any, fig: Any, items: Sequence[tuple[str, float, float, str]], fontsize: float = 8) -> None:
    """Annotate points (name, x, y, colour) so that no two labels overlap each other or a marker:
    each label takes the first of 16 offsets around its point whose box is free."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    taken = []
    for _, x, y, _ in items:  # every marker is an obstacle (≈ 8 px box)
        px, py = ax.transData.transform((x, y))
        taken.append((px - 5, py - 5, px + 5, py + 5))
    offsets = [
        (6, 4),
        (6, -10),
        (-6, 4),
        (-6, -10),
        (0, 9),
        (0, -14),
        (14, 0),
        (-14, 0),
        (12, 14),
        (12, -20),
        (-12, 14),
        (-12, -20),
        (22, 6),
        (-22, 6),
        (22, -14),
        (-22, -14),
    ]
    for name, x, y, colour in items:
        best = None
        for dx, dy in offsets:
            ha = "left" if dx > 0 else ("right" if dx < 0 else "center")
            t = ax.annotate(
                name,
                (x, y),
                textcoords="offset points",
                xytext=(dx, dy),
                fontsize=fontsize,
                color=colour,
                ha=ha,
                va="bottom",
            )
            bb = t.get_window_extent(renderer)
            box = (bb.x0 - 1, bb.y0 - 1, bb.x1 + 1, bb.y1 + 1)
            clash = any(not (box[2] < o[0] or o[2] < box[0] or box[3] < o[1] or o[3] < box[1]) for o in taken)
            if not clash:
                best = (t, box)
                break
            t.remove()
        if best is None:  # crowded: the first offset, with a leader line
            t = ax.annotate(
                name,
                (x, y),
                textcoords="offset points",
                xytext=(28, 18),
                fontsize=fontsize,
                color=colour,
                arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.6},
            )
            bb = t.get_window_extent(renderer)
            best = (t, (bb.x0, bb.y0, bb.x1, bb.y1))
        taken.append(best[1])


def class_diff_heatmap(
    rows: Sequence[tuple[str, Sequence[float | None]]],
    reference: Sequence[float | None],
    class_names: Sequence[str],
    forgotten: Sequence[int] = (),
) -> bytes:
    """Methods × classes: test accuracy minus the retrained model's, in points (blue above, red
    below); forgotten classes framed. ``rows`` and ``reference`` hold per-class accuracies in [0, 1]."""
    plt = _plt()
    k, n = len(class_names), len(rows)
    ref = np.array([np.nan if v is None else 100 * v for v in reference], dtype=float)
    mat = np.array([[np.nan if v is None else 100 * v for v in vals] for _, vals in rows], dtype=float) - ref
    fig, ax = plt.subplots(figsize=(min(14.0, 1.6 + 0.62 * k), 0.9 + 0.36 * n))
    lim = 20.0
    im = ax.imshow(np.clip(mat, -lim, lim), cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for i in range(n):
        for j in range(k):
            v = mat[i, j]
            if np.isfinite(v) and k <= 30:
                ax.text(
                    j,
                    i,
                    f"{v:+.0f}" if abs(v) >= 0.5 else "0",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if abs(v) > 0.6 * lim else "black",
                )
    for c in forgotten:
        ax.add_patch(plt.Rectangle((c - 0.5, -0.5), 1, n, fill=False, lw=2, ec="#222"))
    labels = [f"{name}\n(forgotten)" if j in forgotten else name for j, name in enumerate(class_names)]
    ax.set_xticks(
        range(k),
        labels if k <= 30 else [""] * k,
        fontsize=7,
        rotation=0 if k <= 12 else 60,
        ha="center" if k <= 12 else "right",
    )
    ax.set_yticks(range(n), [name for name, _ in rows], fontsize=8)
    ax.xaxis.set_ticks_position("top")
    cb = fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    cb.set_label(f"points vs retrained (clipped at ±{lim:g})", fontsize=7)
    cb.ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _png(fig)


def gap_vs_time(
    points: Sequence[tuple[str, float, float, float, float]],
    colours: dict[str, tuple[str, str]],
    retrain_seconds: float | None = None,
    original_gap: float | None = None,
    floor: float | None = None,
    target_gap: float | None = None,
    target_speedup: float | None = None,
) -> bytes:
    """Avg. gap against wall time (log) for the methods ``(name, s, s_std, gap, gap_std)``; the
    references as lines (retraining's time, the original's gap, the noise floor) and the target
    region (gap ≤ target at ≥ the target speed-up) shaded."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    xs = [p[1] for p in points] + ([retrain_seconds] if retrain_seconds else [])
    xmin, xmax = min(xs) / 2.5, max(xs) * 2.5
    if retrain_seconds and target_speedup:
        xmin = min(xmin, retrain_seconds / target_speedup / 2)
    if retrain_seconds and target_gap is not None and target_speedup:
        ax.fill_between(
            [xmin, retrain_seconds / target_speedup],
            1e-6,
            target_gap,
            color="#cfe8cf",
            zorder=0,
            label=f"target: gap ≤ {target_gap:.2f} at ≥ {target_speedup:g}×",
        )
    if retrain_seconds:
        ax.axvline(retrain_seconds, color="black", lw=1, ls="-", label=f"retrain: {retrain_seconds:.2f} s")
    if original_gap is not None:
        ax.axhline(original_gap, color="#7f7f7f", lw=1, ls="--", label=f"original (did nothing): {original_gap:.2f}")
    if floor is not None:
        ax.axhline(floor, color="#d9a400", lw=1, ls=":", label=f"noise floor: {floor:.2f}")
    items = []
    for name, x, xs_, y, ys in points:
        c, mk = colours.get(name, ("#333333", "o"))
        ax.errorbar(x, y, xerr=xs_ or None, yerr=ys or None, fmt=mk, ms=6, capsize=2, color=c, ecolor=c, elinewidth=0.8)
        items.append((name, x, y, c))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(xmin, xmax)
    lows = [p[3] for p in points if p[3] > 0] + [v for v in (floor, target_gap) if v]
    highs = [p[3] + p[4] for p in points] + ([original_gap] if original_gap is not None else [])
    ax.set_ylim(max(min(lows + [1.0]) / 2.0, 1e-3), max(highs + [1.0]) * 1.6)
    ax.set_xlabel("wall time of the method (s, log scale)")
    ax.set_ylabel("Avg. gap to the retrained model (pts, log) — lower is better")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", framealpha=0.9)
    _place_labels(ax, fig, items)
    fig.tight_layout()
    return _png(fig)


def scatter_with_errors(
    points: Sequence[tuple[str, float, float, float, float]],
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx: bool = False,
    mark: str | None = None,
    colours: dict[str, tuple[str, str]] | None = None,
) -> bytes:
    """Labelled points (name, x, x_std, y, y_std), one colour each; ``mark`` names a reference
    point drawn as a star. Labels never overlap (:func:`_place_labels`)."""
    plt = _plt()
    colours = colours or method_colours([p[0] for p in points])
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    items = []
    for name, x, xs, y, ys in points:
        c, mk = colours.get(name, ("#333333", "o"))
        star = name == mark
        ax.errorbar(
            x,
            y,
            xerr=xs or None,
            yerr=ys or None,
            fmt="*" if star else mk,
            ms=12 if star else 6,
            capsize=2,
            color=c,
            ecolor=c,
            elinewidth=0.8,
        )
        items.append((name, x, y, c))
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    _place_labels(ax, fig, items)
    fig.tight_layout()
    return _png(fig)
