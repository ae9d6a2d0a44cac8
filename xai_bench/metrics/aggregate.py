"""Means of result rows that may hold NaN (constant or non-finite maps).

Two kinds of NaN, handled differently:

* **undefined values** of a documented convention: the similarity benchmarks (sanity checks,
  class sensitivity) expose how a Spearman correlation of a constant map is handled
  (``constant_maps``): ``define`` (1 for two constant maps, 0 for one) or ``nan`` (SciPy's
  NaN); pixel perturbation's ``|y' - y| / |y|`` is undefined for ``y = 0``. These are left out
  of the mean and counted (``n_nan``).
* **non-finite maps**: a row whose saliency map (either map of a pair) held a NaN or an
  infinite value is NaN and is flagged in the column :data:`NONFINITE` (``map_nonfinite``).
  These are never hidden: a mean over a group with such a row is NaN (:func:`flagged_mean`,
  :func:`aggregate`), and they are counted (``n_nonfinite``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

CONSTANT_MAPS = ("define", "nan")
#: the row column that flags results of maps with a NaN or an infinite value (0/1)
NONFINITE = "map_nonfinite"

log = logging.getLogger(__name__)


def check_constant_maps(value: str | float) -> str:
    """``define`` or ``nan``; a float NaN (what Hydra makes of ``constant_maps=nan`` on the
    command line) means ``nan``."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if value not in CONSTANT_MAPS:
        raise ValueError(f"constant_maps must be one of {CONSTANT_MAPS}, got '{value}'")
    return value


def flags(rows: pd.DataFrame) -> pd.Series:
    """The :data:`NONFINITE` flag of each row as bool (all False without the column; rows of
    chunks written before the column existed count as finite)."""
    if NONFINITE not in rows:
        return pd.Series(False, index=rows.index)
    return rows[NONFINITE].fillna(0).astype(bool)


def flagged_mean(values: pd.Series, nonfinite: pd.Series | None = None) -> float:
    """Mean of the finite ``values``; NaN if any row is flagged in ``nonfinite`` (a result of
    a non-finite map is never averaged away) or no value is finite."""
    if nonfinite is not None and bool(nonfinite.fillna(0).astype(bool).any()):
        return math.nan
    values = values.astype(float)
    finite = values[values.map(math.isfinite)]
    return float(finite.mean()) if len(finite) else math.nan


def nan_counts(rows: pd.DataFrame, by: str = "method") -> dict[str, tuple[int, int, int]]:
    """Per ``by`` value (in order of first appearance): ``(NaN results, results, NaN results
    of non-finite maps)``, counting rows whose ``value`` is NaN (an infinite value, e.g. an
    infinite relative difference, is a defined result)."""
    if rows.empty or "value" not in rows:
        return {}
    bad = pd.to_numeric(rows["value"], errors="coerce").isna()
    frame = pd.DataFrame({"key": rows[by].astype(str), "bad": bad, "maps": bad & flags(rows)})
    out = {}
    for key, g in frame.groupby("key", sort=False):
        out[str(key)] = (int(g["bad"].sum()), len(g), int(g["maps"].sum()))
    return out


def aggregate(table: pd.DataFrame, by: Sequence[str], warn: bool = True) -> list[dict[str, Any]]:
    """Mean and std over finite ``value`` per group (in order of first appearance), with the
    count of finite (``n``) and NaN (``n_nan``) values and, of the latter, those of
    non-finite maps (``n_nonfinite``, rows flagged in :data:`NONFINITE`): a group with such a
    row has ``mean`` and ``std`` NaN. NaN counts are logged (debug level) when ``warn``; the
    benchmarks warn once per method (:func:`xai_bench.engine.benchmark.report_nan`)."""
    records = []
    table = table.assign(**{NONFINITE: flags(table).astype(int)})
    for key, group in table.groupby(list(by), sort=False):
        values = group["value"].astype(float)
        finite = values[values.map(math.isfinite)]
        n_nonfinite = int(((~values.map(math.isfinite)) & group[NONFINITE].astype(bool)).sum())
        rec = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        defined = len(finite) and not n_nonfinite
        rec.update(
            mean=float(finite.mean()) if defined else (math.nan if n_nonfinite else None),
            std=float(finite.std(ddof=0)) if defined else (math.nan if n_nonfinite else None),
            n=len(finite),
            n_nan=int(len(values) - len(finite)),
            n_nonfinite=n_nonfinite,
        )
        if rec["n_nan"] and warn:
            log.debug("%d NaN values (%d of non-finite maps) in %s", rec["n_nan"], n_nonfinite, key)
        records.append(rec)
    return records
