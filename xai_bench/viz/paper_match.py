"""Our numbers beside the papers' (OPPSD, Group-CAM, PruneGrad, POSAGG, UNREL): a row of an
experiment's ``reported.values`` is matched to our rows on its ``method`` (our label; where no
label is that name, our ``method_config``), its ``metric`` and each of its conditions that our
rows have as a column (``stage``, ``fraction``, ``subset``, ``variant``, ``model`` ...; numbers
compare with a relative tolerance of 1e-9). A row with ``relative_to: <method>`` is a multiple
of that method's number (OPPSD's "5.36x faster than FullGrad"): it is compared with the ratio of
our means. :func:`comparison` is the table of one result that
``make figures`` writes as markdown, with ``ours - paper``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

import pandas as pd

from xai_bench.experiments import ROW_KEYS
from xai_bench.results.summary import KEYS, condition_columns, condition_means
from xai_bench.viz.paper_data import ExperimentData

RELATIVE = "relative_to"  # a paper row's value is a multiple of this method's (the same metric)
HIDDEN = ("stage_index", "experiment", "method_config", "method_hash")  # not shown as columns
SHOWN_KEYS = ("benchmark", "model", "dataset")  # shown as columns where they vary
OWN = ("method", "metric", "ours", "n", "paper", "diff")  # the comparison's own columns


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def same(a: Any, b: Any) -> bool:
    """Whether two condition values are equal: as numbers where both read as numbers."""
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError):
        return str(a).strip() == str(b).strip()
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def relative(row: Mapping[str, Any]) -> str | None:
    """The method a paper row is a multiple of (``relative_to``), if any."""
    value = row.get(RELATIVE)
    return None if _blank(value) else str(value)


def our_mean(table: pd.DataFrame, name: str, metric: str) -> float | None:
    """Our mean of ``metric`` for label ``name`` (else for method config ``name``)."""
    rows = table[table["metric"] == metric]
    sel = rows[rows["method"] == name]
    if sel.empty and "method_config" in rows:
        sel = rows[rows["method_config"] == name]
    value = pd.to_numeric(sel["value"], errors="coerce").mean() if len(sel) else math.nan
    return None if math.isnan(value) else float(value)


def conditions(row: Mapping[str, Any]) -> dict[str, Any]:
    """The conditions of a paper row: every key but ``method``, ``metric``, ``value``, ``unit``."""
    return {k: v for k, v in row.items() if k not in ROW_KEYS and not _blank(v)}


def matches(
    row: Mapping[str, Any],
    method: str,
    metric: str,
    point: Mapping[str, Any],
    labels: Collection[str] = (),
    config: str = "",
) -> bool:
    """Whether paper row ``row`` is the number of our ``method`` (label; ``config``: its
    method config, used where no label in ``labels`` is the paper's name) and ``metric`` at
    ``point`` (our conditions; a condition of the row that ``point`` lacks is not checked)."""
    name = str(row["method"])
    if name != method and (name in labels or not config or name != config):
        return False
    if str(row["metric"]) != metric:
        return False
    for key, value in conditions(row).items():
        if key in point and not _blank(point[key]) and not same(value, point[key]):
            return False
    return True


def paper_value(
    paper: pd.DataFrame,
    method: str,
    metric: str,
    point: Mapping[str, Any] | None = None,
    labels: Collection[str] = (),
    config: str = "",
) -> float | None:
    """The paper's number for ``method`` and ``metric`` at ``point`` (``None``: none given;
    rows relative to another method are left out)."""
    for row in paper.to_dict("records"):
        if relative(row) is None and matches(row, method, metric, point or {}, labels, config):
            return float(row["value"])
    return None


def shown_metrics(data: ExperimentData) -> list[str]:
    """The metrics of the table: the paper's, then our headline ones (all where neither)."""
    names = list(dict.fromkeys([*data.paper["metric"], *data.headline()]))
    if not names and len(data.table):
        names = list(dict.fromkeys(data.table["metric"]))
    return names


