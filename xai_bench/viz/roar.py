"""ROAR curves: test accuracy after retraining against the share of pixels removed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from xai_bench.viz.figures import save_figure

BASELINE = "random"  # the method config drawn dashed: the chance baseline


def roar_curves(
    table: pd.DataFrame,
    path: str | Path,
    base_acc: float | None = None,
    identity: Mapping[str, Any] | None = None,
) -> Path:
    """One line per method label (mean over retraining seeds, bars = std when there are
    several); the ``random`` baseline dashed; ``base_acc`` (the unmodified model) as a dotted
    reference line."""
    acc = table[table["metric"] == "test_acc"]
    fig = Figure(figsize=(5.2, 3.6))
    ax = fig.subplots()
    for method, rows in acc.groupby("method", sort=False):
        stats = rows.groupby("fraction")["value"].agg(["mean", "std", "count"]).sort_index()
        err = stats["std"].where(stats["count"] > 1).fillna(0.0)
        style = "--" if _is_baseline(str(method), rows) else "-"
        ax.errorbar(
            stats.index * 100, stats["mean"], yerr=err, fmt=style, marker="o", ms=3,
            capsize=2, label=str(method),
        )  # fmt: skip
    if base_acc is not None:
        ax.axhline(base_acc, color="gray", ls=":", lw=1, label="unmodified model")
    ax.set_xlabel("pixels removed (%)")
    ax.set_ylabel("test accuracy after retraining")
    if identity:
        ax.set_title(f"ROAR: {identity.get('model')} on {identity.get('dataset')}", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def _is_baseline(method: str, rows: pd.DataFrame) -> bool:
    """A ``random`` method label, or any label of the ``random`` method config."""
    if method == BASELINE:
        return True
    return "method_config" in rows and bool((rows["method_config"] == BASELINE).any())
