"""ROAR curves: test accuracy after retraining against the share of pixels removed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from xai_bench.viz.figures import save_figure
from xai_bench.viz.style import display_name, method_colors, method_configs

BASELINE = "random"  # the method config drawn dashed: the chance baseline


def roar_curves(
    table: pd.DataFrame,
    path: str | Path,
    base_acc: float | None = None,
    identity: Mapping[str, Any] | None = None,
    formats: Sequence[str] | None = None,
) -> Path:
    """One line per method (display names, the methods' colours; mean over retraining seeds,
    error bars = ± 1 std when there are several); the ``random`` baseline dashed; ``base_acc``
    (the unmodified model) as a dotted reference line. The title gives n (seeds per point)."""
    acc = table[table["metric"] == "test_acc"]
    configs = method_configs(acc)
    palette = method_colors(dict.fromkeys(acc["method"]), configs)
    fig = Figure(figsize=(5.6, 4.0), layout="constrained")
    ax = fig.subplots()
    seeds: set[int] = set()
    for method, rows in acc.groupby("method", sort=False):
        stats = rows.groupby("fraction")["value"].agg(["mean", "std", "count"]).sort_index()
        seeds.update(int(c) for c in stats["count"])
        err = stats["std"].where(stats["count"] > 1).fillna(0.0)
        style = "--" if _is_baseline(str(method), rows) else "-"
        ax.errorbar(
            stats.index * 100, stats["mean"], yerr=err, fmt=style, marker="o", ms=3,
            capsize=2, label=display_name(str(method), configs.get(str(method))),
            color=palette[str(method)],
        )  # fmt: skip
    if base_acc is not None:
        ax.axhline(base_acc, color="gray", ls=":", lw=1, label="unmodified model")
    ax.set_xlabel("pixels removed (%)")
    ax.set_ylabel("test accuracy after retraining")
    ns = sorted(seeds)
    n = f"{ns[0]}" + (f"-{ns[-1]}" if len(ns) > 1 else "") if ns else "0"
    note = f"point: mean over n = {n} retraining seed(s)" + ("; bar: ± 1 std" if max(ns or [0]) > 1
                                                             else "")  # fmt: skip
    head = f"ROAR: {identity.get('model')} on {identity.get('dataset')}\n" if identity else ""
    ax.set_title(head + note, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save_figure(fig, path, formats)


def _is_baseline(method: str, rows: pd.DataFrame) -> bool:
    """A ``random`` method label, or any label of the ``random`` method config."""
    if method == BASELINE:
        return True
    return "method_config" in rows and bool((rows["method_config"] == BASELINE).any())
