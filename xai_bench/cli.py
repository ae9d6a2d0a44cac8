"""Command line: ``xai-bench group=option key=value ...`` (Hydra). See ``xai-bench --help``."""

from __future__ import annotations

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from xai_bench.resolvers import register_resolvers
from xai_bench.utils.configs import CONFIG_PATH

# Resolvers must exist wherever a config is resolved, also in launcher subprocesses that
# unpickle the task function, so they are registered when this module is imported.
register_resolvers()


def user_errors() -> tuple[type[Exception], ...]:
    """Errors caused by the run's inputs: reported in one line, without a traceback."""
    from xai_bench.data.base import DatasetNotFoundError
    from xai_bench.methods.base import MethodNotApplicableError
    from xai_bench.models.layers import UnknownLayerError
    from xai_bench.models.weights import WeightsNotFoundError
    from xai_bench.utils.errors import UserInputError

    return (
        DatasetNotFoundError,
        WeightsNotFoundError,
        MethodNotApplicableError,
        UnknownLayerError,
        UserInputError,
    )


def check_launch(cfg: DictConfig) -> None:
    """Refuse a DDP trainer in a local multirun: Lightning would re-run the whole sweep per GPU.

    DDP inside a sweep works where the scheduler starts one process per GPU (SLURM with
    ``hydra.launcher.tasks_per_node`` = GPUs per node, torchrun).
    """
    from hydra.types import RunMode
    from lightning_fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    from xai_bench.utils.distributed import is_distributed
    from xai_bench.utils.errors import UserInputError

    if HydraConfig.get().mode != RunMode.MULTIRUN or not is_distributed(cfg.trainer):
        return
    external = "LOCAL_RANK" in os.environ or SLURMEnvironment.detect()
    if not (external or TorchElasticEnvironment.detect()):
        raise UserInputError(
            f"trainer={HydraConfig.get().runtime.choices.trainer} starts several processes, "
            "which a local sweep (-m) cannot host: run DDP jobs one at a time without -m, or "
            "sweep on SLURM with hydra/launcher=slurm hydra.launcher.tasks_per_node=<GPUs>"
        )


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="run")
def _main(cfg: DictConfig) -> float | None:
    from xai_bench.run import run

    run_dir = HydraConfig.get().runtime.output_dir
    try:
        check_launch(cfg)
        summary = run(cfg, run_dir)
    except user_errors() as err:
        print(f"xai-bench: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"xai-bench: results in {run_dir}")
    value = next((v for v in summary.values() if isinstance(v, int | float)), None)
    return None if value is None else float(value)


def main() -> None:
    """Console-script entry point."""
    _main()
