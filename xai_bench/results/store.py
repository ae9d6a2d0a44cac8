"""Results of one run: a tidy table plus a summary, written atomically, found again on rerun."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from xai_bench.utils.digest import sha256_file
from xai_bench.utils.io import atomic_write, atomic_write_text, dumps_strict, strict_json

RESULTS_FILE = "results.csv"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"
FILES_KEY = "files"  # summary.json: SHA-256 of results.csv and config.yaml
CHECKSUM_KEY = "checksum"  # summary.json: SHA-256 of the summary itself (without this key)
NOT_FINISHED = "not finished"
FIGURES_KEY = "figures"  # summary.json: the run's figures, relative to the run directory


def _summary_checksum(summary: dict[str, Any]) -> str:
    body = {k: v for k, v in summary.items() if k != CHECKSUM_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class RunStore:
    """The result files of one run directory: ``results.csv``, ``config.yaml`` (the config
    they were computed with) and ``summary.json``.

    :meth:`save` removes the old summary, writes the table and the config, then the summary,
    each atomically. The summary is strict JSON (NaN as ``null``) and holds the SHA-256 of the
    two other files and of itself, so its presence with matching checksums means the run
    finished and its files belong together; anything else (killed mid-save, a file edited or
    cut short) is recomputed.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)

    def problem(self) -> str | None:
        """Why the finished results cannot be used (``None``: they can)."""
        summary_path, results = self.run_dir / SUMMARY_FILE, self.run_dir / RESULTS_FILE
        if not summary_path.is_file() or not results.is_file():
            return NOT_FINISHED
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError) as err:
            return f"{summary_path} is not valid JSON ({err})"
        if CHECKSUM_KEY in summary and summary[CHECKSUM_KEY] != _summary_checksum(summary):
            return f"{summary_path}: checksum mismatch (the file was changed)"
        for name, digest in summary.get(FILES_KEY, {}).items():
            path = self.run_dir / name
            if not path.is_file() or sha256_file(path) != digest:
                return f"{path} does not match the checksum in {SUMMARY_FILE}"
        return None

    @property
    def done(self) -> bool:
        return self.problem() is None

    def save(self, table: pd.DataFrame, summary: dict[str, Any], config: str = "") -> None:
        """Write the table and ``config`` (the text of ``config.yaml``), then the summary that
        marks the run finished and holds their checksums."""
        (self.run_dir / SUMMARY_FILE).unlink(missing_ok=True)  # unfinished until it is back
        atomic_write(self.run_dir / RESULTS_FILE, lambda p: table.to_csv(p, index=False))
        files = [RESULTS_FILE]
        if config:
            atomic_write_text(self.run_dir / CONFIG_FILE, config)
            files.append(CONFIG_FILE)
        digests = {name: sha256_file(self.run_dir / name) for name in files}
        body = strict_json({**relative_paths(summary, self.run_dir), FILES_KEY: digests})
        body[CHECKSUM_KEY] = _summary_checksum(body)
        atomic_write_text(self.run_dir / SUMMARY_FILE, dumps_strict(body) + "\n")

    def table(self) -> pd.DataFrame:
        return pd.read_csv(self.run_dir / RESULTS_FILE)

    def summary(self) -> dict[str, Any]:
        """The stored summary; its figures as paths under the run directory (the file holds
        them relative to it; older runs hold absolute paths, returned as they are)."""
        summary = json.loads((self.run_dir / SUMMARY_FILE).read_text())
        if isinstance(summary.get(FIGURES_KEY), list):
            summary[FIGURES_KEY] = [str(self.run_dir / f) for f in summary[FIGURES_KEY]]
        return summary


def relative_paths(obj: Any, run_dir: Path) -> Any:
    """``obj`` with its paths relative to ``run_dir``, so that a run folder can be moved: every
    ``figures`` entry (written as a path under ``run_dir``) and every other absolute path that
    exists or lies under ``run_dir``, at any depth; other values as they are."""
    base = os.path.abspath(run_dir)

    def rel(value: Any, figure: bool = False) -> Any:
        if isinstance(value, Mapping):
            return {k: rel(v, figure=k == FIGURES_KEY) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [rel(v, figure) for v in value]
        if not isinstance(value, str | Path) or not str(value):
            return value
        path = os.path.abspath(value)
        inside = path == base or path.startswith(base + os.sep)
        given = Path(value)
        if given.is_absolute() and (inside or _exists(given)):
            return Path(os.path.relpath(path, base)).as_posix()
        if figure and _exists(given):  # a figure written as a path from the working directory
            return Path(os.path.relpath(path, base)).as_posix()
        return str(value) if isinstance(value, Path) else value

    return rel(obj)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a text too long for a file name, or with a NUL
        return False


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
