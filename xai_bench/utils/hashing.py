"""Stable short hashes of configs, used to key checkpoints and caches."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(obj: Any, length: int = 10) -> str:
    """SHA-1 of the canonical JSON of ``obj`` (sorted keys), cut to ``length`` hex digits."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:length]