def comparison(data: ExperimentData) -> pd.DataFrame:
    """One row per our mean (per method, metric and condition) of :func:`shown_metrics`, with
    the paper's number where a row of ``reported.values`` matches (its first match) and
    ``ours - paper``; then the paper's rows that match none of ours (``ours`` empty).

    A condition that has one value in all our rows (``subset=all`` where the paper's is
    ``difficult``, our embedded model where the paper names its own) is not compared; the
    paper's conditions that differ from ours are in ``paper_at`` (``subset=difficult``).

    Columns: ``method``, ``metric``, the conditions, ``ours``, ``n``, ``paper``, ``paper_at``,
    ``diff``.
    """
    paper = [r for r in data.paper.to_dict("records") if relative(r) is None]
    metrics = shown_metrics(data)
    ours = condition_means(data.table) if len(data.table) else pd.DataFrame(columns=KEYS)
    ours = ours[ours["metric"].isin(metrics)].copy()
    ours["order"] = ours["metric"].map({m: i for i, m in enumerate(metrics)})
    ours = ours.sort_values("order", kind="stable").drop(columns="order")
    single = {c for c in ours.columns if ours[c].astype(str).replace("", pd.NA).nunique() <= 1}
    labels = set(ours["method"])
    used: set[int] = set()
    records = []
    for row in ours.to_dict("records"):
        point = {k: v for k, v in row.items() if k not in single}
        config = row["method_config"]
        found = [
            i
            for i, prow in enumerate(paper)
            if matches(prow, row["method"], row["metric"], point, labels, config)
        ]
        used.update(found[:1])
        record = {**row, "ours": row["value"], "paper": None, "paper_at": ""}
        if found:
            prow = paper[found[0]]
            differ = {
                k: v for k, v in conditions(prow).items() if k not in row or not same(v, row[k])
            }
            record.update(paper=float(prow["value"]),
                          paper_at=", ".join(f"{k}={v}" for k, v in differ.items()))  # fmt: skip
        records.append(record)
    for i, prow in enumerate(paper):
        if i not in used:
            records.append({**conditions(prow), "method": prow["method"],
                            "metric": prow["metric"], "paper": float(prow["value"])})  # fmt: skip
    records += relative_records(data)
    table = pd.DataFrame(records)
    if table.empty:
        return pd.DataFrame(columns=[*OWN, "paper_at", "diff"])
    for key in ("ours", "paper", "n"):
        table[key] = pd.to_numeric(table[key], errors="coerce") if key in table else math.nan
    table["diff"] = table["ours"] - table["paper"]
    table["paper_at"] = table["paper_at"].fillna("") if "paper_at" in table else ""
    keep = [c for c in [*SHOWN_KEYS, *condition_columns(table.columns)] if c in table]
    keep = [c for c in dict.fromkeys(keep) if c not in HIDDEN and c not in (*OWN, "paper_at")]
    return table[["method", "metric", *keep, "ours", "n", "paper", "paper_at", "diff"]]


def relative_records(data: ExperimentData) -> list[dict[str, Any]]:
    """One row per paper row with ``relative_to``: ``method`` ``A / B``, our ratio of the
    means of A and B in ``ours`` and the paper's multiple in ``paper``."""
    out = []
    for row in data.paper.to_dict("records"):
        base = relative(row)
        if base is None:
            continue
        method, metric = str(row["method"]), str(row["metric"])
        mine, ref = our_mean(data.table, method, metric), our_mean(data.table, base, metric)
        ratio = mine / ref if mine is not None and ref else None
        out.append({"method": f"{method} / {base}", "metric": metric, "ours": ratio,
                    "paper": float(row["value"]), "paper_at": "ratio"})  # fmt: skip
    return out


def _text(value: Any, sign: bool = False) -> str:
    if _blank(value):
        return ""
    if isinstance(value, float):
        return f"{value:+.4g}" if sign else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def comparison_markdown(table: pd.DataFrame) -> str:
    """The :func:`comparison` table as markdown: conditions that are the same on every row go
    to a line above it; the rest are columns; ``paper at`` (the paper's conditions that differ
    from ours) only where a row has one."""
    conds = [c for c in table.columns if c not in (*OWN, "paper_at")]
    values = {c: [_text(v) for v in table[c]] for c in conds}
    given = {c: {v for v in values[c] if v} for c in conds}  # blanks: rows without it
    fixed = [c for c in conds if len(given[c]) <= 1]
    varying = [c for c in conds if c not in fixed]
    same_line = ", ".join(f"{c}={next(iter(given[c]))}" for c in fixed if given[c])
    at = any(table["paper_at"].astype(bool)) if "paper_at" in table else False
    head = ["method", "metric", *varying, "ours", "n", "paper", *(["paper at"] if at else [])]
    head.append("ours - paper")
    lines = [f"Same for all rows: {same_line}.\n"] if same_line else []
    lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for i, row in enumerate(table.to_dict("records")):
        n = "" if _blank(row["n"]) else str(int(row["n"]))
        cells = [_text(row["method"]), _text(row["metric"]), *(values[c][i] for c in varying)]
        cells += [_text(row["ours"]), n, _text(row["paper"])]
        cells += [_text(row["paper_at"])] if at else []
        cells.append(_text(row["diff"], sign=True))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
