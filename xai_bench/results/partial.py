"""Finished pieces of an unfinished run, so that an interrupted benchmark resumes.

A benchmark splits its work into keyed chunks (e.g. ``method=gradient/batch=3``); each finished
chunk's rows are written atomically under ``<run_dir>/partial/<tag>/`` as a checked file
(:mod:`xai_bench.utils.integrity`). A rerun loads finished chunks instead of recomputing them; a
chunk whose checksum fails (truncated, edited) is reported in one line and recomputed. The
``tag`` is a hash of everything that changes the numbers (the benchmark's parameters, model,
data, seed), so a changed config never reuses chunks computed under another one. A store made
with ``force=True`` removes its earlier chunks first: everything is computed anew.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from xai_bench.utils.distributed import remove_tree
from xai_bench.utils.hashing import stable_hash
from xai_bench.utils.integrity import ChecksumError, read_checked_csv, write_checked_csv

PARTIAL_DIR = "partial"
CHUNK_SUFFIX = ".chunk"

log = logging.getLogger(__name__)


def safe_key(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in key)


class PartialStore:
    """Keyed chunks of a result table, written once each.

    Args:
        run_dir: the run directory.
        fingerprint: anything JSON-serialisable that identifies the computation.
        force: remove the chunks (and retrain folders) computed earlier under this fingerprint.
    """

    def __init__(self, run_dir: str | Path, fingerprint: Any, force: bool = False) -> None:
        self.root = Path(run_dir) / PARTIAL_DIR / stable_hash(fingerprint)
        self.loaded: list[str] = []
        self.computed: list[str] = []
        self.corrupt: list[str] = []
        self._checked: dict[str, pd.DataFrame] = {}  # read by has(), handed out by get()
        if force and remove_tree(self.root):
            log.info("force: removed the earlier chunks in %s", self.root)

    def path(self, key: str) -> Path:
        return self.root / f"{safe_key(key)}{CHUNK_SUFFIX}"

    def has(self, key: str) -> bool:
        """Whether the chunk is finished: its file exists and passes its checksum (a corrupt
        one is reported, removed and counts as missing)."""
        path = self.path(key)
        if not path.is_file():
            return False
        try:
            self._checked[key] = self._read(key)
        except ChecksumError as err:
            log.warning("corrupt chunk, recomputing it: %s", err)
            self.corrupt.append(key)
            path.unlink(missing_ok=True)
            return False
        return True

    def _read(self, key: str) -> pd.DataFrame:
        try:
            return read_checked_csv(self.path(key))
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise ChecksumError(f"{self.path(key)}: {err}") from err

    def get(self, key: str) -> pd.DataFrame:
        checked = self._checked.pop(key, None)
        return checked if checked is not None else self._read(key)

    def put(self, key: str, table: pd.DataFrame) -> pd.DataFrame:
        write_checked_csv(self.path(key), table)
        return table

    def cached(self, key: str, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """The chunk's rows: read back if finished earlier, else computed and written."""
        if self.has(key):
            self.loaded.append(key)
            return self.get(key)
        self.computed.append(key)
        return self.put(key, compute())
