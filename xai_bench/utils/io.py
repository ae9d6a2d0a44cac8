"""Atomic file writes: a reader never sees a half-written result.

A write goes to ``.<name>.<pid>@<host>.<random>.tmp`` beside its target and is renamed onto
it. A process killed mid-write leaves that file behind; :func:`remove_stray_tmp` deletes the
ones whose writer is gone (its PID no longer runs on this host, or older than a day).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.{os.getpid()}@{socket.gethostname()}."
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda p: p.write_text(text))


def strict_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float as ``None``: valid JSON (``null``)."""
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # a numpy or torch scalar
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps_strict(obj: Any) -> str:
    """Indented, sorted, strict JSON: NaN and infinities are written as ``null``."""
    return json.dumps(strict_json(obj), indent=2, sort_keys=True, default=str, allow_nan=False)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented strict JSON (:func:`dumps_strict`) to ``path`` atomically."""
    return atomic_write_text(path, dumps_strict(obj) + "\n")


STALE_SECONDS = 24 * 3600
_TMP_OWNER = re.compile(r"\.(\d+)@(.+)\.[A-Za-z0-9_]+\.tmp$")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def _writer_gone(name: str, age: float) -> bool:
    """Whether the writer of a temporary file named ``name`` no longer runs."""
    match = _TMP_OWNER.search(name)  # ".<target>.<pid>@<host>.<random>.tmp"
    if match and match[2] == socket.gethostname():
        return not pid_alive(int(match[1]))
    return age > STALE_SECONDS  # another host's, or an older format: only when a day old


def remove_stray_tmp(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Delete the temporary files of killed writers under ``folder``; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp")
    removed, now = [], time.time()
    for path in found:
        try:
            if path.is_file() and _writer_gone(path.name, now - path.stat().st_mtime):
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # its writer renamed it meanwhile
            continue
    return removed
