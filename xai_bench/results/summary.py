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
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

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
    {*KEYS, *TEXT_COLUMNS, "value", "run_dir", "n", "std", "n_reported", "headline",
     "higher_is_better"}
)  # fmt: skip
# Per-sample and bookkeeping columns: which image / class / retraining replicate a row is, counts
# and notes. Means are taken over them (they are dropped, never conditions).
SAMPLE_COLUMNS = frozenset(
    {
        "image", "index", "target", "class", "class_max", "class_min", "label", "n_pixels",
        "map_nonfinite", "note", "applicable", "n", "n_images", "retrain_seed", "hit",
        "degenerate", "u", "v",
    }
)  # fmt: skip

# Fallback for runs whose summary.json has no ``headline`` (the ``headline`` of each benchmark
# class): the metrics shown in summary.md per benchmark and whether higher is better (all
# metrics are kept in summary.csv). A benchmark missing here shows every metric, no direction.
HEADLINE: dict[str, dict[str, bool | None]] = {
    "overview": {"accuracy": True},
    "gallery": {"seconds_per_image": False},
    "efficiency": {"time_ratio_to_fwd_bwd": False, "memory_ratio_to_fwd_bwd": False},
    "sanity_checks": {"spearman_abs": False, "spearman_signed": False, "ssim": False,
                      "hog_spearman": False},
    "class_sensitivity": {"spearman": False, "hog_spearman": False},
    "pixel_perturbation": {"output_change": False, "auc": False},
    "deletion_insertion": {"deletion_auc": False, "insertion_auc": True, "overall": True},
    "pointing_game": {"accuracy": True, "hit_rate": True},
    "pointing_game_restricted": {"accuracy": True, "hit_rate": True},
    "input_invariance": {"invariant": True, "rel_diff": False, "logit_max_abs_diff": None,
                         "pearson_target": None},
    "roar": {"test_acc": False, "roar_auc": False},
    "groupcam_finetune": {"test_acc": True},
    "train": {"test_acc": True, "val_acc": True},
}  # fmt: skip
TABLE_KEYS = ["experiment", "benchmark", "model", "dataset"]  # one markdown table each
OUT_COLUMNS = ["value", "n"]
SPREAD_COLUMNS = ["std", "n_reported"]  # with ``spread``: std of the values, the results' own n
HOW_TO_READ = (
    "Cells: mean ± standard deviation over the n values averaged (images, classes, seeds) where "
    "n > 1; a single value shows the n its benchmark reports (e.g. test images), if any. "
    "↑: higher is better, ↓: lower is better. A table without methods has one `value` column."
)


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


def condition_means(
    table: pd.DataFrame, keys: Iterable[str] = KEYS, spread: bool = False
) -> pd.DataFrame:
    """Mean ``value`` and its count ``n`` per ``keys`` and per condition of ``table``; with
    ``spread`` also ``std`` (sample standard deviation, NaN for one value) and ``n_reported``
    (the ``n`` column of the results where a group is one row, e.g. overview's test images).

    Keys and conditions become text ("" where missing, ``3`` for ``3.0``) so that runs written
    with and without a missing value in a column still meet.
    """
    keys = list(keys)
    conditions = condition_columns(table.columns)
    cols = [*keys, *conditions]
    out_columns = [*OUT_COLUMNS, *(SPREAD_COLUMNS if spread else [])]
    if table.empty or "value" not in table:
        return pd.DataFrame(columns=[*cols, *out_columns])
    part = pd.DataFrame(
        {key: _labels(table[key]) if key in table else "" for key in cols}, index=table.index
    )
    part["value"] = pd.to_numeric(table["value"], errors="coerce")
    part["reported"] = pd.to_numeric(table["n"], errors="coerce") if "n" in table else math.nan
    grouped = part.groupby(cols, sort=False, dropna=False)
    out = grouped["value"].mean().to_frame("value")
    out["n"] = grouped["value"].count()
    if spread:
        out["std"] = grouped["value"].std()
        single = grouped["reported"].count() == 1
        out["n_reported"] = grouped["reported"].first().where(single & (out["n"] == 1))
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


