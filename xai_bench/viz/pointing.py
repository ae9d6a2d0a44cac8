"""Figures of the pointing game: mean class accuracy per method beside the centre baseline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from xai_bench.viz.figures import save_figure
from xai_bench.viz.style import display_name, method_colors, method_configs


def accuracy_bars(
    rows: pd.DataFrame,
    path: Path,
    tolerance: float,
    title: str,
    baseline: str = "center",
    formats: Sequence[str] | None = None,
) -> Path:
    """Horizontal bars of ``accuracy`` per method (display names, the methods' colours); the
    ``baseline`` method, if present, is a dashed vertical line instead of a bar. The title gives
    n, the (image, class) pairs scored (the rows' ``n`` column)."""
    acc = rows[rows.metric == "accuracy"]
    configs = method_configs(acc)
    fig = Figure(figsize=(6, 0.3 * len(acc) + 1.5), layout="constrained")
    ax = fig.subplots()
    methods = acc[acc.method != baseline]
    palette = method_colors(methods.method, configs)
    names = [display_name(m, configs.get(m)) for m in methods.method]
    ax.barh(names, methods.value, color=[palette[m] for m in methods.method])
    center = acc[acc.method == baseline]
    if len(center):
        label = display_name(baseline)
        ax.axvline(float(center.value.iloc[0]), color="k", ls="--", lw=0.8, label=label)
        ax.legend(loc="lower right", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"mean class accuracy (tolerance {tolerance:g} px)")
    counts = pd.to_numeric(acc["n"], errors="coerce").dropna() if "n" in acc else []
    ns = sorted({int(v) for v in counts})
    unit = "(image, class) pairs"
    n = f"n = {ns[0]} {unit}" if len(ns) == 1 else (f"n = {ns[0]}-{ns[-1]} {unit}" if ns else "")
    ax.set_title(f"{title}; {n}" if n else title, fontsize=9)
    ax.invert_yaxis()
    return save_figure(fig, path, formats)
