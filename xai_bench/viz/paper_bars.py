"""Bar figures of the papers, the paper's numbers as hatched bars beside ours (``make
figures``):

* ``pointing``: mean class accuracy per method, the original (``standard``) and POSAGG's
  restricted game side by side in each method's group (POSAGG Tables 1 and 3, TorchRay's EBP
  table), one panel per subset (``all``, ``difficult``) and model/dataset; the centre baseline
  dashed;
* ``efficiency``: a time and a memory panel (Group-CAM, OPPSD, PruneGrad cost claims);
* ``bars``: one panel per metric, methods as groups, one bar per value of a varying condition
  (class sensitivity, POSAGG; input invariance per shift, UNREL; any other benchmark).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from matplotlib.figure import Figure

from xai_bench.viz.paper_data import ExperimentData
from xai_bench.viz.paper_match import (
    conditions,
    matches,
    our_mean,
    paper_value,
    relative,
    same,
)
from xai_bench.viz.paper_plots import OURS, PAPER, colors, legend, panels, plot_bars
from xai_bench.viz.paper_points import label_for, panel_points, panel_title, select, varying

CENTER = "center"  # the pointing game's centre baseline: a dashed line, not a group
BAR_COLUMNS = ["group", "series", "y", "source"]


def bar_rows(
    data: ExperimentData, rows: pd.DataFrame, metric: str, series: str | None, point: dict
) -> pd.DataFrame:
    """Our mean of ``metric`` per method (and ``series`` value) at ``point``, each followed by
    the paper's number where ``reported.values`` gives one."""
    mine = select(rows[rows["metric"] == metric], point)
    keys = ["method", series] if series else ["method"]
    labels = set(rows["method"])
    out = []
    for key, part in mine.groupby(keys, sort=False):
        method, value = key[0], key[1] if series else metric
        where = {**point, series: value} if series else dict(point)
        where.update({"benchmark": part["benchmark"].iloc[0]})
        out.append(
            {"group": method, "series": str(value), "y": part["value"].mean(), "source": OURS}
        )
        config = str(part["method_config"].iloc[0])
        found = paper_value(data.paper, str(method), metric, where, labels, config)
        if found is not None:
            out.append({"group": method, "series": str(value), "y": found, "source": PAPER})
    for row in data.paper.to_dict("records"):  # a multiple of another method's: in our unit
        base = relative(row)
        if base is None or row["metric"] != metric or series:
            continue
        ref = our_mean(mine, base, metric)
        if ref is not None:
            group = label_for(str(row["method"]), rows)
            out.append({"group": group, "series": metric, "y": float(row["value"]) * ref,
                        "source": PAPER})  # fmt: skip
    for row in data.paper.to_dict("records"):  # the paper's methods that we did not run
        label = label_for(str(row["method"]), rows)
        if (
            row["metric"] != metric
            or label in labels
            or relative(row) is not None
            or not matches(row, row["method"], metric, point)
        ):
            continue
        value = _series_of(row, rows, series) if series else metric
        if value is not None:
            out.append({"group": label, "series": value, "y": float(row["value"]), "source": PAPER})
    return pd.DataFrame(out, columns=BAR_COLUMNS)


def _series_of(row: dict, rows: pd.DataFrame, series: str) -> str | None:
    """The ``series`` value of a paper row: its own, else the one value that our rows have
    where they share another of its conditions (``benchmark: pointing_game_restricted`` ->
    ``variant: restricted``)."""
    conds = conditions(row)
    if series in conds:
        return str(conds[series])
    for key, value in conds.items():
        if key in rows:
            found = set(rows.loc[rows[key].map(lambda v, value=value: same(v, value)), series])
            if len(found) == 1:
                return str(found.pop())
    return None


