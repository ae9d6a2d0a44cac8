"""The paper's numbers (``reported.values``) matched to ours: method label, metric, conditions."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from xai_bench.experiments import ROW_KEYS
from xai_bench.report.model import Comparison

# A unit in percent or "x 100" while our results hold fractions: ours are multiplied by 100.
_PERCENT = re.compile(r"%|percent|[x\u00d7]\s*100", re.IGNORECASE)


def unit_factor(unit: str, ours: Iterable[float]) -> float:
    """100 when ``unit`` is a percentage (or "x 100") and every one of ``ours`` is a fraction
    (|v| <= 1: results.csv holds AUCs and accuracies in [0, 1]); else 1."""
    numbers = [v for v in ours if pd.notna(v)]
    if _PERCENT.search(unit or "") and numbers and all(abs(v) <= 1 for v in numbers):
        return 100.0
    return 1.0


def matching(long: pd.DataFrame, row: Mapping[str, Any]) -> tuple[pd.DataFrame, str]:
    """Our mean rows (of :func:`~xai_bench.results.summary.long_summary`) with the row's method
    label and metric and every condition of the row (compared as numbers where it is one), and
    why there are none ("" when there are)."""
    if long.empty or not {"method", "metric", "value"} <= set(long.columns):
        return long.iloc[0:0], ""  # not run: the section says so
    sel = long[long["method"] == str(row["method"])]
    if sel.empty:
        return sel, f"no method labelled {row['method']}"
    sel = sel[sel["metric"] == str(row["metric"])]
    if sel.empty:
        return sel, f"no metric {row['metric']} for it"
    for key, want in conditions(row):
        if key not in sel:
            return sel.iloc[0:0], f"no condition {key}"
        hit = sel[[same(v, want) for v in sel[key]]]
        if hit.empty:
            ours = ", ".join(sorted({str(v) for v in sel[key]}))
            return hit, f"no {key}={want} (ours: {ours})"
        sel = hit
    return sel, ""


def same(value: object, want: object) -> bool:
    """``value`` (text in our mean rows) equals ``want``: as numbers where ``want`` is one
    (``1`` matches ``1.0``), else as text (as the claims' rules compare)."""
    if isinstance(want, int | float) and not isinstance(want, bool):
        try:
            return float(value) == float(want)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
    return str(value) == str(want)


def conditions(row: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The conditions of a reported row: its keys other than method, metric, value, unit."""
    return tuple((str(k), v) for k, v in row.items() if k not in ROW_KEYS)


def compare(block: Mapping[str, Any], long: pd.DataFrame) -> list[Comparison]:
    """One :class:`Comparison` per row of ``block["values"]`` (a checked ``reported`` block):
    the mean of our matching rows, in the paper's unit."""
    out = []
    for row in block.get("values") or []:
        unit = str(row.get("unit") or block.get("unit") or "")
        sel, missing = matching(long, row)
        metric = long[long["metric"] == str(row["metric"])] if "metric" in long else long
        factor = unit_factor(unit, pd.to_numeric(metric.get("value", []), errors="coerce"))
        ours = float(sel["value"].mean()) * factor if not sel.empty else None
        out.append(
            Comparison(
                method=str(row["method"]),
                metric=str(row["metric"]),
                conditions=tuple((k, str(v)) for k, v in conditions(row)),
                paper=float(row["value"]),
                ours=None if ours is None or pd.isna(ours) else ours,
                unit=unit,
                factor=factor,
                n=len(sel),
                missing=missing,
            )
        )
    return out
