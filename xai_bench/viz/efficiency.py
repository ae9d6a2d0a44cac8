"""Figure of the efficiency benchmark: absolute time (and peak memory, where measured) per image
of each method, and its ratio to the forward+backward floor."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from xai_bench.viz.figures import save_figure
from xai_bench.viz.style import display_name, method_colors, method_configs


def time_ratios(
    table: pd.DataFrame,
    path: Path,
    repeats: int | None = None,
    formats: Sequence[str] | None = None,
) -> Path:
    """Horizontal bars per method label (display names, the methods' colours): milliseconds
    per image, the ratio to forward + backward (log scale) and, where any was measured (CUDA),
    peak MB per image. The title gives n: the batch, the device and the timed ``repeats``
    (each bar is the median over the repeats)."""
    metrics = {
        "seconds_per_image": ("ms per image (median)", 1000.0),
        "time_ratio_to_fwd_bwd": ("time / (forward + backward)", 1.0),
        "peak_mb_per_image": ("peak MB per image", 1.0),
    }
    values = table[table.metric.isin(list(metrics))]
    memory = values[values.metric == "peak_mb_per_image"]
    if not (pd.to_numeric(memory.value, errors="coerce") > 0).any():
        metrics.pop("peak_mb_per_image")  # not measured (CPU)
    labels = list(dict.fromkeys(values.method))
    configs = method_configs(values)
    palette = method_colors(labels, configs)
    names = [display_name(m, configs.get(m)) for m in labels]
    fig = Figure(figsize=(4 + 3 * len(metrics), 0.3 * len(labels) + 1.6), layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    for ax, (metric, (xlabel, factor)) in zip(axes, metrics.items()):
        rows = values[values.metric == metric].set_index("method")["value"]
        x = [float(rows.get(m, float("nan"))) * factor for m in labels]
        ax.barh(names, x, color=[palette[m] for m in labels])
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        if metric == "time_ratio_to_fwd_bwd":
            ax.axvline(1.0, color="k", lw=0.8)
        ax.grid(axis="x", alpha=0.3, which="both")
    axes[0].invert_yaxis()
    batch = _first(table, "batch_size")
    device = _first(table, "device")
    n = f"n: a batch of {batch} images" if batch else "n unknown"
    n += f" on {device}" if device else ""
    n += f", median of {repeats} timed calls" if repeats else ", median of the timed calls"
    if "peak_mb_per_image" not in metrics:
        n += "; memory not measured (CPU)"
    fig.suptitle(f"efficiency ({n})", fontsize=9)
    return save_figure(fig, path, formats)


def _first(table: pd.DataFrame, column: str) -> str:
    if column not in table:
        return ""
    values = table[column].dropna()
    if not len(values):
        return ""
    value = values.iloc[0]
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
