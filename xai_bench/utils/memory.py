"""Peak memory of a code block: CUDA's allocator peak on GPU, the process's peak RSS on CPU."""

from __future__ import annotations

import contextlib
import resource
import sys
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak(device: torch.device) -> int:
    """Reset the peak counter and return the current usage in bytes (the baseline)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    with contextlib.suppress(OSError):  # Linux: "5" resets the peak RSS (VmHWM) to the current
        _CLEAR_REFS.write_text("5")
    rss = _status_kb("VmRSS")
    return 0 if rss is None else rss * 1024


def peak_bytes(device: torch.device) -> int:
    """Peak usage in bytes since :func:`reset_peak` (absolute, not above the baseline)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm * 1024
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
