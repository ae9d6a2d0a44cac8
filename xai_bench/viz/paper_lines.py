"""Line figures of the papers, one panel per metric (and per condition that varies), methods as
lines, the paper's numbers dashed beside ours (``make figures``):

* ``sanity``: cascading-randomisation curves over the stages (OPPSD Fig. 2a, PruneGrad,
  POSAGG);
* ``roar``: test accuracy after retraining over the share of pixels removed, one panel per
  model x dataset (PruneGrad, OPPSD), with the unmodified model dotted;
* ``curves``: pixel perturbation / LeRF (OPPSD, PruneGrad), deletion/insertion curves and the
  fine-tuning curve (Group-CAM); metrics the paper reports as one number per method (e.g. AUCs)
  get one more panel of bars;
* ``curve_over_param``: a method parameter as x (Group-CAM's G and theta), one line per method
  config.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from xai_bench.viz.paper_data import ExperimentData, label_param, method_param
from xai_bench.viz.paper_match import conditions, same
from xai_bench.viz.paper_plots import PAPER, colors, legend, panels, plot_bars, plot_lines
from xai_bench.viz.paper_points import (
    condition_x,
    join,
    ours,
    panel_points,
    panel_title,
    paper,
    scalar_bars,
    select,
    split_groups,
    varying,
)


@dataclass(frozen=True)
class Curve:
    """What a curve benchmark draws: ``metrics`` over condition ``x`` (times ``scale``; divided
    by its largest value per panel with ``normalise``; on a log axis with ``logx`` where x spans
    a factor 30 or more); ``always``: panel columns even where they do not vary."""

    metrics: tuple[str, ...]
    x: str
    xlabel: str
    scale: float = 1.0
    logx: bool = False
    normalise: bool = False
    always: tuple[str, ...] = ()


CURVES = {
    "roar": Curve(
        ("test_acc",), "fraction", "pixels removed (%)", 100, always=("model", "dataset")
    ),
    "pixel_perturbation": Curve(("output_change",), "fraction", "pixels removed (%)", 100, True),
    "deletion_insertion": Curve(
        ("mean_score",), "n_pixels", "share of pixels deleted / inserted", normalise=True
    ),
    "groupcam_finetune": Curve(("val_acc",), "epoch", "epoch (0 = starting model)"),
}


def draw_lines(
    points: pd.DataFrame,
    xlabel: str,
    logx: bool = False,
    xticks: Mapping[float, str] | None = None,
    scalars: pd.DataFrame | None = None,
) -> tuple[Figure, dict[str, Axes]]:
    """One panel per ``panel`` of ``points`` (see :mod:`~xai_bench.viz.paper_points`), then one
    of bars for ``scalars`` (``group``, ``series``, ``y``, ``source``) if given."""
    names = list(dict.fromkeys(points["panel"]))
    extra = scalars is not None and len(scalars) > 0
    palette = colors([*points["method"], *([] if not extra else scalars["group"])])
    fig, axes = panels(len(names) + int(extra))
    by_panel = {}
    for ax, name in zip(axes, names):
        plot_lines(ax, points[points["panel"] == name], palette, logx, xticks)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel(xlabel, fontsize=8)
        by_panel[name] = ax
    if extra:
        assert scalars is not None
        several = scalars["series"].nunique() > 1
        shades = colors(list(scalars["series"]), "Dark2") if several else palette
        plot_bars(axes[-1], scalars, shades)
        axes[-1].set_title("one number per method, ours and the paper's", fontsize=8)
        if several:  # the metrics' colours differ from the methods' (the figure's legend)
            handles = [Patch(color=c) for c in shades.values()]
            axes[-1].legend(handles, list(shades), fontsize=6, loc="best")
    has_paper = bool((points["source"] == PAPER).any()) or extra
    legend(fig, {k: v for k, v in palette.items() if k in set(points["method"])}, has_paper)
    return fig, by_panel


def _metrics(data: ExperimentData, rows: pd.DataFrame, default: Sequence[str]) -> list[str]:
    given = data.figure.get("metrics")
    present = list(dict.fromkeys(rows["metric"]))
    if given:
        return [str(m) for m in ([given] if isinstance(given, str) else given) if m in present]
    wanted = [m for m in default if m in present]
    return (
        wanted
        or [m for m in dict.fromkeys([*data.paper["metric"], *data.headline()]) if m in present]
        or present[:1]
    )


def curve_figure(data: ExperimentData, rows: pd.DataFrame, curve: Curve) -> Figure:
    """``curves`` and ``roar``: see the module doc; ``figure`` keys ``metrics``, ``x``,
    ``logx``, ``xlabel`` override the benchmark's :class:`Curve`."""
    spec = data.figure
    x = str(spec.get("x", curve.x))
    metrics = _metrics(data, rows, curve.metrics)
    curve_rows = rows[rows["metric"].isin(metrics)]
    cols = list(dict.fromkeys([*curve.always, *varying(curve_rows, exclude=[x])]))
    pts, where = [], {}
    for metric in metrics:
        mine = curve_rows[curve_rows["metric"] == metric]
        for point in panel_points(mine, cols):
            sel = select(mine, point)
            scale = curve.scale
            if curve.normalise and sel[x].max() > 0:
                scale = 1.0 / float(sel[x].max())
            name = panel_title(metric, point, data.factors.get(metric, 1.0))
            where[name] = {"metric": metric, **point}
            pts.append(ours(sel, name, x, scale=scale))
            pts.append(paper(data, rows, metric, name, point, condition_x(x, scale)))
    points, origin = split_groups(join(pts), data.figure.get("panels"))
    xs = points.loc[points["x"] > 0, "x"]  # log x (curve.logx) where x spans 30x or more
    logx = bool(spec.get("logx", curve.logx and len(xs) > 0 and xs.max() >= 30 * xs.min()))
    fig, axes = draw_lines(
        points, str(spec.get("xlabel", curve.xlabel)), logx, None, scalar_bars(data, rows, x)
    )
    if curve is CURVES["roar"]:
        _base_accuracy(data, rows, {axes[n]: where[origin[n]] for n in axes})
    return fig


