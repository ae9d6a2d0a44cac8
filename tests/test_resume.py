"""Training resumes where it was killed: SIGKILL during a middle epoch, at a mid-epoch
checkpoint, then a rerun continues from that step (not from epoch 0, not from the epoch's start)
and ends with the same weights and numbers as an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import kill_in_a_middle_epoch
from xai_bench.data.base import EpochShuffle, ResumePoint
from xai_bench.training.fit import resume_point

REPO = Path(__file__).resolve().parent.parent
EPOCHS, STEPS_PER_EPOCH = 4, 24  # 1536 training images in batches of 64 (12 per rank in DDP)
ARGS = (
    "benchmark=train", "benchmark.progress=false", "model.net.widths=[8,16,16]",
    "dataset.datamodule.n_train=1536", "dataset.datamodule.n_val=64",
    "dataset.datamodule.n_test=128", f"train.max_epochs={EPOCHS}", "train.batch_size=64",
    "train.augment=true", "train.step_size=1", "checkpoint_every_n_steps=5",
)  # fmt: skip


def start(root: Path, trainer: str = "cpu") -> subprocess.Popen:
    ranks = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "SLURM_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ranks)}  # a local launch
    env.update(XAI_BENCH_ROOT=str(root), OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "xai_bench", *ARGS, f"trainer={trainer}"], cwd=REPO, env=env,
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


@pytest.mark.parametrize("trainer", ["cpu", "ddp_cpu"])
def test_sigkill_mid_epoch_resumes_to_the_same_numbers(tmp_path: Path, trainer: str) -> None:
    """``ddp_cpu``: 2 processes (gloo); the kill takes both, the rerun resumes both ranks."""
    steps = STEPS_PER_EPOCH // (2 if trainer == "ddp_cpu" else 1)
    killed = tmp_path / "killed"
    proc = start(killed, trainer)
    state = kill_in_a_middle_epoch(proc, killed / "outputs" / "cache")
    folder = checkpoint_dir(killed)
    assert not (folder / "metrics.json").exists()
    assert state["global_step"] % steps != 0
    lock = folder / ".lock"
    assert json.loads(lock.read_text())["pid"] == proc.pid  # left behind by the killed run

    resumed = start(killed, trainer)
    log, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, log[-3000:]
    assert "took over the stale lock" in log and not lock.exists()
    whole = start(tmp_path / "whole", trainer)
    log2, _ = whole.communicate(timeout=600)
    assert whole.returncode == 0, log2[-3000:]

    a = json.loads((folder / "metrics.json").read_text())
    b = json.loads((checkpoint_dir(tmp_path / "whole") / "metrics.json").read_text())
    assert 1 <= a["resumed_from"] < EPOCHS and b["resumed_from"] == 0
    assert a["resumed_from_step"] % steps != 0  # resumed inside an epoch
    assert a["resumed_from_step"] >= state["global_step"] > steps
    assert a["epochs"] == b["epochs"] == EPOCHS
    assert (a["test_acc"], a["val_acc"], a["test_loss"]) == (
        b["test_acc"], b["val_acc"], b["test_loss"],
    )  # fmt: skip
    assert a["history"] == b["history"]
    wa = torch.load(folder / "model.pt", weights_only=True)
    wb = torch.load(checkpoint_dir(tmp_path / "whole") / "model.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wb)
