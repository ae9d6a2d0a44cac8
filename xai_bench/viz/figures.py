"""Figures drawn from tensors and result tables (matplotlib's object API, no display needed).

Every figure function takes ``formats``: the files written beside each other, e.g.
``("png", "pdf")`` writes ``x.png`` and ``x.pdf``. ``None`` uses the formats of the enclosing
:func:`figure_formats` block (the run's ``figure_formats``), PNG outside one.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from xai_bench.utils.io import atomic_write
from xai_bench.viz.formats import check_formats, current_formats, figure_formats  # noqa: F401
from xai_bench.viz.style import (
    OVERLAY_CMAP,
    display_name,
    map_limits,
    method_colors,
    method_configs,
)

# Dates left out of the vector files, so that the same figure gives the same bytes.
_METADATA: dict[str, dict[str, Any]] = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}


def save_figure(fig: Figure, path: str | Path, formats: Sequence[str] | None = None) -> Path:
    """Save ``fig`` atomically in each of ``formats`` (``path`` with each suffix); return the
    file of the first format (``path`` itself for PNG)."""
    path = Path(path)
    written = []
    for fmt in check_formats(formats) if formats is not None else current_formats():
        target = path if path.suffix == f".{fmt}" else path.with_suffix(f".{fmt}")
        meta = _METADATA.get(fmt)
        written.append(atomic_write(target, lambda p, f=fmt, m=meta: fig.savefig(
            p, format=f, dpi=110, bbox_inches="tight", metadata=m)))  # fmt: skip
    return written[0]


def _rgb(image: Tensor) -> np.ndarray:
    """``[C, H, W]`` in [0, 1] as ``[H, W, 3]`` (grey images repeated)."""
    img = image.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()
    return np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img[..., :3]


def _wrap(text: str, width: int = 22) -> str:
    return "\n".join(textwrap.fill(line, width) for line in str(text).split("\n"))


def sample_grid(
    images: Tensor,
    titles: Sequence[str],
    boxes: Sequence[Tensor] | None,
    path: str | Path,
    cols: int = 8,
    box_labels: Sequence[Sequence[str]] | None = None,
    correct: Sequence[bool] | None = None,
    formats: Sequence[str] | None = None,
) -> Path:
    """Images ``[N, C, H, W]`` in [0, 1] with their titles (wrapped) and object boxes
    (x0, y0, x1, y1) named by ``box_labels``; a sample whose ``correct`` is False (a wrong
    prediction) gets a red frame and a red title."""
    n = images.shape[0]
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    wrapped = [_wrap(t) for t in titles]
    lines = max((t.count("\n") + 1 for t in wrapped), default=1)
    fig = Figure(figsize=(1.9 * cols, (1.8 + 0.16 * lines) * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.set_axis_off()
            continue
        ax.imshow(_rgb(images[i]))
        wrong = correct is not None and not correct[i]
        ax.set_title(wrapped[i], fontsize=7, color="tab:red" if wrong else "black")
        for spine in ax.spines.values():
            spine.set_visible(wrong)
            spine.set(color="tab:red", linewidth=2.5)
        names = [] if box_labels is None else list(box_labels[i])
        for k, box in enumerate([] if boxes is None else boxes[i].tolist()):
            x0, y0, x1, y1 = box
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                   color="yellow", lw=1))  # fmt: skip
            if k < len(names):
                tag = {"facecolor": "yellow", "pad": 0.5, "lw": 0}
                ax.text(x0 - 0.5, y0 - 0.5, names[k], fontsize=5, va="bottom", bbox=tag)
    notes = ["title: true class(es) → prediction", "yellow boxes: labelled objects"]
    if correct is not None:
        notes.append(f"red frame: wrong prediction ({sum(not c for c in correct)} of {n})")
    fig.suptitle("; ".join(notes), fontsize=8)
    return save_figure(fig, path, formats)


def _overlay(image: np.ndarray, values: np.ndarray, cmap: Any, norm: Normalize, alpha: float):
    """pytorch-grad-cam's ``show_cam_on_image``: the colour-mapped map alpha-blended on the
    de-normalised image (both ``[H, W, 3]`` in [0, 1])."""
    heat = cmap(norm(values))[..., :3]
    return np.clip((1 - alpha) * image + alpha * heat, 0, 1)


def _resized(m: Tensor, size: tuple[int, int]) -> np.ndarray:
    """A map ``[1, h, w]`` as ``[H, W]`` numpy (bilinear when the size differs)."""
    m = m.detach().cpu().float()
    if tuple(m.shape[-2:]) != size:
        m = torch.nn.functional.interpolate(m[None], size=size, mode="bilinear")[0]
    return m[0].numpy()


def map_grid(
    images: Tensor,
    maps: Sequence[Tensor | None],
    row_titles: Sequence[str],
    col_titles: Sequence[str],
    path: str | Path,
    cmap: str | None = None,
    overlay: bool = False,
    alpha: float = 0.5,
    configs: Mapping[str, str] | None = None,
    formats: Sequence[str] | None = None,
) -> Path:
    """Images on the first row, then one row of maps ``[N, 1, H, W]`` per method (``None``:
    n/a) on one colour scale per row, with its colour bar.

    A row with a negative value is signed: a diverging colour map on ``(-m, m)``, so zero has
    the same colour in every panel; other rows a sequential map on ``(0, max)``
    (:func:`~xai_bench.viz.style.map_limits`; ``cmap`` replaces the colour map). ``overlay``
    blends each map on its image (``alpha``: the map's weight; unsigned maps in ``jet``).
    Row titles are the methods' display names (``configs``: label -> method config).
    """
    n = images.shape[0]
    rows = len(maps) + 1
    height = 1.5 * rows + 0.6
    fig = Figure(figsize=(1.5 * n + 2.2, height))
    grid = fig.add_gridspec(rows, n + 2, width_ratios=[1.3, *[1] * n, 0.07], wspace=0.08,
                            hspace=0.12, top=1 - 0.55 / height, bottom=0.1 / height)  # fmt: skip
    axes = np.array(
        [[fig.add_subplot(grid[i, j]) for j in range(n + 2)] for i in range(rows)], dtype=object
    )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    axes[0, 0].text(0.5, 0.5, "image", ha="center", va="center", fontsize=8)
    axes[0, -1].set_axis_off()
    pictures = [_rgb(images[j]) for j in range(n)]
    for j in range(n):
        axes[0, j + 1].imshow(pictures[j])
        axes[0, j + 1].set_title(col_titles[j], fontsize=7)
    for i, (m, title) in enumerate(zip(maps, row_titles), start=1):
        name = display_name(title, (configs or {}).get(title))
        axes[i, 0].text(0.5, 0.5, _wrap(name, 16), ha="center", va="center", fontsize=7)
        if m is None:
            axes[i, -1].set_axis_off()
            for j in range(n):
                axes[i, j + 1].text(0.5, 0.5, "n/a", ha="center", va="center", fontsize=7)
            continue
        _map_row(fig, axes[i, 1:], m, pictures, cmap, alpha if overlay else None)
    fig.suptitle(
        "one colour scale per row; signed maps (a negative value): diverging, symmetric about 0"
        + ("; maps blended on the image" if overlay else ""),
        fontsize=7,
        y=1 - 0.08 / height,
        va="top",
    )
    return save_figure(fig, path, formats)


def _map_row(
    fig: Figure,
    axes: Sequence[Any],
    m: Tensor,
    pictures: Sequence[np.ndarray],
    cmap: str | None,
    alpha: float | None,
) -> None:
    """One method's maps ``[N, 1, H, W]`` on ``axes[:N]`` and their colour bar on
    ``axes[-1]``, on one scale (:func:`~xai_bench.viz.style.map_limits`); ``alpha``: blended
    on ``pictures`` with that weight (unsigned maps in the overlay colour map)."""
    values = m[:, 0].detach().cpu().float().numpy()
    name, vmin, vmax = map_limits(values)
    signed = vmin < 0
    if cmap is not None:
        name = cmap
    elif alpha is not None and not signed:
        name = OVERLAY_CMAP
    color_map, norm = colormaps[name], Normalize(vmin, vmax)
    for j, picture in enumerate(pictures):
        if alpha is not None:
            blend = _overlay(picture, _resized(m[j], picture.shape[:2]), color_map, norm, alpha)
            axes[j].imshow(blend)
        else:
            axes[j].imshow(values[j], cmap=color_map, norm=norm)
    bar = fig.colorbar(ScalarMappable(norm, color_map), cax=axes[-1])
    bar.ax.tick_params(labelsize=5)
    ticks = [vmin, 0.0, vmax] if signed else [vmin, vmax]
    bar.set_ticks(ticks, labels=[f"{t:.2g}" for t in ticks])


def metric_bars(
    rows: pd.DataFrame, metric: str, path: str | Path, formats: Sequence[str] | None = None
) -> Path:
    """Mean ± std of one metric per method label, as horizontal bars (labels in first-seen
    order, display names, the methods' colours; n per bar in the label)."""
    values = rows[rows.metric == metric]
    stats = values.groupby("method", sort=False).value.agg(["mean", "std", "count"])
    stats["std"] = stats["std"].fillna(0.0)
    configs = method_configs(values)
    palette = method_colors(stats.index, configs)
    fig = Figure(figsize=(5, 0.35 * len(stats) + 1.4))
    ax = fig.subplots()
    pairs = zip(stats.index, stats["count"])
    names = [f"{display_name(m, configs.get(m))} (n={c})" for m, c in pairs]
    ax.barh(names, stats["mean"], xerr=stats["std"], capsize=2,
            color=[palette[m] for m in stats.index])  # fmt: skip
    ax.set_xlabel(f"{metric} (mean; error bar: ± 1 std over n values)")
    ax.invert_yaxis()
    return save_figure(fig, path, formats)
