"""Shared fixtures: config composition with outputs in a temporary folder, tiny models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from xai_bench.resolvers import register_resolvers
from xai_bench.utils.configs import CONFIG_DIR

register_resolvers()

# The tests use tiny models: one intra-op thread avoids thread contention on small CPU ops
# (10x slower with two threads on a busy 2-core machine) and keeps timings stable.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
GROUPS = ("model", "dataset", "method", "benchmark", "trainer", "experiment")


def group_options(group: str) -> list[str]:
    """Every option of a config group, found by globbing its folder."""
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose the run config with overrides; outputs and data live under ``tmp_path``."""

    def _make(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(
                config_name="run",
                overrides=[f"paths.root_dir={tmp_path}", "device=cpu", *overrides],
            )

    return _make


GRADIENT = {"_target_": "xai_bench.methods.gradient.Gradient", "_partial_": True}
RANDOM = {"_target_": "xai_bench.methods.random.RandomAttribution", "_partial_": True}


def tiny_context(tmp_path: Path, specs: list, num_classes: int = 8):
    """A :class:`RunContext` built without Hydra: a width-4 ResNet-8 (seeded, random weights)
    on 8 test images of ``shapes``, comparing ``specs`` (:class:`MethodSpec` objects)."""
    from xai_bench.data.shapes import ShapesDataModule
    from xai_bench.engine.context import RunContext
    from xai_bench.methods.spec import MethodSet
    from xai_bench.models.meta import ModelMeta
    from xai_bench.models.small import ResNet8

    mean, std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    torch.manual_seed(0)
    net = ResNet8(num_classes=num_classes, widths=(4, 8, 8)).eval()
    dm = ShapesDataModule(n_train=8, n_val=8, n_test=8, root=str(tmp_path), mean=mean, std=std,
                          image_size=32)  # fmt: skip
    meta = ModelMeta.create(name="resnet8", num_classes=num_classes, input_size=[3, 32, 32],
                            mean=mean, std=std, cam_layer="layer3")  # fmt: skip
    return RunContext.create(net, meta, dm, MethodSet(specs), tmp_path)


def kill_in_a_middle_epoch(proc, root: Path, pattern: str = "lightning/last.ckpt") -> dict:
    """Wait until a training started as ``proc`` (its own session) writes a mid-epoch
    ``last.ckpt`` (matching ``pattern`` under ``root``) of epoch >= 1, then SIGKILL its whole
    process group; returns that checkpoint's state. Fails if the training ends first."""
    import os
    import signal
    import time

    deadline, seen, state = time.monotonic() + 300, 0.0, None
    while time.monotonic() < deadline and proc.poll() is None:
        ckpt = next(root.rglob(pattern), None) if root.exists() else None
        if ckpt is not None and ckpt.stat().st_mtime != seen:
            seen = ckpt.stat().st_mtime
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
            batch = state["loops"]["fit_loop"]["epoch_loop.batch_progress"]
            if state["epoch"] >= 1 and not batch["is_last_batch"]:
                break
        time.sleep(0.01)
    assert state is not None and proc.poll() is None, "the training ended before it was killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return state