def draw_bars(
    data: ExperimentData,
    rows: pd.DataFrame,
    metrics: Sequence[str],
    series: str | None,
    cols: Sequence[str],
    log: bool | None = None,
) -> Figure:
    """One panel per metric and value of ``cols``; groups: methods (without :data:`CENTER`,
    drawn as a dashed line per series); one colour per series (one for all where there is one
    series); ``log`` ``None``: log scale where the values span more than a factor 100."""
    specs = [(m, p) for m in metrics for p in panel_points(rows[rows["metric"] == m], cols)]
    tables = [(m, p, bar_rows(data, rows, m, series, p)) for m, p in specs]
    names = [str(s) for _, _, bars in tables for s in bars["series"]] if series else []
    palette = colors(names) if len(set(names)) > 1 else {}  # by series; else one colour
    fig, axes = panels(len(specs), ncols=2 if len(specs) > 1 else 1, size=(5.5, 3.4))
    any_paper = False
    for ax, (metric, point, bars) in zip(axes, tables):
        center = bars[bars["group"] == CENTER]
        bars = bars[bars["group"] != CENTER]
        scale = log
        if scale is None:
            y = bars["y"][bars["y"] > 0]
            scale = bool(len(y)) and float(y.max()) > 100 * float(y.min())
        plot_bars(ax, bars, palette or dict.fromkeys(bars["group"], "tab:blue"), scale)
        for s, y in zip(center["series"], center["y"]):
            color = palette.get(s, "k")
            ax.axhline(float(y), ls="--", lw=0.9, color=color, gid=f"baseline:{CENTER}:{s}")
        ax.set_title(panel_title(metric, point, data.factors.get(metric, 1.0)), fontsize=8)
        any_paper |= bool((bars["source"] == PAPER).any())
    legend(fig, palette, any_paper, kind="bar")
    return fig


def pointing_figure(data: ExperimentData, rows: pd.DataFrame) -> Figure:
    """``pointing``: see the module doc (metric ``figure.metrics``, default ``accuracy``)."""
    rows = rows[rows["class"].astype(str) == "all"] if "class" in rows else rows
    series = "variant" if "variant" in rows else "benchmark"
    metrics = data.figure.get("metrics") or ["accuracy"]
    cols = varying(rows, exclude=[series, "benchmark", "variant"])
    return draw_bars(data, rows, [str(m) for m in metrics], series, cols, log=False)


def efficiency_figure(data: ExperimentData, rows: pd.DataFrame) -> Figure:
    """``efficiency``: a time and a memory panel (``figure.metrics`` to choose), the paper's
    metrics first where it names a time or a memory metric."""
    given = data.figure.get("metrics")
    if given:
        metrics = [str(m) for m in given]
    else:
        named = list(dict.fromkeys(data.paper["metric"]))
        time = [m for m in named if any(w in m for w in ("time", "second"))] or [
            "seconds_per_image"
        ]
        memory = [m for m in named if any(w in m for w in ("memory", "mb"))] or [
            "peak_mb_per_image"
        ]
        metrics = [time[0], memory[0]]
    metrics = [m for m in metrics if m in set(rows["metric"])] or list(
        dict.fromkeys(rows["metric"])
    )[:2]
    return draw_bars(data, rows, metrics, None, varying(rows))


def bars_figure(data: ExperimentData, rows: pd.DataFrame) -> Figure:
    """``bars``: one panel per metric (``figure.metrics``; default: the paper's and our
    headline metrics, else all), bars per value of ``figure.series`` or of the first varying
    condition (e.g. ``shift``)."""
    present = list(dict.fromkeys(rows["metric"]))
    given = data.figure.get("metrics")
    wanted = [str(m) for m in given] if given else [*data.paper["metric"], *data.headline()]
    metrics = [m for m in dict.fromkeys(wanted) if m in present] or present
    cols = varying(rows[rows["metric"].isin(metrics)])
    series = data.figure.get("series") or (
        cols[0] if cols and cols[0] not in ("model", "dataset") else None
    )
    cols = [c for c in cols if c != series]
    return draw_bars(data, rows, metrics, series, cols)
