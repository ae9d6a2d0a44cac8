"""provenance.json describes the run that computed the results (a cached call leaves it as it
is, and it is no part of the cache key); git facts are null outside a checkout, never an error;
``--version`` prints xai-bench's and the libraries' versions."""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch
import torchvision

import xai_bench
from tests.test_run import TINY
from xai_bench import provenance
from xai_bench.provenance import PROVENANCE_FILE, git_state
from xai_bench.run import run

REPO = Path(__file__).resolve().parent.parent
KEYS = {"git_commit", "git_dirty", "versions", "device", "device_name", "host", "slurm_job_id",
        "start", "end", "wall_time_s", "peak_rss_bytes", "peak_cuda_bytes"}  # fmt: skip
VERSION_KEYS = {"xai_bench", "python", "torch", "torchvision", "timm", "pytorch_lightning",
                "hydra", "omegaconf", "cuda", "cudnn"}  # fmt: skip
GIT = shutil.which("git")


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    return subprocess.run([*cmd, "-C", str(folder), *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)  # fmt: skip


def _repo_commit() -> str | None:
    """HEAD of this repository when the package runs from it as a git checkout, else None."""
    if GIT is None:
        return None
    if _git(REPO / "xai_bench", "ls-files", "--error-unmatch", "__init__.py").returncode:
        return None
    return _git(REPO, "rev-parse", "HEAD").stdout.strip()


def test_run_writes_provenance_and_a_cached_call_keeps_it(make_cfg, tmp_path) -> None:
    run_dir = tmp_path / "r"
    before = datetime.now(timezone.utc)
    first = run(make_cfg(*TINY), run_dir)
    after = datetime.now(timezone.utc)
    assert first["cached"] is False
    path = run_dir / PROVENANCE_FILE
    data = json.loads(path.read_text())

    assert set(data) == KEYS and set(data["versions"]) == VERSION_KEYS
    versions = data["versions"]
    assert versions["torch"] == torch.__version__
    assert versions["torchvision"] == torchvision.__version__
    assert versions["xai_bench"] == xai_bench.__version__
    assert versions["python"] == platform.python_version()
    assert versions["cuda"] == torch.version.cuda
    assert all(isinstance(versions[k], str) for k in VERSION_KEYS - {"cuda", "cudnn"})
    assert data["device"] == "cpu" and isinstance(data["device_name"], str) and data["device_name"]
    assert data["host"] == socket.gethostname()
    assert data["slurm_job_id"] == (os.environ.get("SLURM_JOB_ID") or None)
    start, end = (datetime.fromisoformat(data[k]) for k in ("start", "end"))
    assert start.utcoffset() == end.utcoffset() == timezone.utc.utcoffset(None)
    assert before <= start <= end <= after
    assert 0 <= data["wall_time_s"] <= (after - before).total_seconds() + 0.01
    assert abs(data["wall_time_s"] - (end - start).total_seconds()) < 0.5
    assert isinstance(data["peak_rss_bytes"], int) and data["peak_rss_bytes"] > 10 * 2**20
    if not torch.cuda.is_initialized():
        assert data["peak_cuda_bytes"] is None
    commit = _repo_commit()
    assert data["git_commit"] == commit
    assert isinstance(data["git_dirty"], bool) if commit else data["git_dirty"] is None

    # a cached call leaves the file of the run that computed the numbers untouched
    stamp, content = path.stat().st_mtime_ns, path.read_bytes()
    time.sleep(0.05)  # an mtime change would be visible
    again = run(make_cfg(*TINY), run_dir)
    assert again["cached"] is True
    assert path.stat().st_mtime_ns == stamp and path.read_bytes() == content

    # no part of the cache key: without it the results are still reused (and nothing is written)
    path.unlink()
    assert run(make_cfg(*TINY), run_dir)["cached"] is True
    assert not path.exists()

    # a recomputation describes itself
    forced = run(make_cfg(*TINY, "force=true"), run_dir)
    assert forced["cached"] is False
    redone = json.loads(path.read_text())
    assert datetime.fromisoformat(redone["start"]) >= end


def test_slurm_job_id_and_absent_libraries(monkeypatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setitem(provenance.LIBRARIES, "not_a_library", "xai_bench_no_such_module")
    data = provenance.provenance(provenance.start(), "cpu")
    assert data["slurm_job_id"] == "4242"
    assert data["versions"]["not_a_library"] is None
    assert data["versions"]["torch"] == torch.__version__
    monkeypatch.delenv("SLURM_JOB_ID")
    assert provenance.provenance(provenance.start(), "cpu")["slurm_job_id"] is None


@pytest.mark.skipif(GIT is None, reason="needs git")
def test_git_state_of_checkouts_and_other_folders(tmp_path) -> None:
    repo = tmp_path / "repo"
    pkg = repo / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    for args in (("init", "-q"), ("add", "pkg"), ("commit", "-q", "-m", "one")):
        assert _git(repo, *args).returncode == 0
    head = _git(repo, "rev-parse", "HEAD").stdout.strip()
    assert git_state(pkg) == {"commit": head, "dirty": False}

    (pkg / "__init__.py").write_text("x = 2\n")
    assert git_state(pkg) == {"commit": head, "dirty": True}  # a changed tracked file
    assert _git(repo, "checkout", "-q", "--", "pkg").returncode == 0
    assert git_state(pkg)["dirty"] is False
    (pkg / "new.py").write_text("")
    assert git_state(pkg) == {"commit": head, "dirty": True}  # an untracked file

    # a package that git does not track, even inside a checkout (a venv in a repository)
    installed = repo / "venv" / "xai_bench"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    assert git_state(installed) == {"commit": None, "dirty": None}
    plain = tmp_path / "plain"
    plain.mkdir()
    assert git_state(plain) == {"commit": None, "dirty": None}
    assert git_state(tmp_path / "missing") == {"commit": None, "dirty": None}


@pytest.mark.skipif(shutil.which("sleep") is None, reason="needs sleep")
def test_git_absent_or_hanging_gives_null(tmp_path, monkeypatch) -> None:
    sleep = shutil.which("sleep")
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
    assert git_state(REPO / "xai_bench") == {"commit": None, "dirty": None}

    fake = tmp_path / "git"  # a git that hangs (a stale network mount)
    fake.write_text(f"#!/bin/sh\nexec {sleep} 30\n")
    fake.chmod(0o755)
    monkeypatch.setattr(provenance, "GIT_TIMEOUT_S", 0.3)
    began = time.monotonic()
    assert git_state(REPO / "xai_bench") == {"commit": None, "dirty": None}
    assert time.monotonic() - began < 10


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XAI_BENCH_", "PYTHON"))}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def test_version_flag_prints_our_and_the_libraries_versions(tmp_path) -> None:
    cmd = [sys.executable, "-m", "xai_bench", "--version"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=_env(),
                         timeout=300, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert lines[0] == f"xai-bench {xai_bench.__version__}"
    assert f"torch {torch.__version__}" in lines
    assert f"torchvision {torchvision.__version__}" in lines
    names = [line.split()[0] for line in lines[1:]]
    assert names == [k for k in provenance.versions() if k != "xai_bench"]
    assert not any(tmp_path.iterdir())  # prints only: no config composed, no run directory


def test_short_version_flag_in_process(monkeypatch, capsys) -> None:
    from xai_bench import cli

    monkeypatch.setattr(sys, "argv", ["xai-bench", "-V"])
    cli.main()  # returns (exit status 0) instead of starting Hydra
    out = capsys.readouterr().out.splitlines()
    assert out == provenance.version_lines()
    assert out[0] == f"xai-bench {xai_bench.__version__}" and f"torch {torch.__version__}" in out
