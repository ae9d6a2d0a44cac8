"""Figures of the input-invariance benchmark (Kindermans et al., UNREL Fig. 2/3 and 6)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from torch import Tensor

from xai_bench.metrics.invariance import Shift
from xai_bench.viz.figures import save_figure
from xai_bench.viz.style import SIGNED_CMAP, display_name


def _blank(fig: Figure, rows: int, cols: int) -> Any:
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return axes


def _show(ax: Any, m: Tensor, signed: bool, lim: float | None = None) -> None:
    """A map ``[C, H, W]`` summed over channels: diverging colours around 0, or gray."""
    img = m.double().sum(0).numpy()
    if not signed:
        ax.imshow(img, cmap="gray")
        return
    lim = lim or float(abs(img).max()) or 1.0
    ax.imshow(img, cmap=SIGNED_CMAP, vmin=-lim, vmax=lim)


def shift_figure(
    x: Tensor, m2: Tensor, rows: list[tuple[str, Any, float | None]], shift: str, path: Path
) -> Path:
    """UNREL Fig. 2/3: inputs of f1 and f2, then per method the maps of both networks
    side by side per image (shared symmetric colour scale per pair; ``None``: n/a)."""
    n = x.shape[0]
    fig = Figure(figsize=(2.3 * n + 1.2, 1.1 * (len(rows) + 1) + 0.4), layout="constrained")
    axes = _blank(fig, len(rows) + 1, 2 * n)
    for j in range(n):
        for k, (title, img) in enumerate((("f1: x", x[j]), ("f2: x + m2", x[j] + m2))):
            _show(axes[0, 2 * j + k], img, signed=False)
            axes[0, 2 * j + k].set_title(title, fontsize=7)
    axes[0, 0].set_ylabel("input", fontsize=7)
    for i, (label, pair, rel) in enumerate(rows, start=1):
        note = "" if rel is None or not math.isfinite(rel) else f"\nrel {rel:.1e}"
        axes[i, 0].set_ylabel(display_name(label).replace("(", "\n(") + note, fontsize=6)
        for j in range(n):
            if pair is None:
                axes[i, 2 * j].text(0.5, 0.5, "n/a", ha="center", va="center", fontsize=7)
                continue
            a, b = pair[0][j], pair[1][j]
            lim = max(float(a.sum(0).abs().max()), float(b.sum(0).abs().max())) or 1.0
            _show(axes[i, 2 * j], a, True, lim)
            _show(axes[i, 2 * j + 1], b, True, lim)
    fig.suptitle(
        f"input invariance, shift: {shift} (left f1, right f2 of each pair)\n"
        "red: positive, blue: negative, one symmetric colour scale per pair; rel: relative "
        "difference of the maps",
        fontsize=8,
    )
    return save_figure(fig, path)


def crafted_figure(shift: Shift, path: Path) -> Path:
    """UNREL Fig. 6: the crafted shift makes gradient x input of f2 show the target image."""
    info, gi = shift.info, shift.info["gi"]
    panels = [
        ("x_hat", info["x_hat"], False),
        ("target s_hat", info["s_hat"], False),
        ("m2 (clipped)", shift.m2, True),
        ("x_hat + m2", info["x_hat"] + shift.m2, False),
        ("GxI f1", gi["pearson_target_original"], True),
        ("GxI f2, raw m2", gi["pearson_target_unclipped"], True),
        ("GxI f2, clipped m2", gi["pearson_target"], True),
    ]
    fig = Figure(figsize=(1.6 * len(panels), 2.0))
    axes = _blank(fig, 1, len(panels))
    for ax, (title, m, signed) in zip(axes[0], panels):
        _show(ax, m.detach().cpu(), signed)
        ax.set_title(title, fontsize=7)
    return save_figure(fig, path)


def invariance_figures(
    x: Tensor,
    shifts: Sequence[Shift],
    labels: Sequence[str],
    maps: Mapping[tuple[str, str], Any],
    rows: pd.DataFrame,
    run_dir: Path,
) -> list[Path]:
    """One :func:`shift_figure` per shift (``input_invariance_<shift>.png``) and, for the
    crafted shift, :func:`crafted_figure` (``input_invariance_crafted_target.png``).

    Args:
        x: the images shown ``[n, C, H, W]``.
        shifts: the shifts, in the run's order.
        labels: method labels, one figure row each.
        maps: ``(label, shift) -> (maps of f1, maps of f2)`` of the first batch.
        rows: the result rows (``rel_diff`` per method and shift is written beside its label).
        run_dir: where the figures go.
    """
    rel = rows[rows.metric == "rel_diff"]
    rel_diff = {(m, s): v for m, s, v in zip(rel.method, rel["shift"], rel.value)}
    paths = []
    for shift in shifts:
        panels = [(m, maps.get((m, shift.name)), rel_diff.get((m, shift.name))) for m in labels]
        path = run_dir / f"input_invariance_{shift.name}.png"
        paths.append(shift_figure(x, shift.m2.cpu(), panels, shift.name, path))
        if shift.name == "crafted":
            paths.append(crafted_figure(shift, run_dir / "input_invariance_crafted_target.png"))
    return paths
