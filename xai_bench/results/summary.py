"""One summary table of every finished run under an outputs folder (what `make run` prints).

Each run's tidy ``results.csv`` is averaged per (benchmark, model, dataset, metric, method); the
headline metrics of each benchmark are pivoted into a methods-as-columns table, written as
``summary.csv`` (long) and ``summary.md`` (readable, with the figures of every run) atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from xai_bench.results.store import RESULTS_FILE, SUMMARY_FILE
from xai_bench.utils.io import atomic_write, atomic_write_text

KEYS = ["benchmark", "model", "dataset", "metric", "method"]
# Context columns that split a metric into several numbers (a curve's x, a condition).
EXTRA = ["stage", "fraction", "shift"]

# Metrics shown in summary.md per benchmark (all metrics are kept in summary.csv). A benchmark
# missing here shows every metric.
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


def finished_runs(output_dir: str | Path) -> list[Path]:
    """Run directories under ``output_dir`` that hold a finished result."""
    return sorted(
        p.parent
        for p in Path(output_dir).rglob(SUMMARY_FILE)
        if (p.parent / RESULTS_FILE).is_file()
    )


def long_summary(output_dir: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Mean ``value`` per :data:`KEYS` over all finished runs, and their figure paths."""
    frames, figures = [], []
    for run_dir in finished_runs(output_dir):
        table = pd.read_csv(run_dir / RESULTS_FILE)
        if not {"benchmark", "metric", "value"} <= set(table.columns):
            continue
        for key in KEYS + EXTRA:
            if key not in table:
                table[key] = ""
        table["value"] = pd.to_numeric(table["value"], errors="coerce")
        part = table[[*KEYS, *EXTRA, "value"]].copy()
        for key in EXTRA:  # a condition missing on a row (e.g. a curve's AUC) becomes ""
            part[key] = [_label(v) for v in part[key]]
        frames.append(part)
        summary = json.loads((run_dir / SUMMARY_FILE).read_text())
        figures += [str(f) for f in summary.get("figures", [])]
    if not frames:
        return pd.DataFrame(columns=[*KEYS, *EXTRA, "value", "n"]), figures
    table = pd.concat(frames, ignore_index=True).fillna({k: "" for k in KEYS})
    grouped = table.groupby([*KEYS, *EXTRA], sort=False, dropna=False)["value"]
    out = grouped.mean().to_frame("value")
    out["n"] = grouped.count()
    return out.reset_index(), figures


def _label(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value) or value == "":
        return ""
    return str(value)


def headline_markdown(long: pd.DataFrame) -> str:
    """The headline metrics as markdown tables, one per (benchmark, model, dataset)."""
    parts = []
    for (bench, model, data), group in long.groupby(["benchmark", "model", "dataset"], sort=False):
        wanted = HEADLINE.get(str(bench))
        if wanted is not None:
            group = group[group.metric.isin(wanted)]
        if group.empty:
            continue
        group = group.assign(
            metric=[
                m + "".join(f" {k}={row[k]}" for k in EXTRA if row[k] != "")
                for m, (_, row) in zip(group.metric, group.iterrows())
            ]
        )
        pivot = group.pivot_table(
            index="metric", columns="method", values="value", aggfunc="mean", sort=False
        )
        parts.append(f"### {bench} ({model}, {data})\n\n{_markdown(pivot)}\n")
    return "\n".join(parts)


def _markdown(frame: pd.DataFrame) -> str:
    cols = [str(c) for c in frame.columns]
    lines = ["| metric | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for index, row in frame.iterrows():
        cells = ["" if pd.isna(v) else f"{v:.4g}" for v in row.tolist()]
        lines.append(f"| {index} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_summary(output_dir: str | Path) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.md`` into ``output_dir``; return their paths."""
    output_dir = Path(output_dir)
    long, figures = long_summary(output_dir)
    csv_path = atomic_write(output_dir / "summary.csv", lambda p: long.to_csv(p, index=False))
    figs = "\n".join(f"- {Path(f).resolve().relative_to(output_dir.resolve())}" for f in figures if
                     Path(f).resolve().is_relative_to(output_dir.resolve()))  # fmt: skip
    text = (
        f"# Summary of {output_dir}\n\n{headline_markdown(long)}\n"
        f"All metrics: {csv_path.name}. Figures:\n\n{figs}\n"
    )
    md_path = atomic_write_text(output_dir / "summary.md", text)
    return csv_path, md_path
