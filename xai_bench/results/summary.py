"""One summary table of every finished run under an outputs folder (what `make run` prints).

Each run's tidy ``results.csv`` is averaged per :data:`KEYS` and per *condition* (see
:func:`condition_columns`): two method variants (labels or hashes), two experiments or two
conditions are never averaged together. The headline metrics of each benchmark (``headline`` of
its ``summary.json``, :data:`HEADLINE` for older runs) are pivoted into a methods-as-columns
table, written as ``summary.csv`` (long, every metric) and ``summary.md`` (readable, with the
papers' effects of :mod:`xai_bench.results.claims` and the figures of every run) atomically;
``claims.csv`` holds the effects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from xai_bench.results.claims import check_claims, claims_markdown
from xai_bench.results.store import (
    RESULTS_FILE,
    SUMMARY_FILE,
    TEXT_COLUMNS,
    finished_run_dirs,
    read_results,
)
from xai_bench.utils.io import atomic_write, atomic_write_text

# What a number is: a mean is taken per these columns and per condition, never across them.
KEYS = [
    "experiment", "benchmark", "model", "dataset", "metric", "method", "method_config",
    "method_hash",
]  # fmt: skip
# Columns that are neither keys nor conditions: the value itself, the run folder added by
# `load_all`, and the columns this module adds to summary.csv.
IDENTITY_COLUMNS = frozenset(
    {*KEYS, *TEXT_COLUMNS, "value", "run_dir", "n", "headline", "higher_is_better"}
)
# Per-sample and bookkeeping columns: which image / class / retraining replicate a row is, counts
# and notes. Means are taken over them (they are dropped, never conditions).
SAMPLE_COLUMNS = frozenset(
    {
        "image", "index", "target", "class", "class_max", "class_min", "label", "n_pixels",
        "map_nonfinite", "note", "applicable", "n", "n_images", "retrain_seed", "hit",
        "degenerate", "u", "v",
    }
)  # fmt: skip

# Fallback for runs whose summary.json has no ``headline``: the metrics shown in summary.md per
# benchmark (all metrics are kept in summary.csv). A benchmark missing here shows every metric.
HEADLINE: dict[str, tuple[str, ...]] = {
    "overview": ("accuracy",),
    "gallery": ("seconds_per_image",),
    "efficiency": ("time_ratio_to_fwd_bwd",),
    "sanity_checks": ("spearman_abs", "spearman_signed", "ssim", "hog_spearman"),
    "class_sensitivity": ("spearman", "hog_spearman"),
    "pixel_perturbation": ("output_change", "auc"),
    "deletion_insertion": ("deletion_auc", "insertion_auc", "overall"),
    "pointing_game": ("accuracy", "hit_rate"),
    "pointing_game_restricted": ("accuracy", "hit_rate"),
    "input_invariance": ("invariant", "rel_diff", "logit_max_abs_diff", "pearson_target"),
    "roar": ("test_acc", "roar_auc"),
    "groupcam_finetune": ("test_acc",),
}
TABLE_KEYS = ["experiment", "benchmark", "model", "dataset"]  # one markdown table each
OUT_COLUMNS = ["value", "n"]


def condition_columns(columns: Iterable[str]) -> list[str]:
    """The condition columns among ``columns``, in their order: every column that is neither an
    identity column (:data:`IDENTITY_COLUMNS`) nor a per-sample one (:data:`SAMPLE_COLUMNS`),
    so a condition a benchmark adds later (``tolerance``, ``epoch``...) is kept apart too."""
    return [
        str(c)
        for c in columns
        if c not in IDENTITY_COLUMNS
        and c not in SAMPLE_COLUMNS
        and not str(c).startswith("Unnamed:")
    ]


def condition_means(table: pd.DataFrame, keys: Iterable[str] = KEYS) -> pd.DataFrame:
    """Mean ``value`` and its count ``n`` per ``keys`` and per condition of ``table``.

    Keys and conditions become text ("" where missing, ``3`` for ``3.0``) so that runs written
    with and without a missing value in a column still meet.
    """
    keys = list(keys)
    conditions = condition_columns(table.columns)
    cols = [*keys, *conditions]
    if table.empty or "value" not in table:
        return pd.DataFrame(columns=[*cols, *OUT_COLUMNS])
    part = pd.DataFrame(
        {key: _labels(table[key]) if key in table else "" for key in cols}, index=table.index
    )
    part["value"] = pd.to_numeric(table["value"], errors="coerce")
    grouped = part.groupby(cols, sort=False, dropna=False)["value"]
    out = grouped.mean().to_frame("value")
    out["n"] = grouped.count()
    return out.reset_index()


def _labels(column: pd.Series) -> list[str]:
    return [_label(v) for v in column]


def _label(value: object) -> str:
    """A key or condition as text: "" when missing, ``3`` for ``3.0``, ``0.1`` for ``0.1``."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, float):
        if value != value:
            return ""
        return str(int(value)) if value.is_integer() else str(value)
    return str(value)


