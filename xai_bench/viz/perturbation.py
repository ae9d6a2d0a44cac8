"""Figures of the perturbation benchmarks: pixel-perturbation and deletion/insertion curves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from xai_bench.viz.figures import save_figure


def pixel_perturbation_curves(
    rows: pd.DataFrame, path: Path, order: str, output: str, fill: str
) -> Path:
    """Mean relative output change per removed fraction, one line per method label."""
    means = rows[rows.metric == "output_change"].groupby(["method", "fraction"]).value.mean()
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    for method in dict.fromkeys(rows.method):
        curve = means.loc[method]
        ax.plot(100 * curve.index.to_numpy(), curve.to_numpy(), marker="o", label=method)
    ax.set_xscale("log")
    ax.set_xlabel(f"pixels removed, % ({order.replace('_', ' ')})")
    ax.set_ylabel(f"mean |Δ{output}| / |{output}|")
    ax.set_title(f"pixel perturbation, fill {fill}", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def deletion_insertion_curves(rows: pd.DataFrame, path: Path, score: str) -> Path:
    """Mean deletion and insertion curves, one line per method label with its mean AUC."""
    points = rows[rows.metric == "score"]
    means = points.groupby(["curve", "method", "n_pixels"]).value.mean()
    aucs = rows[rows.metric.str.endswith("_auc")].groupby(["metric", "method"]).value.mean()
    n_total = float(points.n_pixels.max())
    fig = Figure(figsize=(9, 3.5))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, curve in zip(axes, ("deletion", "insertion")):
        for method in dict.fromkeys(rows.method):
            m = means.loc[(curve, method)]
            auc = aucs.loc[(f"{curve}_auc", method)]
            ax.plot(m.index.to_numpy() / n_total, m.to_numpy(), label=f"{method} ({auc:.3f})")
        ax.set_title(curve, fontsize=9)
        ax.set_xlabel("fraction of pixels " + ("deleted" if curve == "deletion" else "inserted"))
        ax.legend(fontsize=7, title="method (AUC)", title_fontsize=7)
    axes[0].set_ylabel(f"mean {score} of the predicted class")
    return save_figure(fig, path)
