"""Content keys of files and folders: a replaced weights file or dataset never reuses old results.

A file is keyed by the SHA-256 of its bytes. The digest is remembered per (path, size, mtime)
under :func:`digest_cache_dir`, so a large weights file is read once, not at every run; a file
that is rewritten gets a new mtime and is hashed again. A folder (a dataset root) is keyed by
its file list with every file's size and mtime, which a walk reads without opening the files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xai_bench.utils.io import atomic_write_text

CHUNK = 1 << 20


def digest_cache_dir() -> Path:
    """Where remembered digests live: ``$XAI_BENCH_DIGESTS``, else ``~/.cache/xai-bench``."""
    if os.environ.get("XAI_BENCH_DIGESTS"):
        return Path(os.environ["XAI_BENCH_DIGESTS"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xai-bench" / "digests"


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-256 of ``path``'s bytes, remembered for its (absolute path, size, mtime)."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    entry = digest_cache_dir() / f"{hashlib.sha1(str(path).encode()).hexdigest()}.json"
    try:
        known = json.loads(entry.read_text())
        if all(known.get(k) == v for k, v in stamp.items()):
            return str(known["sha256"])
    except (OSError, ValueError, KeyError):
        pass
    digest = sha256_file(path)
    with contextlib.suppress(OSError):  # a read-only home: the digest is not remembered
        atomic_write_text(entry, json.dumps({**stamp, "sha256": digest}))
    return digest


def tree_digest(root: str | Path) -> str:
    """SHA-256 of a folder's file list with each file's size and mtime (no file is read)."""
    root = Path(root)
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                st = os.stat(full)
            except OSError:  # a link to nowhere
                continue
            rel = os.path.relpath(full, root)
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def path_digest(path: str | Path) -> str | None:
    """:func:`file_digest` of a file, :func:`tree_digest` of a folder, ``None`` if absent."""
    p = Path(path)
    if p.is_file():
        return file_digest(p)
    if p.is_dir():
        return tree_digest(p)
    return None


def content_keyed(obj: Any) -> Any:
    """``obj`` with every string that names an existing file replaced by ``{"path", "sha256"}``
    (recursively through mappings and lists): a cache key that changes with the file."""
    if isinstance(obj, Mapping):
        return {k: content_keyed(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [content_keyed(v) for v in obj]
    if isinstance(obj, str) and _looks_like_file(obj):
        return {"path": obj, "sha256": file_digest(obj)}
    return obj


def _looks_like_file(text: str) -> bool:
    if not text or len(text) > 4096 or "\n" in text:
        return False
    if "/" not in text and not Path(text).suffix:  # a name such as "gradient", not a path
        return False
    try:
        return Path(text).expanduser().is_file()
    except (OSError, ValueError):
        return False
