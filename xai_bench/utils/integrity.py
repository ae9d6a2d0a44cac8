"""Self-validating files: a truncated or edited chunk is detected, never loaded as a result.

A checked file is one header line ``xai-bench-checked <sha256> <bytes>`` followed by the
payload. :func:`read_checked` returns the payload only when its length and SHA-256 match, and
raises :class:`ChecksumError` otherwise. Writes are atomic (:func:`~xai_bench.utils.io.
atomic_write`), so a corrupt file comes from outside: a full disk, a copy cut short, an edit.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

from xai_bench.utils.io import atomic_write

MAGIC = b"xai-bench-checked"


class ChecksumError(ValueError):
    """A checked file whose payload does not match its header (the message names the file)."""


def write_checked(path: str | Path, payload: bytes) -> Path:
    """Write ``payload`` behind its length and SHA-256, atomically."""
    header = b"%s %s %d\n" % (MAGIC, hashlib.sha256(payload).hexdigest().encode(), len(payload))
    return atomic_write(path, lambda p: p.write_bytes(header + payload))


def read_checked(path: str | Path) -> bytes:
    """The payload of a checked file; :class:`ChecksumError` if it does not match."""
    data = Path(path).read_bytes()
    head, sep, payload = data.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 3 or parts[0] != MAGIC or not parts[2].isdigit():
        raise ChecksumError(f"{path}: not a checked file (no checksum header)")
    if int(parts[2]) != len(payload):
        raise ChecksumError(f"{path}: {len(payload)} bytes where {int(parts[2])} were written")
    if hashlib.sha256(payload).hexdigest().encode() != parts[1]:
        raise ChecksumError(f"{path}: checksum mismatch (the file was changed)")
    return payload


def write_checked_csv(path: str | Path, table: Any) -> Path:
    """A pandas table as checked CSV."""
    return write_checked(path, table.to_csv(index=False).encode())


def read_checked_csv(path: str | Path) -> Any:
    """A table written by :func:`write_checked_csv`."""
    import pandas as pd

    payload = read_checked(path)
    if not payload.strip():
        return pd.DataFrame()
    return pd.read_csv(io.BytesIO(payload))
