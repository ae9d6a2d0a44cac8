"""Figures of the pointing game: mean class accuracy per method beside the centre baseline."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from xai_bench.viz.figures import save_figure


def accuracy_bars(
    rows: pd.DataFrame, path: Path, tolerance: float, title: str, baseline: str = "center"
) -> Path:
    """Horizontal bars of ``accuracy`` per method label; the ``baseline`` method, if present,
    is a dashed vertical line instead of a bar."""
    acc = rows[rows.metric == "accuracy"]
    fig = Figure(figsize=(6, 0.3 * len(acc) + 1.2))
    ax = fig.subplots()
    methods = acc[acc.method != baseline]
    ax.barh(methods.method, methods.value)
    center = acc[acc.method == baseline]
    if len(center):
        ax.axvline(float(center.value.iloc[0]), color="k", ls="--", lw=0.8, label=baseline)
        ax.legend(loc="lower right", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"mean class accuracy (tolerance {tolerance:g} px)")
    ax.set_title(title, fontsize=9)
    ax.invert_yaxis()
    return save_figure(fig, path)