def finished_runs(output_dir: str | Path) -> list[Path]:
    """Run directories under ``output_dir`` that hold a finished result."""
    return finished_run_dirs(output_dir)


def long_summary(output_dir: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Means per :data:`KEYS` and condition over all finished runs, and their figure paths.

    Columns: the keys, the conditions of every run ("" where a run or row has none), ``value``,
    ``n``, ``headline`` (shown in summary.md) and ``higher_is_better`` (True, False or empty).
    The headline metrics of a benchmark are the union of the ``headline`` of its runs'
    ``summary.json``; a benchmark none of whose runs names one falls back to :data:`HEADLINE`.
    """
    frames, figures = [], []
    declared: dict[str, dict[str, bool | None]] = {}
    for run_dir in finished_runs(output_dir):
        table = read_results(run_dir / RESULTS_FILE)
        if table.empty or not {"benchmark", "metric", "value"} <= set(table.columns):
            continue
        frames.append(table)
        summary = json.loads((run_dir / SUMMARY_FILE).read_text())
        figures += [str(f) for f in summary.get("figures", [])]
        headline = summary.get("headline")
        if isinstance(headline, Mapping):
            for bench in table["benchmark"].unique():
                for metric, higher in headline.items():
                    declared.setdefault(str(bench), {})[str(metric)] = _direction(higher)
    if not frames:
        long = condition_means(pd.DataFrame())
    else:
        long = condition_means(pd.concat(frames, ignore_index=True))
    flags = [_headline(declared, b, m) for b, m in zip(long["benchmark"], long["metric"])]
    long["headline"] = [shown for shown, _ in flags]
    long["higher_is_better"] = pd.Series([h for _, h in flags], index=long.index, dtype=object)
    return long, figures


def _direction(value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "1.0"):
        return True
    if text in ("false", "0", "0.0"):
        return False
    return None


def _headline(
    declared: Mapping[str, Mapping[str, bool | None]], bench: str, metric: str
) -> tuple[bool, bool | None]:
    """Whether ``metric`` of ``bench`` is shown in summary.md, and which way is better."""
    if bench in declared:
        return metric in declared[bench], declared[bench].get(metric)
    wanted = HEADLINE.get(bench)
    return wanted is None or metric in wanted, None


def headline_markdown(long: pd.DataFrame) -> str:
    """The headline metrics as markdown tables, one per (experiment, benchmark, model, dataset):
    methods as columns in their order of appearance, one row per metric and condition.

    Conditions that vary within a table are written into the row label (``auc fraction=0.1``),
    those that do not under the heading. A metric's label carries its direction (``auc ↓``).
    """
    if long.empty:
        return ""
    long = long.copy()
    for key in [*KEYS, *TABLE_KEYS]:
        long[key] = _labels(long[key]) if key in long else ""
    if "headline" in long:
        long = long[[_is_true(v) for v in long["headline"]]]
    else:
        long = long[[_headline({}, b, m)[0] for b, m in zip(long.benchmark, long.metric)]]
    higher = long["higher_is_better"] if "higher_is_better" in long else [None] * len(long)
    long = long.assign(arrow=[_arrow(h) for h in higher])
    conditions = condition_columns(long.columns.drop("arrow"))
    parts = []
    for (exp, bench, model, data), group in long.groupby(TABLE_KEYS, sort=False):
        parts.append(_table(group, conditions, exp, bench, model, data))
    return "\n".join(parts)


def _table(
    group: pd.DataFrame, conditions: list[str], exp: str, bench: str, model: str, data: str
) -> str:
    values = {c: _labels(group[c]) for c in conditions}
    fixed = [c for c in conditions if len(set(values[c])) == 1 and values[c][0] != ""]
    varying = [c for c in conditions if len(set(values[c])) > 1]
    names = _method_names(group)
    cells: dict[str, dict[str, float]] = {}
    columns: list[str] = []
    for i, row in enumerate(group.to_dict("records")):
        label = row["metric"] + row["arrow"]
        label += "".join(f" {c}={values[c][i]}" for c in varying if values[c][i] != "")
        name = names[(row["method"], row["method_config"], row["method_hash"])]
        if name not in columns:
            columns.append(name)
        cells.setdefault(label, {})[name] = row["value"]
    head = f"### {bench} ({model}, {data})" + (f" — experiment {exp}" if exp else "")
    same = ", ".join(f"{c}={values[c][0]}" for c in fixed)
    note = f"Same for all rows: {same}.\n\n" if same else ""
    return f"{head}\n\n{note}{_markdown(cells, columns)}\n"


def _method_names(group: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """Column name per (label, config, hash): the label, or ``label#hash[:6]`` when one label
    stands for several variants (then ``[config]`` and a counter where that still collides)."""
    keys = list(dict.fromkeys(zip(group.method, group.method_config, group.method_hash)))
    per_label: dict[str, list[tuple[str, str, str]]] = {}
    for key in keys:
        per_label.setdefault(key[0], []).append(key)
    names: dict[tuple[str, str, str], str] = {}
    for label, variants in per_label.items():
        if len(variants) == 1:
            names[variants[0]] = label or "value"  # tasks without methods (overview, train)
            continue
        tried = [f"{label}#{h[:6]}" if h else label for _, _, h in variants]
        if len(set(tried)) < len(tried):
            tried = [f"{t}[{c}]" for t, (_, c, _) in zip(tried, variants)]
        if len(set(tried)) < len(tried):
            tried = [f"{t}~{i + 1}" for i, t in enumerate(tried)]
        names.update(zip(variants, tried))
    return names


def _is_true(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value) and not pd.isna(value)


def _arrow(value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    direction = _direction(value)
    return "" if direction is None else " ↑" if direction else " ↓"


def _markdown(cells: Mapping[str, Mapping[str, float]], columns: list[str]) -> str:
    lines = [
        "| metric | " + " | ".join(_escape(c) for c in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for label, row in cells.items():
        values = [row.get(c) for c in columns]
        text = ["" if v is None or pd.isna(v) else f"{v:.4g}" for v in values]
        lines.append(f"| {_escape(label)} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def write_summary(output_dir: str | Path) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.md`` into ``output_dir``; return their paths."""
    output_dir = Path(output_dir)
    long, figures = long_summary(output_dir)
    csv_path = atomic_write(output_dir / "summary.csv", lambda p: long.to_csv(p, index=False))
    figs = "\n".join(f"- {Path(f).resolve().relative_to(output_dir.resolve())}" for f in figures if
                     Path(f).resolve().is_relative_to(output_dir.resolve()))  # fmt: skip
    claims = check_claims(long)
    atomic_write(output_dir / "claims.csv", lambda p: claims.to_csv(p, index=False))
    text = (
        f"# Summary of {output_dir}\n\n{headline_markdown(long)}\n"
        f"## The papers' effects\n\n{claims_markdown(claims)}\n\n"
        f"All metrics: {csv_path.name}; the effects: claims.csv. Figures:\n\n{figs}\n"
    )
    md_path = atomic_write_text(output_dir / "summary.md", text)
    return csv_path, md_path
