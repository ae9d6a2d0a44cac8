"""Means of similarity rows that may hold NaN (constant or non-finite maps).

The similarity benchmarks (sanity checks, class sensitivity) expose how a Spearman correlation
of a constant map is handled (``constant_maps``): ``define`` (1 for two constant maps, 0 for
one) or ``nan`` (SciPy's NaN). NaN values are never averaged: :func:`aggregate` leaves them out
of the mean and counts them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

CONSTANT_MAPS = ("define", "nan")

log = logging.getLogger(__name__)


def check_constant_maps(value: str) -> str:
    if value not in CONSTANT_MAPS:
        raise ValueError(f"constant_maps must be one of {CONSTANT_MAPS}, got '{value}'")
    return value


def aggregate(table: pd.DataFrame, by: Sequence[str], warn: bool = True) -> list[dict[str, Any]]:
    """Mean and std over finite ``value`` per group (in order of first appearance), with the
    count of finite (``n``) and NaN (``n_nan``) values; NaN counts are logged when ``warn``."""
    records = []
    for key, group in table.groupby(list(by), sort=False):
        values = group["value"].astype(float)
        finite = values[values.map(math.isfinite)]
        rec = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        rec.update(
            mean=float(finite.mean()) if len(finite) else None,
            std=float(finite.std(ddof=0)) if len(finite) else None,
            n=len(finite),
            n_nan=int(len(values) - len(finite)),
        )
        if rec["n_nan"] and warn:
            log.warning("%d NaN values (constant or non-finite maps) in %s", rec["n_nan"], key)
        records.append(rec)
    return records
