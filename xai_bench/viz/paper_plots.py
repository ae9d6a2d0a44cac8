"""Drawing primitives of the paper figures (``make figures``): line panels and grouped bars
with the paper's numbers beside ours, on matplotlib's object API (no display, no torch).

Ours are solid lines with dots and plain bars; the paper's are dashed lines with crosses (a
dashed horizontal line where the paper gives one number for the whole curve) and hatched bars
of the same colour. Every drawn artist carries a ``gid`` ``ours:<method>`` or
``paper:<method>`` (bars: ``<source>:<group>:<series>``), which the tests count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from xai_bench.utils.io import atomic_write
from xai_bench.viz.formats import check_formats, current_formats
from xai_bench.viz.style import display_name, fixed_color

OURS, PAPER = "ours", "paper"
PALETTE = "tab10"


def colors(names: Sequence[str], palette: str = PALETTE) -> dict[str, Any]:
    """A colour per name, in the given order: a method config's fixed colour
    (:data:`~xai_bench.viz.style.COLORS`, as in every figure of a run) for a name that is one
    (``gradcam``, ``gradcam(layer=x)``), else ``palette`` (tab20 beyond 10 names)."""
    from matplotlib import colormaps

    unique = list(dict.fromkeys(names))
    cmap = colormaps[palette if len(unique) <= 10 else "tab20"]
    out: dict[str, Any] = {}
    for i, name in enumerate(unique):
        own = fixed_color(str(name))
        out[name] = own if own is not None and own not in out.values() else cmap(i % cmap.N)
    return out


def panels(n: int, ncols: int | None = None, size: tuple[float, float] = (4.2, 3.2)) -> tuple[
    Figure, list[Axes]
]:  # fmt: skip
    """A figure with ``n`` panels on a grid of at most ``ncols`` (default 4) columns."""
    ncols = max(1, min(n, ncols or 4))
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(size[0] * ncols + 1.8, size[1] * nrows + 0.4), layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False)
    axes = list(grid.flat)
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def plot_lines(
    ax: Axes,
    points: pd.DataFrame,
    palette: Mapping[str, Any],
    logx: bool = False,
    xticks: Mapping[float, str] | None = None,
) -> None:
    """One line per method: ``points`` has ``method``, ``x``, ``y`` and ``source`` (``ours``
    or ``paper``); a paper point without ``x`` is a dashed horizontal line."""
    for method in dict.fromkeys(points["method"]):
        rows = points[points["method"] == method]
        color = palette.get(method)
        ours = rows[rows["source"] == OURS].sort_values("x")
        if len(ours):
            dots = "o" if len(ours) <= 30 else None  # long curves (deletion steps): no dots
            ax.plot(ours["x"], ours["y"], marker=dots, ms=3, lw=1.3, color=color,
                    gid=f"{OURS}:{method}")  # fmt: skip
        paper = rows[rows["source"] == PAPER]
        curve = paper[paper["x"].notna()].sort_values("x")
        if len(curve):
            ax.plot(curve["x"], curve["y"], ls="--", marker="x", ms=5, lw=1, color=color,
                    gid=f"{PAPER}:{method}")  # fmt: skip
        for y in paper.loc[paper["x"].isna(), "y"]:
            ax.axhline(float(y), ls="--", lw=0.9, color=color, gid=f"{PAPER}:{method}")
    if logx:
        ax.set_xscale("log")
    if xticks:
        ax.set_xticks(list(xticks), list(xticks.values()), rotation=35, ha="right", fontsize=7)
    ax.grid(alpha=0.3)


def plot_bars(
    ax: Axes,
    bars: pd.DataFrame,
    palette: Mapping[str, Any],
    log: bool = False,
) -> list[str]:
    """Grouped vertical bars: ``bars`` has ``group`` (an x tick, e.g. a method), ``series``
    (bars within a group, e.g. original/restricted), ``y`` and ``source``; each series' paper
    bar (hatched) stands right of ours. Colours: ``palette`` by series, else by group. Returns
    the groups in their order."""
    groups = list(dict.fromkeys(bars["group"]))
    series = list(dict.fromkeys(bars["series"]))
    has_paper = {s: bool(((bars["series"] == s) & (bars["source"] == PAPER)).any()) for s in series}
    slots = [(s, src) for s in series for src in (OURS, PAPER) if src == OURS or has_paper[s]]
    width = 0.8 / len(slots)
    for k, (name, source) in enumerate(slots):
        for g, group in enumerate(groups):
            sel = bars[
                (bars["group"] == group) & (bars["series"] == name) & (bars["source"] == source)
            ]
            if sel.empty or not math.isfinite(float(sel["y"].iloc[0])):
                continue
            color = palette.get(name, palette.get(group))
            x = g - 0.4 + width * (k + 0.5)
            style = {"hatch": "///", "alpha": 0.45, "edgecolor": color} if source == PAPER else {}
            y = float(sel["y"].iloc[0])
            (patch,) = ax.bar(x, y, width, color=color, **style)
            patch.set_gid(f"{source}:{group}:{name}")
            if source == PAPER and (y > 0 or not log):  # a tick on top: a paper's 0 shows
                ax.hlines(y, x - width / 2, x + width / 2, color=color, lw=1.5)
    ax.set_xticks(range(len(groups)), groups, rotation=35, ha="right", fontsize=7)
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)
    return groups


def legend(fig: Figure, palette: Mapping[str, Any], paper: bool, kind: str = "line") -> None:
    """One legend for the figure: a colour per name, and what ours and the paper's look like."""
    handles: list[Any] = [
        Line2D([], [], color=c, lw=2) if kind == "line" else Patch(color=c)
        for c in palette.values()
    ]
    labels = [display_name(str(name)) for name in palette]
    if paper and kind == "line":
        handles += [
            Line2D([], [], color="k", marker="o", ms=3),
            Line2D([], [], color="k", ls="--", marker="x"),
        ]
        labels += ["ours", "paper"]
    elif paper:
        handles += [Patch(color="0.5"), Patch(facecolor="0.5", alpha=0.45, hatch="///")]
        labels += ["ours", "paper"]
    fig.legend(handles, labels, loc="outside right upper", fontsize=7)


def save(fig: Figure, path: str | Path, formats: Sequence[str] | None = None) -> Path:
    """Save ``fig`` atomically as PNG (and in the other ``formats`` beside it: ``None``, those of
    the enclosing :func:`~xai_bench.viz.formats.figure_formats` block); return the first."""
    path, written = Path(path), []
    for fmt in check_formats(formats) if formats is not None else current_formats():
        target = path.with_suffix(f".{fmt}")
        written.append(atomic_write(target, lambda p, f=fmt: fig.savefig(p, format=f, dpi=110)))
    return written[0]
