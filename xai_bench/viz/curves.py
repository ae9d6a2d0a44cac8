"""Training curves drawn from tidy result tables (Group-CAM fine-tuning, retraining)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from xai_bench.viz.figures import save_figure


def accuracy_curves(
    table: pd.DataFrame,
    path: str | Path,
    metric: str = "val_acc",
    title: str = "",
) -> Path:
    """One line per ``method`` (e.g. a fine-tuning variant): ``metric`` against ``epoch``.

    Args:
        table: tidy rows with ``method``, ``metric``, ``epoch`` and ``value`` columns; several
            rows per (method, epoch), e.g. seeds, are averaged.
        path: where the PNG goes (written atomically).
        metric: the rows drawn; accuracies in [0, 1] are shown in percent.
        title: the axes title.
    """
    rows = table[table.metric == metric]
    means = rows.groupby(["method", "epoch"]).value.mean()
    percent = metric.endswith("acc")
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    for method in dict.fromkeys(rows.method):
        curve = means.loc[method]
        y = curve.to_numpy() * (100 if percent else 1)
        ax.plot(curve.index.to_numpy(), y, marker="o", label=str(method))
    ax.set_xlabel("epoch (0 = starting model)")
    ax.set_ylabel(f"{metric} (%)" if percent else metric)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
