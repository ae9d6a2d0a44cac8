"""Training: a smoke run, checkpoint reuse and keys, and the embedded default's accuracy."""

from __future__ import annotations

import json

import torch

from xai_bench.run import run
from xai_bench.workspace import Workspace

TINY = (
    "benchmark=train", "model.net.widths=[4,8,8]", "dataset.datamodule.n_train=96",
    "dataset.datamodule.n_val=32", "dataset.datamodule.n_test=32", "train.max_epochs=1",
    "train.batch_size=32", "trainer=cpu", "benchmark.progress=false",
)  # fmt: skip


def test_train_smoke_saves_and_reuses_checkpoint(make_cfg, tmp_path) -> None:
    cfg = make_cfg(*TINY)
    out = run(cfg, tmp_path / "run1")
    assert out["reused"] is False and 0.0 <= out["test_acc"] <= 1.0
    ws = Workspace(cfg, tmp_path / "run1")
    assert (ws.checkpoint_dir / "model.pt").is_file()
    assert (ws.checkpoint_dir / "lightning" / "last.ckpt").is_file()
    metrics = json.loads((ws.checkpoint_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 1

    again = run(cfg, tmp_path / "run2")  # another run dir: finds the checkpoint, trains nothing
    assert again["reused"] is True and again["test_acc"] == out["test_acc"]
    assert run(cfg, tmp_path / "run1")["cached"] is True  # same run dir: the result itself

    other = Workspace(make_cfg(*TINY, "train.lr=0.01"), tmp_path)
    assert other.checkpoint_dir != ws.checkpoint_dir, "a new recipe must not reuse a checkpoint"
    same = Workspace(make_cfg(*TINY, "num_workers=1", "trainer=auto"), tmp_path)
    assert same.checkpoint_dir == ws.checkpoint_dir, "runtime settings do not change the key"

    trained = Workspace(
        make_cfg(*TINY, "model.weights=trained", "train_if_missing=false"), tmp_path
    )
    state = torch.load(ws.checkpoint_dir / "model.pt", weights_only=True)
    for key, value in trained.model.state_dict().items():
        assert torch.equal(value, state[key])
    assert not trained.model.training


def test_embedded_default_reaches_90_percent(make_cfg, tmp_path) -> None:
    """The README's figure: the embedded ResNet-8 on shapes reaches >= 90% test accuracy."""
    cfg = make_cfg(
        "experiment=embedded", "benchmark=train", "benchmark.progress=false", "trainer=cpu"
    )
    out = run(cfg, tmp_path / "train")
    assert out["test_acc"] >= 0.90
    overview = run(make_cfg("experiment=embedded"), tmp_path / "overview")
    assert (
        overview["accuracy"] == out["test_acc"]
        or abs(overview["accuracy"] - out["test_acc"]) < 1e-6
    )
    assert (tmp_path / "overview" / "samples.png").stat().st_size > 10_000
