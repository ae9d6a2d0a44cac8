"""Stable short hashes of configs, used to key checkpoints and caches."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch


def stable_hash(obj: Any, length: int = 10) -> str:
    """SHA-1 of the canonical JSON of ``obj`` (sorted keys), cut to ``length`` hex digits."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def state_hash(module: torch.nn.Module, length: int = 16) -> str:
    """SHA-1 of a module's parameters and buffers (names, shapes, dtypes and bytes)."""
    h = hashlib.sha1()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{tuple(tensor.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:length]
