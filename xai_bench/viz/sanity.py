"""Figures of the similarity benchmarks: sanity-check stage curves, class-sensitivity bars.

Both draw the records of :func:`xai_bench.metrics.aggregate.aggregate` (``mean``/``std`` over
finite values; a group without any is drawn as a gap).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from xai_bench.viz.figures import save_figure


def _num(v: float | None) -> float:
    return math.nan if v is None else float(v)


def stage_curves(
    aggregates: Sequence[Mapping[str, Any]],
    method: str,
    stages: Sequence[str],
    metrics: Sequence[str],
    title: str,
    path: Path,
) -> Path:
    """Mean similarity (band: +- std) to the trained model's maps per stage, one line per
    metric, for the method labelled ``method``."""
    fig = Figure(figsize=(max(4.0, 0.55 * len(stages) + 2), 3.4))
    ax = fig.subplots()
    xs = range(len(stages))
    for metric in metrics:
        by_stage = {
            r["stage"]: r for r in aggregates if r["method"] == method and r["metric"] == metric
        }
        mean = [_num(by_stage.get(s, {}).get("mean")) for s in stages]
        std = [_num(by_stage.get(s, {}).get("std")) for s in stages]
        ax.plot(xs, mean, marker="o", ms=3, label=metric)
        lo = [m - s for m, s in zip(mean, std, strict=True)]
        hi = [m + s for m, s in zip(mean, std, strict=True)]
        ax.fill_between(xs, lo, hi, alpha=0.15)
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xticks(list(xs), list(stages), rotation=45, ha="right", fontsize=7)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("similarity to the trained model's maps")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def class_sensitivity_bars(
    aggregates: Sequence[Mapping[str, Any]], metrics: Sequence[str], path: Path
) -> Path:
    """Horizontal bars (error: std) of the max/min-class similarity per method label, one bar
    per metric."""
    methods = list(dict.fromkeys(r["method"] for r in aggregates))
    fig = Figure(figsize=(6, 0.35 * max(len(methods), 1) * len(metrics) + 1.2))
    ax = fig.subplots()
    height = 0.8 / len(metrics)
    for j, metric in enumerate(metrics):
        rec = {r["method"]: r for r in aggregates if r["metric"] == metric}
        ys = [i + j * height for i in range(len(methods))]
        means = [_num(rec.get(m, {}).get("mean")) for m in methods]
        stds = [_num(rec.get(m, {}).get("std")) for m in methods]
        ax.barh(ys, means, height=height, xerr=stds, label=metric, capsize=2)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(methods))], methods, fontsize=8)
    ax.axvline(0.0, color="k", lw=0.6)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("Spearman(max-class map, min-class map); lower = more class-sensitive")
    ax.invert_yaxis()
    ax.legend(fontsize=7)
    return save_figure(fig, path)