def _base_accuracy(
    data: ExperimentData, rows: pd.DataFrame, axes: Mapping[Axes, Mapping[str, Any]]
) -> None:
    """ROAR: the unmodified model's test accuracy (``base_test_acc`` of the run summaries) in
    the ``test_acc`` panels of its model and dataset (``axes``: panel -> its conditions)."""
    factor = data.factors.get("test_acc", 1.0)
    for run_dir, part in rows.groupby("run_dir", sort=False):
        base = data.runs[str(run_dir)].summary.get("base_test_acc")
        if not isinstance(base, int | float) or not math.isfinite(base):
            continue
        setup = {"metric": "test_acc", "model": part["model"].iloc[0],
                 "dataset": part["dataset"].iloc[0]}  # fmt: skip
        for ax, point in axes.items():
            if all(point.get(k) == v for k, v in setup.items()):
                ax.axhline(base * factor, color="0.4", ls=":", lw=1, gid="reference:unmodified")


def sanity_figure(data: ExperimentData, rows: pd.DataFrame) -> Figure:
    """Similarity to the trained model's maps over the randomisation stages: one panel per
    metric (and varying condition), one line per method."""
    metrics = _metrics(data, rows, list(dict.fromkeys(rows["metric"])))
    order = rows.drop_duplicates("stage").sort_values("stage_index")
    stages = {str(s): float(i) for s, i in zip(order["stage"], order["stage_index"])}
    cols = varying(rows, exclude=["stage"])

    def x_of(row: Mapping[str, Any]) -> float | None:
        stage = conditions(row).get("stage")
        return next((i for s, i in stages.items() if same(s, stage)), None) if stage else None

    def keep(row: Mapping[str, Any], label: str) -> bool:  # a stage we did not run: left out
        return "stage" not in conditions(row) or x_of(row) is not None

    pts = []
    for metric in metrics:
        mine = rows[rows["metric"] == metric]
        for point in panel_points(mine, cols):
            name = panel_title(metric, point, data.factors.get(metric, 1.0))
            pts += [
                ours(select(mine, point), name, "stage_index"),
                paper(data, rows, metric, name, point, x_of, keep=keep),
            ]
    points, _ = split_groups(join(pts), data.figure.get("panels"))
    fig, axes = draw_lines(
        points,
        "randomised up to (cascading, output first)",
        xticks={i: s for s, i in stages.items()},
    )
    for ax in axes.values():
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set_ylabel("similarity to the trained model's maps", fontsize=7)
    return fig


