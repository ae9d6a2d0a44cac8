"""Figures of the perturbation benchmarks: pixel-perturbation and deletion/insertion curves.

One line per method (display name, the method's fixed colour), the mean over the images; the
title says how many images (n).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from xai_bench.viz.figures import save_figure
from xai_bench.viz.style import display_name, method_colors, method_configs


def _n_images(rows: pd.DataFrame, by: Sequence[str]) -> str:
    """``n = 16 images`` (a range where groups differ): finite values per group ``by``."""
    values = pd.to_numeric(rows["value"], errors="coerce")
    counts = sorted(set(values.notna().groupby([rows[b] for b in by]).sum().astype(int)))
    if not counts:
        return "n = 0 images"
    return f"n = {counts[0]}" + (f"-{counts[-1]}" if len(counts) > 1 else "") + " images"


def pixel_perturbation_curves(
    rows: pd.DataFrame,
    path: Path,
    order: str,
    output: str,
    fill: str,
    formats: Sequence[str] | None = None,
) -> Path:
    """Mean relative output change per removed fraction, one line per method label."""
    changes = rows[rows.metric == "output_change"]
    means = changes.groupby(["method", "fraction"]).value.mean()
    configs = method_configs(rows)
    labels = list(dict.fromkeys(rows.method))
    palette = method_colors(labels, configs)
    fig = Figure(figsize=(5.4, 3.8), layout="constrained")
    ax = fig.subplots()
    for method in labels:
        if method not in means.index.get_level_values(0):
            continue
        curve = means.loc[method]
        ax.plot(100 * curve.index.to_numpy(), curve.to_numpy(), marker="o", color=palette[method],
                label=display_name(method, configs.get(method)))  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel(f"pixels removed, % ({order.replace('_', ' ')})")
    ax.set_ylabel(f"mean |Δ{output}| / |{output}|")
    n = _n_images(changes, ["method", "fraction"]) if len(changes) else "n = 0 images"
    ax.set_title(f"pixel perturbation, fill {fill}; line: mean over {n}", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, path, formats)


def deletion_insertion_curves(
    rows: pd.DataFrame, path: Path, score: str, formats: Sequence[str] | None = None
) -> Path:
    """Mean deletion and insertion curves, one line per method label with its mean AUC."""
    points = rows[rows.metric == "score"]
    means = points.groupby(["curve", "method", "n_pixels"]).value.mean()
    per_image = rows[rows.metric.str.endswith("_auc")]
    aucs = per_image.groupby(["metric", "method"]).value.mean()
    n_total = float(points.n_pixels.max())
    configs = method_configs(rows)
    labels = list(dict.fromkeys(rows.method))
    palette = method_colors(labels, configs)
    fig = Figure(figsize=(9.4, 3.9), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, curve in zip(axes, ("deletion", "insertion")):
        for method in labels:
            if (curve, method) not in means.index.droplevel(2):
                continue
            m = means.loc[(curve, method)]
            auc = aucs.get((f"{curve}_auc", method), float("nan"))
            name = display_name(method, configs.get(method))
            ax.plot(m.index.to_numpy() / n_total, m.to_numpy(), color=palette[method],
                    label=f"{name} ({auc:.3f})")  # fmt: skip
        ax.set_title(curve, fontsize=9)
        ax.set_xlabel("fraction of pixels " + ("deleted" if curve == "deletion" else "inserted"))
        ax.legend(fontsize=7, title="method (mean AUC)", title_fontsize=7)
    axes[0].set_ylabel(f"mean {score} of the predicted class")
    n = _n_images(per_image, ["metric", "method"]) if len(per_image) else "n unknown"
    fig.suptitle(f"deletion / insertion; line: mean over {n}", fontsize=9)
    return save_figure(fig, path, formats)
