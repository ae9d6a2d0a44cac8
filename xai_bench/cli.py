"""Command line: ``xai-bench group=option key=value ...`` (Hydra). See ``xai-bench --help``."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from xai_bench.resolvers import register_resolvers
from xai_bench.utils.configs import CONFIG_DIR

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


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="run")
def _main(cfg: DictConfig) -> float | None:
    from xai_bench.run import run

    run_dir = HydraConfig.get().runtime.output_dir
    try:
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
