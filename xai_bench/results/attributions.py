"""Saliency of a whole dataset split on disk, computed once and shared by every run that needs
the same maps (ROAR retrains on them for every fraction and seed).

A cache is keyed by everything that changes the maps: the model's weights (a hash of their
bytes), the dataset and split, the method's resolved config, the explained class and how maps
are collapsed (ROAR folds them into one :func:`~xai_bench.engine.fingerprint.fingerprint`).
Work is split into shards of ``batch_size`` images, each written atomically, so an
interrupted computation resumes and a data-parallel run spreads the shards over its ranks;
the finished shards are then joined into one ``saliency.npy`` that is read memory-mapped.
Jobs of a sweep that share a cache may compute it concurrently: every write is atomic and the
first finished join wins, so they only duplicate work.

Shards are checked files (:mod:`xai_bench.utils.integrity`); the joined array's SHA-256 is
written beside it (``saliency.sha256``) and compared at every load (through the remembered
digest of :func:`~xai_bench.utils.digest.file_digest`, so an unchanged file is not re-read). A
corrupt shard or array is reported in one line and computed again.
"""

from __future__ import annotations

import io
import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xai_bench.utils.digest import file_digest
from xai_bench.utils.distributed import barrier, distributed_map, is_global_zero, remove_tree
from xai_bench.utils.hashing import stable_hash
from xai_bench.utils.integrity import ChecksumError, read_checked, write_checked
from xai_bench.utils.io import atomic_write, atomic_write_json, atomic_write_text, remove_stray_tmp

log = logging.getLogger(__name__)

ARRAY_FILE = "saliency.npy"
DIGEST_FILE = "saliency.sha256"
KEY_FILE = "key.json"
DTYPES = {"float32": np.float32, "float16": np.float16}


class AttributionCache:
    """One split's maps ``[N, ...]`` under ``root/<hash of key>/``.

    Args:
        root: the folder shared by all caches (``RunContext.attribution_dir``).
        key: JSON-serialisable description of the maps (a fingerprint of weights, data, split,
            method ...; written beside them as ``key.json``).
        dtype: ``float32`` or ``float16`` (halves the disk of ImageNet-size caches).
        force: remove the maps (and shards) computed earlier: they are computed anew.
    """

    def __init__(
        self, root: str | Path, key: Mapping[str, Any], dtype: str = "float32", force: bool = False
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got '{dtype}'")
        self.key = dict(key)
        self.dtype = dtype
        self.dir = Path(root) / stable_hash({**self.key, "dtype": dtype}, 16)
        if force and remove_tree(self.dir):
            log.info("force: removed the cached maps in %s", self.dir)

    @property
    def path(self) -> Path:
        return self.dir / ARRAY_FILE

    @property
    def done(self) -> bool:
        return self.path.is_file() and (self.dir / DIGEST_FILE).is_file()

    def shard(self, number: int) -> Path:
        return self.dir / "shards" / f"{number:06d}.pt"

    def load(self) -> np.ndarray:
        """The finished maps, memory-mapped read-only (:class:`ChecksumError` if they do not
        match their digest)."""
        expected = (self.dir / DIGEST_FILE).read_text().strip()
        if file_digest(self.path) != expected:
            raise ChecksumError(f"{self.path}: checksum mismatch (the file was changed)")
        return np.load(self.path, mmap_mode="r")

    def valid(self) -> bool:
        """Whether finished maps are there and intact (corrupt ones are reported and removed)."""
        if not self.done:
            return False
        try:
            self.load()
        except (ChecksumError, ValueError, OSError) as err:
            log.warning("corrupt attribution cache, recomputing it: %s", err)
            if is_global_zero():
                self.path.unlink(missing_ok=True)
                (self.dir / DIGEST_FILE).unlink(missing_ok=True)
            barrier()
            return False
        return True

    def has_shard(self, number: int) -> bool:
        """Whether a shard is finished and intact (a corrupt one is reported and removed)."""
        if not self.shard(number).is_file():
            return False
        try:
            self.read_shard(number)
        except (ChecksumError, OSError, RuntimeError) as err:
            log.warning("corrupt attribution shard, recomputing it: %s", err)
            self.shard(number).unlink(missing_ok=True)
            return False
        return True

    def write_shard(self, number: int, maps: Tensor) -> None:
        """Store one shard's maps as a checked file."""
        buffer = io.BytesIO()
        torch.save(maps, buffer)
        write_checked(self.shard(number), buffer.getvalue())

    def read_shard(self, number: int) -> Tensor:
        payload = read_checked(self.shard(number))
        return torch.load(io.BytesIO(payload), weights_only=True)

    def build(
        self,
        n_items: int,
        batch_size: int,
        compute: Callable[[list[int]], Tensor],
        trainer: Mapping[str, Any] | None = None,
    ) -> np.ndarray:
        """Compute the missing shards (``compute(indices) -> [b, ...]`` maps of those items),
        over the ranks of a DDP ``trainer`` preset, join them and return the memory map."""
        if is_global_zero():
            for path in remove_stray_tmp(self.dir):
                log.info("removed %s, left by a killed run", path)
        if not self.valid():
            n_shards = -(-n_items // batch_size)

            def work(number: int) -> None:
                if self.done:  # another job sharing this cache finished it meanwhile
                    return
                idx = list(range(number * batch_size, min(n_items, (number + 1) * batch_size)))
                maps = compute(idx).detach().float().cpu()
                if maps.shape[0] != len(idx):
                    raise ValueError(f"{maps.shape[0]} maps for {len(idx)} images")
                try:
                    self.write_shard(number, maps)
                except (FileNotFoundError, RuntimeError):  # a concurrent job joined the
                    if not self.done:  # maps and removed the shards folder mid-write
                        raise

            atomic_write_json(self.dir / KEY_FILE, self.key)
            distributed_map(range(n_shards), work, trainer, self.has_shard)
            if is_global_zero() and not self.done:
                try:
                    self._join(n_shards, n_items)
                except FileNotFoundError:  # a concurrent job joined and removed the shards
                    if not self.done:
                        raise
            barrier()
        if is_global_zero() and (self.dir / "shards").exists():
            shutil.rmtree(self.dir / "shards", ignore_errors=True)  # strays of a concurrent job
        return self.load()

    def _join(self, n_shards: int, n_items: int) -> None:
        first = self.read_shard(0)
        shape = (n_items, *first.shape[1:])

        def write(tmp: Path) -> None:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=DTYPES[self.dtype], shape=shape)
            row = 0
            for number in range(n_shards):
                maps = self.read_shard(number).numpy()
                out[row : row + len(maps)] = maps
                row += len(maps)
            out.flush()
            del out

        atomic_write(self.path, write)
        atomic_write_text(self.dir / DIGEST_FILE, file_digest(self.path) + "\n")
