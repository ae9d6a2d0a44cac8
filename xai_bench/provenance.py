"""Provenance of a run (``provenance.json``): the code, libraries, machine and time that computed
its numbers.

:func:`xai_bench.run.run` writes the file beside the results, on global rank zero, after it saved
them. A call that only reuses finished results leaves it as it is: it describes the run that
computed the numbers. It is not part of the config, so it changes no cache key.
``xai-bench --version`` prints :func:`version_lines`.
"""

from __future__ import annotations

import importlib
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import xai_bench
from xai_bench.utils.io import atomic_write_json

PROVENANCE_FILE = "provenance.json"
#: seconds one git command may take (a slow network file system must not hold up a run)
GIT_TIMEOUT_S = 5.0
#: libraries whose versions are recorded: name in provenance.json -> module read
LIBRARIES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "timm": "timm",
    "pytorch_lightning": "pytorch_lightning",
    "hydra": "hydra",
    "omegaconf": "omegaconf",
}


@dataclass(frozen=True)
class Started:
    """When a computation started: the UTC time and a monotonic clock reading."""

    time: datetime
    clock: float


def start() -> Started:
    """The start of a computation (call it before computing)."""
    return Started(datetime.now(timezone.utc), time.perf_counter())


def module_version(module: str) -> str | None:
    """``module.__version__`` (``None`` if the module is not installed)."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    version = getattr(mod, "__version__", None)
    return None if version is None else str(version)


def cuda_versions() -> dict[str, str | None]:
    """The CUDA and cuDNN versions torch was built with (``None`` on a CPU build)."""
    cudnn = None
    try:
        if torch.backends.cudnn.is_available():
            found = torch.backends.cudnn.version()
            cudnn = None if found is None else str(found)
    except (RuntimeError, OSError):  # a cuDNN library that does not load
        cudnn = None
    return {"cuda": torch.version.cuda, "cudnn": cudnn}


def versions() -> dict[str, str | None]:
    """xai-bench's version, Python's, each of :data:`LIBRARIES` and CUDA's and cuDNN's."""
    out: dict[str, str | None] = {
        "xai_bench": xai_bench.__version__,
        "python": platform.python_version(),
    }
    out.update({name: module_version(module) for name, module in LIBRARIES.items()})
    out.update(cuda_versions())
    return out


def version_lines() -> list[str]:
    """What ``xai-bench --version`` prints: one ``name version`` per line, xai-bench first."""
    found = versions()
    lines = [f"xai-bench {found.pop('xai_bench')}"]
    return lines + [f"{name} {value or 'none'}" for name, value in found.items()]


def _git(folder: Path, *args: str) -> str | None:
    """The output of ``git -C folder args`` (``None``: no git, an error or a timeout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}  # no GIT_DIR & co
    env["GIT_OPTIONAL_LOCKS"] = "0"  # `git status` must not lock the index of a busy checkout
    try:
        res = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            env=env,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def git_state(package_dir: str | Path | None = None) -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the git checkout the code runs from, or both ``None``.

    The package folder (default: xai_bench's) counts as a checkout when its ``__init__.py`` is
    tracked by git, so an installed package inside some other repository (a venv in a
    checkout) gets ``None``. ``dirty``: a tracked file changed or an untracked file that is not
    ignored (``git status --porcelain``).
    """
    folder = Path(package_dir or Path(xai_bench.__file__).parent)
    if not folder.is_dir() or _git(folder, "ls-files", "--error-unmatch", "__init__.py") is None:
        return {"commit": None, "dirty": None}
    commit = _git(folder, "rev-parse", "HEAD") or None
    status = None if commit is None else _git(folder, "status", "--porcelain")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def device_name(device: torch.device) -> str | None:
    """The GPU's name for a CUDA device, else the CPU model."""
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return cpu_model()


def peak_memory(device: torch.device) -> dict[str, int | None]:
    """The process's peak resident memory (``getrusage``) and, when this process used CUDA,
    the CUDA allocator's peak on ``device`` (or the current GPU), both in bytes. Both are peaks
    of the process, since it started or since the last reset of the counters."""
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    cuda = None
    if torch.cuda.is_initialized():
        gpu = device if device.type == "cuda" else torch.device("cuda", torch.cuda.current_device())
        cuda = int(torch.cuda.max_memory_allocated(gpu))
    return {"peak_rss_bytes": int(rss), "peak_cuda_bytes": cuda}


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def provenance(started: Started, device: torch.device | str) -> dict[str, Any]:
    """The content of ``provenance.json`` for a computation that began at ``started`` and ends
    now, on ``device`` (the run's evaluation device)."""
    device = torch.device(device)
    end, wall = datetime.now(timezone.utc), time.perf_counter() - started.clock
    git = git_state()
    return {
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "versions": versions(),
        "device": str(device),
        "device_name": device_name(device),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID") or None,
        "start": _iso(started.time),
        "end": _iso(end),
        "wall_time_s": round(wall, 3),
        **peak_memory(device),
    }


def discard(run_dir: str | Path) -> None:
    """Remove a run's old ``provenance.json`` before its results are replaced, so that a run
    killed between saving the results and :func:`write` leaves none rather than a wrong one."""
    (Path(run_dir) / PROVENANCE_FILE).unlink(missing_ok=True)


def write(run_dir: str | Path, started: Started, device: torch.device | str) -> Path:
    """Write :func:`provenance` to ``run_dir/provenance.json`` atomically; returns its path."""
    return atomic_write_json(Path(run_dir) / PROVENANCE_FILE, provenance(started, device))
