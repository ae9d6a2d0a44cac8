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
