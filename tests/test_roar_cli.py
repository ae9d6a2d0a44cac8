"""ROAR through the CLI: a run killed in the middle of a retrain resumes from its Lightning
checkpoint and ends with the same numbers as an uninterrupted run with the same seed; maps
computed data-parallel (2 gloo processes) equal the single-process maps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import kill_in_a_middle_epoch

REPO = Path(__file__).resolve().parent.parent
ARGS = (
    "benchmark=roar", "model.weights=random", "model.net.widths=[8,16,16]", "trainer=cpu",
    "dataset.datamodule.n_train=1536", "dataset.datamodule.n_val=64",
    "dataset.datamodule.n_test=128", "benchmark.methods=[gradient]", "benchmark.fractions=[0.5]",
    "benchmark.recipe.max_epochs=6", "benchmark.recipe.batch_size=64",
    "benchmark.train_limit=null", "checkpoint_every_n_steps=5",
)  # fmt: skip
STEPS_PER_EPOCH = 24  # 1536 images in batches of 64


def start(root: Path, args: tuple[str, ...] = ARGS) -> subprocess.Popen:
    env = {**os.environ, "XAI_BENCH_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "xai_bench", *args], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def results(root: Path) -> pd.Series:
    (path,) = (root / "outputs").rglob("results.csv")
    table = pd.read_csv(path)
    return table[table.method == table.method.iloc[0]].set_index("metric")["value"]


def test_killed_retrain_resumes_to_the_same_numbers(tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    proc = start(killed)
    kill_in_a_middle_epoch(proc, killed / "outputs", "retrain/*/lightning/last.ckpt")
    assert not list((killed / "outputs").rglob("results.csv"))

    resumed = start(killed)
    log, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, log[-3000:]
    assert "resuming" in log
    whole = start(tmp_path / "whole")
    log2, _ = whole.communicate(timeout=600)
    assert whole.returncode == 0, log2[-3000:]

    a, b = results(killed), results(tmp_path / "whole")
    assert 1 <= a["resumed_from"] < 6 and b["resumed_from"] == 0
    assert a["resumed_from_step"] % STEPS_PER_EPOCH != 0  # inside an epoch
    assert a["epochs"] == b["epochs"] == 6
    assert a["test_acc"] == b["test_acc"] and a["val_acc"] == b["val_acc"]


def test_data_parallel_maps_and_scores_equal_single_process(tmp_path: Path) -> None:
    args = (
        "benchmark=roar", "model.weights=random", "model.net.widths=[4,8,8]",
        "dataset.datamodule.n_train=96", "dataset.datamodule.n_val=32",
        "dataset.datamodule.n_test=40", "benchmark.methods=[random,gradient]",
        "benchmark.fractions=[0.5]", "benchmark.recipe.max_epochs=0",
        "benchmark.train_limit=null",
        "benchmark.attribution_batch_size=16",  # 96 train images: 6 shards over 2 ranks
    )  # fmt: skip
    runs = {}
    for trainer in ("ddp_cpu", "cpu"):
        proc = start(tmp_path / trainer, (*args, f"trainer={trainer}"))
        log, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, log[-3000:]
        runs[trainer] = tmp_path / trainer / "outputs"
    (run_dir,) = {p.parent for p in runs["ddp_cpu"].rglob("results.csv")}
    assert (run_dir / "train_ddp_process_1.log").is_file()  # rank 1 ran
    maps = {t: sorted(root.rglob("saliency.npy")) for t, root in runs.items()}
    assert len(maps["cpu"]) == len(maps["ddp_cpu"]) == 6  # 2 methods x 3 splits, same keys
    assert [p.parent.name for p in maps["cpu"]] == [p.parent.name for p in maps["ddp_cpu"]]
    for a, b in zip(maps["cpu"], maps["ddp_cpu"], strict=True):
        assert np.array_equal(np.load(a), np.load(b))
    acc = {}
    for t, root in runs.items():
        (path,) = root.rglob("results.csv")
        table = pd.read_csv(path)
        acc[t] = table[table.metric == "test_acc"][["method", "value"]].to_numpy().tolist()
    assert len(acc["cpu"]) == 2 and acc["cpu"] == acc["ddp_cpu"]

    # a real DDP retrain (2 processes, gloo) on the cached maps: they are not recomputed
    stamps = [p.stat().st_mtime_ns for p in maps["ddp_cpu"]]
    retrain = tuple(a.replace("max_epochs=0", "max_epochs=1") for a in (*args, "trainer=ddp_cpu"))
    proc = start(tmp_path / "ddp_cpu", retrain)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-3000:]
    assert [p.stat().st_mtime_ns for p in maps["ddp_cpu"]] == stamps
    (path,) = [p for p in runs["ddp_cpu"].rglob("results.csv") if p.parent != run_dir]
    table = pd.read_csv(path)
    epochs = table[table.metric == "epochs"]["value"].tolist()
    assert epochs == [1.0, 1.0] and table[table.metric == "test_acc"]["value"].between(0, 1).all()
    assert len(list(path.parent.rglob("retrain/*/model.pt"))) == 2
