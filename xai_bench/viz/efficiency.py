"""Figure of the efficiency benchmark: time of each method over the forward+backward floor."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from xai_bench.viz.figures import save_figure


def time_ratios(table: pd.DataFrame, path: Path) -> Path:
    """Horizontal bars of ``time_ratio_to_fwd_bwd`` per method label (log scale)."""
    ratios = table[table.metric == "time_ratio_to_fwd_bwd"]
    fig = Figure(figsize=(6, 0.3 * len(ratios) + 1.2))
    ax = fig.subplots()
    ax.barh(ratios.method, ratios.value)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("time / (forward + backward)")
    ax.invert_yaxis()
    return save_figure(fig, path)
