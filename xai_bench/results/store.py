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


def load_all(output_dir: str | Path, benchmark: str | None = None) -> pd.DataFrame:
    """Concatenate every finished run's table under ``output_dir`` (for figure scripts)."""
    frames = [
        pd.read_csv(p)
        for p in sorted(Path(output_dir).rglob(RESULTS_FILE))
        if (p.parent / SUMMARY_FILE).is_file()
    ]
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    if benchmark is not None and "benchmark" in table:
        table = table[table["benchmark"] == benchmark]
    return table
