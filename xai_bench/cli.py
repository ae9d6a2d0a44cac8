"""Command line: ``xai-bench group=option key=value ...`` (Hydra). See ``xai-bench --help``;
``xai-bench --version`` prints the versions of xai-bench and its libraries."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

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
    from xai_bench.utils.errors import UserInputError, WeightsNotFoundError

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


def fail(err: BaseException) -> NoReturn:
    """Report a user error in one line on stderr and exit with status 2."""
    from xai_bench.utils.errors import one_line

    print(f"xai-bench: error: {one_line(err)}", file=sys.stderr)
    sys.exit(2)


class EarlyChecks(Callback):
    """Hydra callback (``hydra.callbacks.early_checks``): before Hydra creates the run directory
    (so that nothing is written), :func:`xai_bench.checks.check_config` and the benchmark's
    own checks (its constructor). The config checks come first and import no torch, so that
    e.g. a missing pretrained weights file is reported in one line within a second or two."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from xai_bench.checks import check_config
        from xai_bench.utils.errors import UserInputError, WeightsNotFoundError

        try:
            HydraConfig.instance().set_config(config)  # run_job sets it again
            check_config(config, OmegaConf.select(config, "hydra.run.dir"))
            if config.get("benchmark") is not None:
                from xai_bench.run import build_benchmark

                build_benchmark(config.benchmark)  # its values (benchmark.*), e.g. n_images
        except (UserInputError, WeightsNotFoundError) as err:
            fail(err)


def _cause(err: BaseException) -> BaseException:
    """The user error behind Hydra's ``InstantiationException`` (a constructor's own check)."""
    from hydra.errors import InstantiationException

    if isinstance(err, InstantiationException) and isinstance(err.__cause__, user_errors()):
        return err.__cause__
    return err


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="run")
def _main(cfg: DictConfig) -> float | None:
    from hydra.errors import InstantiationException

    from xai_bench.run import run

    run_dir = HydraConfig.get().runtime.output_dir
    try:
        check_launch(cfg)
        summary = run(cfg, run_dir)
    except user_errors() as err:
        fail(err)
    except InstantiationException as err:
        if _cause(err) is err:
            raise
        fail(_cause(err))
    print(f"xai-bench: results in {run_dir}")
    value = next((v for v in summary.values() if isinstance(v, int | float)), None)
    return None if value is None else float(value)


VERSION_FLAGS = ("--version", "-V")


def main() -> None:
    """Console-script entry point. ``--version`` (``-V``) prints the versions of xai-bench and
    its libraries (Hydra's own ``--version`` would print only Hydra's). A paper experiment's
    scale (``scale=embedded|paper``) adds that scale's overrides to the command line first
    (:mod:`xai_bench.experiments`)."""
    if any(arg in VERSION_FLAGS for arg in sys.argv[1:]):
        from xai_bench.provenance import version_lines

        print("\n".join(version_lines()))
        return
    from xai_bench.experiments import expand_argv
    from xai_bench.override_check import unknown_key
    from xai_bench.reproduce import check_paper_inputs
    from xai_bench.utils.errors import UserInputError, WeightsNotFoundError

    try:
        sys.argv[1:] = expand_argv(sys.argv[1:])
        typo = unknown_key(sys.argv[1:])  # a misspelt key: its level's valid keys, one line
        if typo is not None:
            raise UserInputError(typo)
        check_paper_inputs(sys.argv[1:])  # scale=paper: every missing file of the sweep at once
    except (UserInputError, WeightsNotFoundError) as err:
        fail(err)
    _main()
