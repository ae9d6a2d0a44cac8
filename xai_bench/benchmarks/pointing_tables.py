"""Pointing-game result rows: per-class and mean class accuracy per method and subset (TorchRay).

Accuracy per class is ``hits / pairs`` (TorchRay's ``hits / (hits + misses)``); the headline is
the mean over the classes (:func:`~xai_bench.metrics.pointing.mean_class_accuracy`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from xai_bench.methods.spec import MethodSpec
from xai_bench.metrics.aggregate import NONFINITE
from xai_bench.metrics.pointing import class_accuracies, mean_class_accuracy

ALL = "all"  # the subset of every pair
IN_SUBSET = "in_subset"  # pair column: flagged in subset_flags (1) or not (0)


def accuracy_table(
    pairs: pd.DataFrame,
    specs: Sequence[MethodSpec],
    subset_name: str | None,
    num_classes: int,
    class_names: Sequence[str],
    class_mean: str,
    context: Mapping[str, Any],
) -> pd.DataFrame:
    """Rows per method (in ``specs`` order) and subset: ``all`` (every pair), then, when
    ``subset_name`` is given, the pairs flagged ``in_subset``. Each has ``accuracy`` (mean class
    accuracy, see ``class_mean``), ``hit_rate`` and ``degenerate_rate`` (``class = all``) and
    ``class_accuracy`` per class with pairs.

    Args:
        pairs: one row per (method, image, class) pair with ``hit``, ``degenerate`` and
            optionally ``in_subset`` and ``map_nonfinite``.
        specs: the methods, in table order.
        subset_name: label of the flagged pairs' rows, or ``None`` (no flag file).
        num_classes: classes of the dataset.
        class_names: their names (index order).
        class_mean: ``present`` or ``all`` (:func:`~xai_bench.metrics.pointing.
            mean_class_accuracy`).
        context: columns every row carries (variant, tolerance, ground truth, class mean).
    """
    subsets = [(ALL, pairs)]
    if subset_name is not None and len(pairs):
        flagged = pairs[pairs[IN_SUBSET].astype(bool)] if IN_SUBSET in pairs else pairs[:0]
        subsets.append((subset_name, flagged))
    rows: list[dict[str, Any]] = []
    for spec in specs:
        for subset, part in subsets:
            df = part[part["method"] == spec.label] if len(part) else part
            if not df.empty:
                identity = {**spec.identity, "subset": subset, **context}
                rows += method_rows(df, identity, num_classes, class_names, class_mean)
    return pd.DataFrame(rows)


def method_rows(
    df: pd.DataFrame,
    identity: Mapping[str, Any],
    num_classes: int,
    class_names: Sequence[str],
    class_mean: str,
) -> list[dict[str, Any]]:
    """The rows of one method's pairs ``df`` (one subset); NaN hits (non-finite maps) make
    their class's accuracy NaN."""
    hits = torch.tensor(df["hit"].to_numpy(dtype=np.float64))
    classes = torch.tensor(df["class"].to_numpy(dtype=np.int64))
    _, counts, acc = class_accuracies(hits, classes, num_classes)
    n_bad = int(df[NONFINITE].fillna(0).sum()) if NONFINITE in df else 0
    base = {**identity, "class": "all", "n": len(df), "n_nonfinite": n_bad}
    degenerate = float(df["degenerate"].to_numpy(dtype=np.float64).mean())
    mean = mean_class_accuracy(acc, counts, class_mean)
    rows = [
        {**base, "metric": "accuracy", "value": mean},
        {**base, "metric": "hit_rate", "value": float(hits.double().mean())},
        {**base, "metric": "degenerate_rate", "value": degenerate},
    ]
    for c in (counts > 0).nonzero().flatten().tolist():
        name = class_names[c] if c < len(class_names) else str(c)
        rows.append(
            {**base, "class": name, "n": int(counts[c]),
             "metric": "class_accuracy", "value": float(acc[c])}
        )  # fmt: skip
    return rows


def nonfinite_pairs(rows: pd.DataFrame) -> dict[str, tuple[int, int, int]]:
    """Per method: ``(pairs of non-finite maps, pairs, the same)`` (a pair is NaN only when its
    map held a NaN or an infinite value), over all pairs (``subset = all``)."""
    part = rows[(rows["class"] == "all") & (rows.metric == "hit_rate")]
    part = part[part["subset"] == ALL] if "subset" in part else part
    return {
        str(m): (int(b), int(n), int(b))
        for m, n, b in zip(part.method, part["n"], part["n_nonfinite"].fillna(0))
    }


def subset_summary(rows: pd.DataFrame) -> dict[str, Any]:
    """``n_pairs``, ``accuracy/<method>`` and ``hit_rate/<method>`` of every subset, the
    flagged one's keys prefixed ``<subset>/``."""
    summary: dict[str, Any] = {}
    overall = rows[rows["class"] == "all"]
    subsets = overall["subset"] if "subset" in overall else pd.Series(ALL, overall.index)
    for subset in dict.fromkeys(subsets):
        part = overall[subsets == subset]
        prefix = "" if subset == ALL else f"{subset}/"
        summary[f"{prefix}n_pairs"] = int(part["n"].max())
        for metric in ("accuracy", "hit_rate"):
            sel = part[part.metric == metric]
            summary.update(
                {f"{prefix}{metric}/{m}": float(v) for m, v in zip(sel.method, sel.value)}
            )
    return summary
