"""Lock files: a second run of the same work waits for the first and reuses its result; a lock
left by a killed process is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from xai_bench.utils.lock import LOCK_FILE, LockTimeoutError, RunLock

REPO = Path(__file__).resolve().parent.parent


def test_second_holder_waits_then_fails_naming_the_first(tmp_path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom xai_bench.utils.lock import RunLock\n"
         f"with RunLock({str(tmp_path)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        with pytest.raises(LockTimeoutError, match=f"process {holder.pid} on"):
            RunLock(tmp_path, timeout=0.5, poll=0.1).acquire()
        assert time.monotonic() - start >= 0.5  # it waited
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path, timeout=0) as lock:  # the killed holder's lock is stale
        assert lock.took_over and lock.took_over["pid"] == holder.pid
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()


def test_stale_lock_of_another_host_is_taken_over_after_its_heartbeat_stops(tmp_path) -> None:
    record = {"pid": 1, "host": f"not-{socket.gethostname()}", "started": 0}
    (tmp_path / LOCK_FILE).write_text(json.dumps(record))
    with pytest.raises(LockTimeoutError):  # a fresh heartbeat: the holder may be running
        RunLock(tmp_path, timeout=0).acquire()
    old = time.time() - 3600
    os.utime(tmp_path / LOCK_FILE, (old, old))
    with RunLock(tmp_path, timeout=0) as lock:
        assert lock.took_over == record


TRAIN = (
    "benchmark=train", "benchmark.progress=false", "model.net.widths=[4,8,8]", "trainer=cpu",
    "dataset.datamodule.n_train=256", "dataset.datamodule.n_val=32",
    "dataset.datamodule.n_test=32", "train.max_epochs=3", "train.batch_size=32",
)  # fmt: skip


def _train(root: Path, experiment: str) -> subprocess.Popen:
    env = {**os.environ, "XAI_BENCH_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "xai_bench", *TRAIN, f"experiment_name={experiment}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_two_identical_trainings_started_at_once_train_once(make_cfg, tmp_path) -> None:
    """Two runs (different run directories) of the same checkpoint while its folder is locked:
    both wait; then one trains and the other waits for it and reuses the checkpoint; no
    duplicated rows, no second checkpoint file."""
    import threading

    from xai_bench.workspace import Workspace

    folder = Workspace(make_cfg(*TRAIN), tmp_path / "x").checkpoint_dir
    holder = RunLock(folder).acquire()  # a third run is training: both must wait
    procs = [_train(tmp_path, name) for name in ("a", "b")]
    logs: list[list[str]] = [[], []]

    def read(i: int) -> None:
        for line in procs[i].stdout:  # type: ignore[union-attr]
            logs[i].append(line)

    readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in (0, 1)]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not all(
        any(f"waiting for process {os.getpid()}" in line for line in log) for log in logs
    ):
        assert all(p.poll() is None for p in procs), logs
        time.sleep(0.1)
    holder.release()
    for p, reader in zip(procs, readers, strict=True):
        p.wait(timeout=600)
        reader.join()
    assert [p.returncode for p in procs] == [0, 0], logs
    summaries = [
        json.loads(next((tmp_path / "outputs" / n).rglob("summary.json")).read_text())
        for n in ("a", "b")
    ]
    assert sorted(s["reused"] for s in summaries) == [False, True]
    assert summaries[0]["test_acc"] == summaries[1]["test_acc"]
    metrics = pd.read_csv(folder / "logs" / "version_0" / "metrics.csv")
    epochs = metrics.dropna(subset=["val/acc"])["epoch"] if "val/acc" in metrics else []
    assert len(epochs) == len(set(epochs)) >= 3  # every epoch logged once
    assert [p.name for p in (folder / "lightning").iterdir()] == ["last.ckpt"]
    assert not list(folder.rglob("*.tmp")) and not (folder / LOCK_FILE).exists()
