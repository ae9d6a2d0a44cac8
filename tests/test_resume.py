"""Training resumes where it was killed: SIGKILL during a middle epoch, at a mid-epoch
checkpoint, then a rerun continues from that step (not from epoch 0, not from the epoch's start)
and ends with the same weights and numbers as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from xai_bench.data.base import EpochShuffle, ResumePoint
from xai_bench.training.fit import resume_point

REPO = Path(__file__).resolve().parent.parent
EPOCHS, STEPS_PER_EPOCH = 4, 24  # 1536 training images in batches of 64
ARGS = (
    "benchmark=train", "benchmark.progress=false", "model.net.widths=[8,16,16]", "trainer=cpu",
    "dataset.datamodule.n_train=1536", "dataset.datamodule.n_val=64",
    "dataset.datamodule.n_test=128", f"train.max_epochs={EPOCHS}", "train.batch_size=64",
    "train.augment=true", "train.step_size=1", "checkpoint_every_n_steps=5",
)  # fmt: skip


def start(root: Path) -> subprocess.Popen:
    env = {**os.environ, "XAI_BENCH_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "xai_bench", *ARGS], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def checkpoint_dir(root: Path) -> Path:
    (folder,) = (root / "outputs" / "cache" / "checkpoints").iterdir()
    return folder


def test_resume_point_and_sampler_skip() -> None:
    loops = {"epoch_progress": {"current": {"completed": 2}}}
    mid = {"epoch": 2, "loops": {"fit_loop": {**loops, "epoch_loop.batch_progress": {
        "current": {"processed": 5}, "is_last_batch": False}}}}  # fmt: skip
    end = {"epoch": 2, "loops": {"fit_loop": {**loops, "epoch_loop.batch_progress": {
        "current": {"processed": 24}, "is_last_batch": True}}}}  # fmt: skip
    assert resume_point(mid, 64) == (2, 320) and resume_point(end, 64) == (3, 0)
    sampler = EpochShuffle(10, seed=3, resume=ResumePoint(1, 4))
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    skipped = list(sampler)
    plain = EpochShuffle(10, seed=3)
    plain.set_epoch(1)
    assert sorted(first) == list(range(10)) and skipped == list(plain)[4:]
    assert list(sampler) == list(plain)  # the skip is used once


def test_sigkill_mid_epoch_resumes_to_the_same_numbers(tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    proc = start(killed)
    deadline, seen, state = time.monotonic() + 300, 0.0, None
    while time.monotonic() < deadline and proc.poll() is None:
        ckpt = next((killed / "outputs" / "cache").rglob("lightning/last.ckpt"), None)
        if ckpt is not None and ckpt.stat().st_mtime != seen:
            seen = ckpt.stat().st_mtime
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
            batch = state["loops"]["fit_loop"]["epoch_loop.batch_progress"]
            if state["epoch"] >= 1 and not batch["is_last_batch"]:
                break  # a mid-epoch checkpoint of a middle epoch: kill now
        time.sleep(0.01)
    assert proc.poll() is None, "the training ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    folder = checkpoint_dir(killed)
    assert not (folder / "metrics.json").exists()
    assert state is not None and state["global_step"] % STEPS_PER_EPOCH != 0

    resumed = start(killed)
    log, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, log[-3000:]
    whole = start(tmp_path / "whole")
    log2, _ = whole.communicate(timeout=600)
    assert whole.returncode == 0, log2[-3000:]

    a = json.loads((folder / "metrics.json").read_text())
    b = json.loads((checkpoint_dir(tmp_path / "whole") / "metrics.json").read_text())
    assert 1 <= a["resumed_from"] < EPOCHS and b["resumed_from"] == 0
    assert a["resumed_from_step"] % STEPS_PER_EPOCH != 0  # resumed inside an epoch
    assert a["resumed_from_step"] >= state["global_step"] > STEPS_PER_EPOCH
    assert a["epochs"] == b["epochs"] == EPOCHS
    assert (a["test_acc"], a["val_acc"], a["test_loss"]) == (
        b["test_acc"], b["val_acc"], b["test_loss"],
    )  # fmt: skip
    assert a["history"] == b["history"]
    wa = torch.load(folder / "model.pt", weights_only=True)
    wb = torch.load(checkpoint_dir(tmp_path / "whole") / "model.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wb)