@dataclass
class _Run:
    """A finished run: its folder, result rows and summary.json."""

    run_dir: Path
    table: pd.DataFrame
    summary: dict[str, Any]

    def figures(self) -> list[Path]:
        """The run's figures: paths relative to the run folder (absolute in older runs; one
        that no longer exists, e.g. in a moved outputs tree, is looked up in the folder)."""
        out = []
        for entry in self.summary.get("figures", []) or []:
            path = self.run_dir / str(entry)  # an absolute entry stays as it is
            if not path.exists() and (self.run_dir / path.name).exists():
                path = self.run_dir / path.name
            out.append(path)
        return out

    def table_key(self) -> tuple[str, ...]:
        """The (experiment, benchmark, model, dataset) of its first row: its summary.md table."""
        first = self.table.iloc[0]
        return tuple(_label(first[k]) if k in first else "" for k in TABLE_KEYS)


def _runs(output_dir: str | Path) -> list[_Run]:
    runs = []
    for run_dir in finished_runs(output_dir):
        table = read_results(run_dir / RESULTS_FILE)
        if table.empty or not {"benchmark", "metric", "value"} <= set(table.columns):
            continue
        runs.append(_Run(run_dir, table, json.loads((run_dir / SUMMARY_FILE).read_text())))
    return runs


