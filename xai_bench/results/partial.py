"""Finished pieces of an unfinished run, so that an interrupted benchmark resumes.

A benchmark splits its work into keyed chunks (e.g. ``method=gradient/batch=3``); each finished
chunk's rows are written atomically under ``<run_dir>/partial/<tag>/``. A rerun loads finished
chunks instead of recomputing them. The ``tag`` is a hash of everything that changes the
numbers (the benchmark's parameters, model, data, seed), so a changed config never reuses
chunks computed under another one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from xai_bench.utils.hashing import stable_hash
from xai_bench.utils.io import atomic_write

PARTIAL_DIR = "partial"


def safe_key(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in key)


class PartialStore:
    """Keyed chunks of a result table, written once each.

    Args:
        run_dir: the run directory.
        fingerprint: anything JSON-serialisable that identifies the computation.
    """

    def __init__(self, run_dir: str | Path, fingerprint: Any) -> None:
        self.root = Path(run_dir) / PARTIAL_DIR / stable_hash(fingerprint)
        self.loaded: list[str] = []
        self.computed: list[str] = []

    def path(self, key: str) -> Path:
        return self.root / f"{safe_key(key)}.csv"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> pd.DataFrame:
        return pd.read_csv(self.path(key))

    def put(self, key: str, table: pd.DataFrame) -> pd.DataFrame:
        atomic_write(self.path(key), lambda p: table.to_csv(p, index=False))
        return table

    def cached(self, key: str, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """The chunk's rows: read back if finished earlier, else computed and written."""
        if self.has(key):
            self.loaded.append(key)
            return self.get(key)
        self.computed.append(key)
        return self.put(key, compute())
