"""Tidy points of the paper figures: our means and the paper's numbers per panel, line or bar
(``make figures``; OPPSD, Group-CAM, PruneGrad, POSAGG, UNREL).

A *panel* is one metric under fixed values of some condition columns (``model``, ``subset``,
``order`` ...); :func:`ours` averages our rows per panel, line and x, and :func:`paper` places
each row of ``reported.values`` in every panel whose conditions it does not contradict
(:func:`~xai_bench.viz.paper_match.matches`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from xai_bench.results.summary import SAMPLE_COLUMNS, condition_columns
from xai_bench.viz.paper_data import ExperimentData
from xai_bench.viz.paper_match import conditions, matches, same
from xai_bench.viz.paper_plots import OURS, PAPER

#: condition columns never used to split panels (bookkeeping, or averaged over)
NOT_PANELS = frozenset({"seed", "stage_index", "n_nonfinite", "run_dir", "step", "n_pixels"})
COLUMNS = ["panel", "metric", "method", "x", "y", "source"]


def varying(rows: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """The condition columns (and ``model``, ``dataset``) with several values in ``rows``."""
    cols = ["model", "dataset", *condition_columns(rows.columns)]
    skip = {*NOT_PANELS, *SAMPLE_COLUMNS, *exclude}
    return [c for c in dict.fromkeys(cols) if c in rows and c not in skip
            and rows[c].dropna().astype(str).nunique() > 1]  # fmt: skip


def panel_title(metric: str, point: Mapping[str, Any], factor: float = 1.0) -> str:
    """``metric (x100) — key=value, ...``."""
    unit = f" (x{factor:g})" if factor != 1 else ""
    where = ", ".join(f"{k}={_text(v)}" for k, v in point.items())
    return f"{metric}{unit}" + (f" — {where}" if where else "")


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def panel_points(rows: pd.DataFrame, cols: Sequence[str]) -> list[dict[str, Any]]:
    """The distinct values of ``cols`` in ``rows`` (order of appearance); ``[{}]`` for none."""
    if not cols:
        return [{}]
    keys = rows[list(cols)].drop_duplicates()
    return [dict(zip(cols, values, strict=True)) for values in keys.itertuples(index=False)]


def select(rows: pd.DataFrame, point: Mapping[str, Any]) -> pd.DataFrame:
    """The rows at ``point`` (every column equal)."""
    mask = pd.Series(True, index=rows.index)
    for key, value in point.items():
        mask &= rows[key].map(lambda v, value=value: same(v, value))
    return rows[mask]


def ours(
    rows: pd.DataFrame, panel: str, x: str | None, line: str = "method", scale: float = 1.0
) -> pd.DataFrame:
    """Mean ``value`` per line (``line`` column) and x (``x`` column times ``scale``; NaN rows
    dropped; ``None``: one point per line at x = NaN)."""
    if x is not None:
        rows = rows[rows[x].notna()]
        keys = [line, x]
    else:
        keys = [line]
    if rows.empty:
        return pd.DataFrame(columns=COLUMNS)
    means = rows.groupby(keys, sort=False)["value"].mean().reset_index()
    return pd.DataFrame({
        "panel": panel, "metric": rows["metric"].iloc[0], "method": means[line].astype(str),
        "x": means[x].astype(float) * scale if x is not None else math.nan,
        "y": means["value"].astype(float), "source": OURS,
    })  # fmt: skip


def label_for(name: str, rows: pd.DataFrame) -> str:
    """Our label of the paper's method ``name``: itself, or the one label of config ``name``."""
    if name in set(rows["method"]):
        return name
    labels = set(rows.loc[rows["method_config"] == name, "method"]) if len(rows) else set()
    return next(iter(labels)) if len(labels) == 1 else name


def paper(
    data: ExperimentData,
    rows: pd.DataFrame,
    metric: str,
    panel: str,
    point: Mapping[str, Any],
    x_of: Callable[[Mapping[str, Any]], float | None] | None = None,
    line_of: Callable[[str], str] | None = None,
    keep: Callable[[Mapping[str, Any], str], bool] | None = None,
) -> pd.DataFrame:
    """The paper's points of ``metric`` in the panel at ``point``: x from ``x_of(row)``
    (``None`` or NaN: the whole curve), line from ``line_of(our label)`` (default: the label);
    ``keep(row, our label)`` false: left out."""
    out = []
    for row in data.paper.to_dict("records"):
        if row["metric"] != metric:
            continue
        label = label_for(str(row["method"]), rows)
        if keep is not None and not keep(row, label):
            continue
        if not matches({**row, "method": label}, label, metric, point):
            continue
        x = x_of(row) if x_of is not None else None
        out.append({"panel": panel, "metric": metric,
                    "method": line_of(label) if line_of else label,
                    "x": math.nan if x is None else float(x), "y": float(row["value"]),
                    "source": PAPER})  # fmt: skip
    return pd.DataFrame(out, columns=COLUMNS)


def condition_x(key: str, scale: float = 1.0) -> Callable[[Mapping[str, Any]], float | None]:
    """``x_of`` for :func:`paper`: the row's condition ``key`` as a number times ``scale``."""

    def x_of(row: Mapping[str, Any]) -> float | None:
        value = conditions(row).get(key)
        try:
            return None if value is None else float(value) * scale
        except (TypeError, ValueError):
            return None

    return x_of


def join(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The non-empty point tables as one (an empty one with :data:`COLUMNS` where none)."""
    full = [p for p in parts if len(p)]
    return pd.concat(full, ignore_index=True) if full else pd.DataFrame(columns=COLUMNS)


def split_groups(
    points: pd.DataFrame, groups: Mapping[str, Sequence[str]] | None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """``figure.panels`` (``{name: [method labels]}``, POSAGG Fig. 4's aggregation and
    propagation panels): each panel split into one per group of methods, titled
    ``<panel> — <name>`` (methods in no group are left out). Returns the points and each new
    panel's original one."""
    names = list(dict.fromkeys(points["panel"]))
    if not isinstance(groups, Mapping) or not groups:
        return points, {n: n for n in names}
    parts, origin = [], {}
    for panel in names:
        for group, methods in groups.items():
            part = points[
                (points["panel"] == panel) & points["method"].isin([str(m) for m in methods])
            ]
            origin[f"{panel} — {group}"] = panel
            parts.append(part.assign(panel=f"{panel} — {group}"))
    return pd.concat(parts, ignore_index=True), origin


def scalar_bars(data: ExperimentData, rows: pd.DataFrame, x: str) -> pd.DataFrame:
    """Bars of the metrics that the paper gives as one number per method and that our rows have
    without ``x`` (e.g. deletion/insertion AUCs): ours and the paper's per method."""
    paper_rows = data.paper
    out = []
    for metric in dict.fromkeys(paper_rows["metric"]):
        mine = rows[rows["metric"] == metric]
        if mine.empty or (x in mine and mine[x].notna().any()):
            continue
        for method, part in mine.groupby("method", sort=False):
            out.append(
                {"group": method, "series": metric, "y": part["value"].mean(), "source": OURS}
            )
            sel = paper_rows[(paper_rows["metric"] == metric) & (paper_rows["method"] == method)]
            if len(sel):
                out.append({"group": method, "series": metric, "y": float(sel["value"].iloc[0]),
                            "source": PAPER})  # fmt: skip
    return pd.DataFrame(out, columns=["group", "series", "y", "source"])
