"""Reliability: a ROAR run killed in the middle of a retrain resumes from its Lightning
checkpoint and ends with the same numbers as an uninterrupted run with the same seed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
ARGS = (
    "benchmark=roar", "model.weights=random", "model.net.widths=[8,16,16]", "trainer=cpu",
    "dataset.datamodule.n_train=1536", "dataset.datamodule.n_val=64",
    "dataset.datamodule.n_test=128", "benchmark.methods=[gradient]", "benchmark.fractions=[0.5]",
    "benchmark.max_epochs=6", "benchmark.batch_size=64", "benchmark.train_limit=null",
)  # fmt: skip


def start(root: Path) -> subprocess.Popen:
    env = {**os.environ, "XAI_BENCH_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "xai_bench", *ARGS], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def results(root: Path) -> pd.DataFrame:
    (path,) = (root / "outputs").rglob("results.csv")
    table = pd.read_csv(path)
    return table.set_index("metric")["value"]


def test_killed_retrain_resumes_to_the_same_numbers(tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    proc = start(killed)
    deadline = time.monotonic() + 300
    ckpt = None
    while time.monotonic() < deadline and ckpt is None and proc.poll() is None:
        ckpt = next((killed / "outputs").rglob("retrain/*/lightning/last.ckpt"), None)
        time.sleep(0.02)
    assert ckpt is not None and proc.poll() is None, "the retrain ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # mid-retrain: after epoch 1, before the last epoch
    proc.wait()
    assert not list((killed / "outputs").rglob("results.csv"))

    resumed = start(killed)
    log, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, log[-3000:]
    assert "resuming" in log
    whole = start(tmp_path / "whole")
    log2, _ = whole.communicate(timeout=600)
    assert whole.returncode == 0, log2[-3000:]

    a, b = results(killed), results(tmp_path / "whole")
    assert a["resumed_from"] >= 1 and b["resumed_from"] == 0
    assert a["epochs"] == b["epochs"] == 6
    assert a["test_acc"] == b["test_acc"] and a["val_acc"] == b["val_acc"]
