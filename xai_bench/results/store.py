"""Results of one run: a tidy table plus a summary, written atomically, found again on rerun."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from xai_bench.utils.io import atomic_write, atomic_write_json

RESULTS_FILE = "results.csv"
SUMMARY_FILE = "summary.json"


class RunStore:
    """The result files of one run directory.

    ``summary.json`` is written last, so its presence means the run finished; a run that was
    killed before it leaves no summary and is recomputed.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)

    @property
    def done(self) -> bool:
        return (self.run_dir / SUMMARY_FILE).is_file() and (self.run_dir / RESULTS_FILE).is_file()

    def save(self, table: pd.DataFrame, summary: dict[str, Any]) -> None:
        """Write the table, then the summary that marks the run finished."""
        atomic_write(self.run_dir / RESULTS_FILE, lambda p: table.to_csv(p, index=False))
        atomic_write_json(self.run_dir / SUMMARY_FILE, summary)

    def table(self) -> pd.DataFrame:
        return pd.read_csv(self.run_dir / RESULTS_FILE)

    def summary(self) -> dict[str, Any]:
        return json.loads((self.run_dir / SUMMARY_FILE).read_text())


# Text columns that name a row; read as text so that e.g. a hash of digits keeps its zeros.
TEXT_COLUMNS = (
    "experiment", "benchmark", "model", "dataset", "method", "method_config", "method_hash",
    "metric",
)  # fmt: skip
# Method columns that older runs lack; they read as "" there.
METHOD_COLUMNS = ("method_config", "method_hash")


def finished_run_dirs(output_dir: str | Path) -> list[Path]:
    """Run directories under ``output_dir`` (itself included) that hold a finished result."""
    return sorted(
        p.parent
        for p in Path(output_dir).rglob(SUMMARY_FILE)
        if (p.parent / RESULTS_FILE).is_file()
    )


def read_results(path: str | Path) -> pd.DataFrame:
    """One run's ``results.csv`` with its text columns as text ("" where missing) and the
    :data:`METHOD_COLUMNS` added as "" when the run predates them."""
    table = pd.read_csv(path, dtype=dict.fromkeys(TEXT_COLUMNS, str), low_memory=False)
    for key in METHOD_COLUMNS:
        if key not in table:
            table[key] = ""
    text = [key for key in TEXT_COLUMNS if key in table]
    table[text] = table[text].fillna("")
    return table


def load_all(output_dir: str | Path, benchmark: str | None = None) -> pd.DataFrame:
    """Every row of every finished run under ``output_dir`` (for figure scripts), with a
    ``run_dir`` column (the run's folder relative to ``output_dir``, ``.`` for itself) that
    tells runs apart; see :func:`read_results`."""
    root = Path(output_dir)
    frames = []
    for run_dir in finished_run_dirs(root):
        table = read_results(run_dir / RESULTS_FILE)
        table.insert(0, "run_dir", run_dir.relative_to(root).as_posix())
        frames.append(table)
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    if benchmark is not None and "benchmark" in table:
        table = table[table["benchmark"] == benchmark].reset_index(drop=True)
    return table
