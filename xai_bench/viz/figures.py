"""Figures drawn from tensors and result tables (matplotlib's object API, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from xai_bench.utils.io import atomic_write


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save ``fig`` atomically as PNG."""
    return atomic_write(
        Path(path), lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight")
    )


def sample_grid(
    images: Tensor,
    titles: Sequence[str],
    boxes: Sequence[Tensor] | None,
    path: str | Path,
    cols: int = 8,
) -> Path:
    """Images ``[N, C, H, W]`` in [0, 1] with their titles and object boxes (x0, y0, x1, y1)."""
    n = images.shape[0]
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(1.6 * cols, 1.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i].detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
        ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray")
        ax.set_title(titles[i], fontsize=7)
        for box in [] if boxes is None else boxes[i].tolist():
            x0, y0, x1, y1 = box
            ax.add_patch(
                Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="red", lw=1)
            )
    return save_figure(fig, path)


def map_grid(
    images: Tensor,
    maps: Sequence[Tensor | None],
    row_titles: Sequence[str],
    col_titles: Sequence[str],
    path: str | Path,
    cmap: str = "viridis",
) -> Path:
    """Images on the first row, then one row of maps ``[N, 1, H, W]`` per method (``None``: n/a)."""
    n = images.shape[0]
    rows = len(maps) + 1
    fig = Figure(figsize=(1.5 * (n + 1), 1.5 * rows))
    axes = fig.subplots(rows, n + 1, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    axes[0, 0].text(0.5, 0.5, "image", ha="center", va="center", fontsize=8)
    for j in range(n):
        img = images[j].detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
        axes[0, j + 1].imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray")
        axes[0, j + 1].set_title(col_titles[j], fontsize=7)
    for i, (m, title) in enumerate(zip(maps, row_titles), start=1):
        axes[i, 0].text(0.5, 0.5, title, ha="center", va="center", fontsize=7, wrap=True)
        for j in range(n):
            if m is None:
                axes[i, j + 1].text(0.5, 0.5, "n/a", ha="center", va="center", fontsize=7)
                continue
            axes[i, j + 1].imshow(m[j, 0].detach().cpu().float().numpy(), cmap=cmap)
    return save_figure(fig, path)


def metric_bars(rows: pd.DataFrame, metric: str, path: str | Path) -> Path:
    """Mean ± std of one metric per method label, as horizontal bars (labels in first-seen
    order)."""
    values = rows[rows.metric == metric]
    stats = values.groupby("method", sort=False).value.agg(["mean", "std"]).fillna(0.0)
    fig = Figure(figsize=(5, 0.35 * len(stats) + 1.2))
    ax = fig.subplots()
    ax.barh(list(stats.index), stats["mean"], xerr=stats["std"], capsize=2)
    ax.set_xlabel(metric)
    ax.invert_yaxis()
    return save_figure(fig, path)