def long_summary(output_dir: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Means per :data:`KEYS` and condition over all finished runs, and their figure paths
    (each as the run folder joined with the entry of its summary.json).

    Columns: the keys, the conditions of every run ("" where a run or row has none), ``value``,
    ``n``, ``std``, ``n_reported`` (see :func:`condition_means`), ``headline`` (shown in
    summary.md) and ``higher_is_better`` (True, False or empty). The headline metrics of a
    benchmark are the union of the ``headline`` of its runs' ``summary.json``; a benchmark none
    of whose runs names one falls back to :data:`HEADLINE`.
    """
    runs = _runs(output_dir)
    return _long(runs), [str(f) for run in runs for f in run.figures()]


def _long(runs: list[_Run]) -> pd.DataFrame:
    declared: dict[str, dict[str, bool | None]] = {}
    for run in runs:
        headline = run.summary.get("headline")
        if isinstance(headline, Mapping):
            for bench in run.table["benchmark"].unique():
                for metric, higher in headline.items():
                    declared.setdefault(str(bench), {})[str(metric)] = _direction(higher)
    if not runs:
        long = condition_means(pd.DataFrame(), spread=True)
    else:
        long = condition_means(pd.concat([r.table for r in runs], ignore_index=True), spread=True)
    flags = [_headline(declared, b, m) for b, m in zip(long["benchmark"], long["metric"])]
    long["headline"] = [shown for shown, _ in flags]
    long["higher_is_better"] = pd.Series([h for _, h in flags], index=long.index, dtype=object)
    return long


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
    if wanted is None:
        return True, None
    return metric in wanted, wanted.get(metric)


def headline_markdown(
    long: pd.DataFrame, figures: Mapping[tuple[str, ...], Sequence[str]] | None = None
) -> str:
    """The headline metrics as markdown tables, one per (experiment, benchmark, model, dataset):
    methods as columns in their order of appearance, one row per metric and condition; below a
    table, the images of ``figures`` under its key (markdown paths).

    Conditions that vary within a table are written into the row label (``auc fraction=0.1``),
    those that do not under the heading. A metric's label carries its direction (``auc ↓``).
    A cell is ``mean ± std (n=k)`` where ``std`` and ``n`` > 1 are given (see
    :data:`HOW_TO_READ`); a table without methods has one ``value`` column.
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
    parts, left = [], dict(figures or {})
    for key, group in long.groupby(TABLE_KEYS, sort=False):
        table = _table(group, conditions, *key)
        images = left.pop(tuple(key), [])
        parts.append(table + ("\n" + "\n".join(images) + "\n" if images else ""))
    if any(left.values()):  # runs without a headline row
        parts.append("### Other figures\n\n" + "\n".join(i for v in left.values() for i in v))
    return "\n".join(parts)


def _table(
    group: pd.DataFrame, conditions: list[str], exp: str, bench: str, model: str, data: str
) -> str:
    values = {c: _labels(group[c]) for c in conditions}
    fixed = [c for c in conditions if len(set(values[c])) == 1 and values[c][0] != ""]
    varying = [c for c in conditions if len(set(values[c])) > 1]
    names = _method_names(group)
    cells: dict[str, dict[str, str]] = {}
    columns: list[str] = []
    for i, row in enumerate(group.to_dict("records")):
        label = row["metric"] + row["arrow"]
        label += "".join(f" {c}={values[c][i]}" for c in varying if values[c][i] != "")
        name = names[(row["method"], row["method_config"], row["method_hash"])]
        if name not in columns:
            columns.append(name)
        cells.setdefault(label, {})[name] = _cell(row)
    head = f"### {bench} ({model}, {data})" + (f" — experiment {exp}" if exp else "")
    same = ", ".join(f"{c}={values[c][0]}" for c in fixed)
    note = f"Same for all rows: {same}.\n\n" if same else ""
    return f"{head}\n\n{note}{_markdown(cells, columns)}\n"


def _cell(row: Mapping[str, Any]) -> str:
    """``2 ± 1.4 (n=2)``, ``0.997 (n=2000)`` (a single value and the n its benchmark reports)
    or ``0.25``; "" for a missing mean."""
    value = _number(row.get("value"))
    if value is None:
        return ""
    text = f"{value:.4g}"
    n, std, reported = (
        _number(row.get("n")),
        _number(row.get("std")),
        _number(row.get("n_reported")),
    )
    if n is not None and n > 1:
        spread = f" ± {std:.2g}" if std is not None else ""
        return f"{text}{spread} (n={int(n)})"
    if reported is not None:
        return f"{text} (n={int(reported)})"
    return text


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _method_names(group: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """Column name per (label, config, hash): the label, or ``label#hash[:6]`` when one label
    stands for several variants (then ``[config]`` and a counter where that still collides);
    ``value`` for rows without a method (overview, train)."""
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


def _markdown(cells: Mapping[str, Mapping[str, str]], columns: list[str]) -> str:
    lines = [
        "| metric | " + " | ".join(_escape(c) for c in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for label, row in cells.items():
        lines.append(f"| {_escape(label)} | " + " | ".join(row.get(c, "") for c in columns) + " |")
    return "\n".join(lines)


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _image(path: Path, root: Path) -> str:
    """``![stem](relative/path.png)`` of a figure, relative to ``root`` (a link for a PDF)."""
    rel = Path(os.path.relpath(path, root)).as_posix()
    target = quote(rel, safe="/+=,-_.~@")
    alt = path.stem.replace("[", "(").replace("]", ")")
    return f"[{alt}]({target})" if path.suffix == ".pdf" else f"![{alt}]({target})"


def _figure_markdown(runs: list[_Run], root: Path) -> dict[tuple[str, ...], list[str]]:
    """The image lines per summary.md table (figures that exist only)."""
    out: dict[tuple[str, ...], list[str]] = {}
    for run in runs:
        shown = [_image(f, root) for f in run.figures() if f.is_file()]
        if shown:
            out.setdefault(run.table_key(), []).extend(shown)
    return out


def write_summary(output_dir: str | Path) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.md`` into ``output_dir``; return their paths.

    summary.md is a report: per table its figures as images, with paths relative to
    summary.md (so the folder can be moved or published as it is).
    """
    output_dir = Path(output_dir)
    runs = _runs(output_dir)
    long = _long(runs)
    csv_path = atomic_write(output_dir / "summary.csv", lambda p: long.to_csv(p, index=False))
    claims = check_claims(long)
    atomic_write(output_dir / "claims.csv", lambda p: claims.to_csv(p, index=False))
    tables = headline_markdown(long, _figure_markdown(runs, output_dir))
    text = (
        f"# Summary of {output_dir}\n\n{HOW_TO_READ}\n\n{tables}\n"
        f"## The papers' effects\n\n{claims_markdown(claims)}\n\n"
        f"All metrics: [{csv_path.name}]({csv_path.name}); the effects: "
        "[claims.csv](claims.csv).\n"
    )
    md_path = atomic_write_text(output_dir / "summary.md", text)
    return csv_path, md_path
