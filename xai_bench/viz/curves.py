"""Training curves drawn from tidy result tables (Group-CAM fine-tuning, retraining)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from xai_bench.viz.figures import save_figure
from xai_bench.viz.style import display_name, method_colors, method_configs


def accuracy_curves(
    table: pd.DataFrame,
    path: str | Path,
    metric: str = "val_acc",
    title: str = "",
    formats: Sequence[str] | None = None,
) -> Path:
    """One line per ``method`` (e.g. a fine-tuning variant; display names, fixed colours):
    ``metric`` against ``epoch``.

    Args:
        table: tidy rows with ``method``, ``metric``, ``epoch`` and ``value`` columns; several
            rows per (method, epoch), e.g. seeds, are averaged (the title gives their n).
        path: where the PNG goes (written atomically).
        metric: the rows drawn; accuracies in [0, 1] are shown in percent.
        title: the axes title.
        formats: the files written (see :func:`~xai_bench.viz.figures.save_figure`).
    """
    rows = table[table.metric == metric]
    grouped = rows.groupby(["method", "epoch"]).value
    means, counts = grouped.mean(), grouped.count()
    percent = metric.endswith("acc")
    configs = method_configs(rows)
    labels = list(dict.fromkeys(rows.method))
    palette = method_colors(labels, configs)
    fig = Figure(figsize=(5.2, 3.8), layout="constrained")
    ax = fig.subplots()
    for method in labels:
        curve = means.loc[method]
        y = curve.to_numpy() * (100 if percent else 1)
        ax.plot(curve.index.to_numpy(), y, marker="o", color=palette[method],
                label=display_name(str(method), configs.get(str(method))))  # fmt: skip
    ax.set_xlabel("epoch (0 = starting model)")
    ax.set_ylabel(f"{metric} (%)" if percent else metric)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ns = sorted({int(c) for c in counts})
    n = (f"n = {ns[0]}" + (f"-{ns[-1]}" if len(ns) > 1 else "")) if ns else "n = 0"
    note = "point: one run" if ns == [1] else f"point: mean over {n} runs"
    ax.set_title(f"{title}\n{note}" if title else note, fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, path, formats)