def _params(data: ExperimentData) -> list[str]:
    param = data.figure.get("param")
    if not param:
        raise ValueError(f"experiment={data.name}: figure kind curve_over_param needs `param:`")
    return [str(p) for p in ([param] if isinstance(param, str) else param)]


def _explicit(data: ExperimentData, label: str, param: str) -> bool:
    """Whether ``label``'s spec sets ``param`` itself (an override or in its label)."""
    for run in data.runs.values():
        for spec in run.config.get("resolved_methods") or []:
            if (
                isinstance(spec, Mapping)
                and spec.get("label") == label
                and param in (spec.get("params") or {})
            ):
                return True
    return label_param(label, param) is not None


def param_figure(data: ExperimentData, rows: pd.DataFrame) -> Figure:
    """``curve_over_param``: x = the explainer parameter ``figure.param`` (one name, or a list:
    one panel per parameter and metric) of each method label; one line per method config. With
    several parameters, a label counts on a parameter's curve when it sets that one, or none."""
    params = _params(data)
    metrics = _metrics(data, rows, [])
    configs = dict(
        zip(
            rows["method"], rows["method_config"].where(rows["method_config"] != "", rows["method"])
        )
    )

    def line_of(label: str) -> str:
        return configs.get(label, label)

    pts, param_of = [], {}
    for param in params:
        others = [p for p in params if p != param]
        labels = [
            m
            for m in dict.fromkeys(rows["method"])
            if _explicit(data, m, param) or not any(_explicit(data, m, o) for o in others)
        ]
        xs = {m: method_param(data, m, param) for m in labels}
        mine = rows[rows["method"].isin([m for m, v in xs.items() if v is not None])].copy()
        mine["param_x"] = mine["method"].map(xs)
        mine["line"] = mine["method"].map(configs)
        for metric in metrics:
            name = panel_title(metric, {"over": param}, data.factors.get(metric, 1.0))
            param_of[name] = param
            pts.append(ours(mine[mine["metric"] == metric], name, "param_x", line="line"))

            def x_of(
                row: Mapping[str, Any], param: str = param, xs: dict[str, Any] = xs
            ) -> float | None:
                label = str(row["method"])
                return xs.get(label) if label in xs else label_param(label, param)

            def keep(row: Mapping[str, Any], label: str, labels: list[str] = labels) -> bool:
                return label in labels or label not in configs  # not a point of another param

            pts.append(paper(data, rows, metric, name, {}, x_of, line_of, keep))
    points = join(pts)
    points = points[points["x"].notna() | (points["source"] == PAPER)]
    xs = points["x"][points["x"] > 0]  # a parameter over powers of two (G): log x by default
    wide = bool(len(xs)) and len(xs) == points["x"].notna().sum() and xs.max() >= 16 * xs.min()
    xlabel, logx = str(data.figure.get("xlabel", "")), bool(data.figure.get("logx", wide))
    fig, axes = draw_lines(points, xlabel, logx)
    for name, ax in axes.items():
        ax.set_xlabel(xlabel or param_of[name], fontsize=8)
        if logx:
            ax.set_xscale("log", base=2)
    return fig
