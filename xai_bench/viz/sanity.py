"""Figures of the similarity benchmarks: sanity-check stage curves, class-sensitivity bars.

Both draw the records of :func:`xai_bench.metrics.aggregate.aggregate` (``mean``/``std``/``n``
over finite values; a group without any is drawn as a gap) and say what n is and what the band
or error bar means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from xai_bench.viz.figures import save_figure
from xai_bench.viz.style import display_name


def _num(v: float | None) -> float:
    return math.nan if v is None else float(v)


def n_text(records: Sequence[Mapping[str, Any]], unit: str = "images") -> str:
    """``n = 16 images`` (``n = 12-16 images`` where groups differ) from the records' ``n``."""
    ns = sorted({int(r["n"]) for r in records if r.get("n") is not None})
    if not ns:
        return "n unknown"
    return f"n = {ns[0]} {unit}" if len(ns) == 1 else f"n = {ns[0]}-{ns[-1]} {unit}"


def stage_curves(
    aggregates: Sequence[Mapping[str, Any]],
    method: str,
    stages: Sequence[str],
    metrics: Sequence[str],
    title: str,
    path: Path,
    formats: Sequence[str] | None = None,
) -> Path:
    """Mean similarity (band: ± 1 std over images) to the trained model's maps per stage, one
    line per metric, for the method labelled ``method`` (a title starting with the label shows
    its display name)."""
    fig = Figure(figsize=(max(4.4, 0.55 * len(stages) + 2), 3.8), layout="constrained")
    ax = fig.subplots()
    xs = range(len(stages))
    mine = [r for r in aggregates if r["method"] == method and r["metric"] in metrics]
    for metric in metrics:
        by_stage = {r["stage"]: r for r in mine if r["metric"] == metric}
        mean = [_num(by_stage.get(s, {}).get("mean")) for s in stages]
        std = [_num(by_stage.get(s, {}).get("std")) for s in stages]
        ax.plot(xs, mean, marker="o", ms=3, label=metric)
        lo = [m - s for m, s in zip(mean, std, strict=True)]
        hi = [m + s for m, s in zip(mean, std, strict=True)]
        ax.fill_between(xs, lo, hi, alpha=0.15)
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xticks(list(xs), list(stages), rotation=45, ha="right", fontsize=7)
    ax.set_ylim(-1.05, 1.05)
    if "independent" in title:
        ax.set_xlabel("randomised block (each alone; 'original' = trained model)", fontsize=8)
    else:
        ax.set_xlabel("randomised down to block (cascading from the output; 'original' = "
                      "trained model)", fontsize=8)  # fmt: skip
    ax.set_ylabel("similarity to the trained model's maps", fontsize=8)
    if title.startswith(f"{method}:"):
        title = display_name(method) + title[len(method) :]
    ax.set_title(f"{title}\nline: mean over {n_text(mine)}; band: ± 1 std", fontsize=8)
    ax.legend(fontsize=7)
    return save_figure(fig, path, formats)


def class_sensitivity_bars(
    aggregates: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    path: Path,
    formats: Sequence[str] | None = None,
) -> Path:
    """Horizontal bars (error bar: ± 1 std over images) of the max/min-class similarity per
    method (display names), one bar per metric."""
    methods = list(dict.fromkeys(r["method"] for r in aggregates))
    fig = Figure(figsize=(6.4, 0.35 * max(len(methods), 1) * len(metrics) + 1.6),
                 layout="constrained")  # fmt: skip
    ax = fig.subplots()
    height = 0.8 / len(metrics)
    for j, metric in enumerate(metrics):
        rec = {r["method"]: r for r in aggregates if r["metric"] == metric}
        ys = [i + j * height for i in range(len(methods))]
        means = [_num(rec.get(m, {}).get("mean")) for m in methods]
        stds = [_num(rec.get(m, {}).get("std")) for m in methods]
        ax.barh(ys, means, height=height, xerr=stds, label=metric, capsize=2)
    ticks = [i + 0.4 - height / 2 for i in range(len(methods))]
    ax.set_yticks(ticks, [display_name(m) for m in methods], fontsize=8)
    ax.axvline(0.0, color="k", lw=0.6)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("Spearman(max-class map, min-class map); lower = more class-sensitive",
                  fontsize=8)  # fmt: skip
    shown = [r for r in aggregates if r["metric"] in metrics]
    ax.set_title(f"bar: mean over {n_text(shown)}; error bar: ± 1 std", fontsize=8)
    ax.invert_yaxis()
    ax.legend(fontsize=7)
    return save_figure(fig, path, formats)
