"""Lightning loggers: the curves of every training and each run's headline metrics and figures.

The ``logger`` config group (``logger=csv|tensorboard|wandb|none``, docs/logging.md) is a
partial Lightning logger class. It is opened per folder by :func:`open_logger` as
``make_logger(save_dir=<folder>, name="logs", version=0)``, so the files land in
``<folder>/logs/version_0/`` (a training's checkpoint folder, a ROAR retrain's or a
fine-tune's folder, the run directory) and a rerun appends to the same folder.

This module imports nothing heavy at module level (no torch, no Lightning): the CLI's early
checks read :func:`missing_package`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xai_bench.utils.errors import UserInputError

if TYPE_CHECKING:
    from pytorch_lightning.loggers import Logger

#: builds a Lightning logger: ``make_logger(save_dir=..., name=..., version=...)``
LoggerFactory = Callable[..., "Logger"]

LOG_NAME = "logs"  # <folder>/logs/version_0/: where a folder's logs land
LOG_VERSION = 0

#: the end of a logger's ``_target_`` -> (modules, one of which it needs; the pip extra)
PACKAGES = {
    "TensorBoardLogger": (("tensorboard", "tensorboardX"), "tensorboard"),
    "WandbLogger": (("wandb",), "wandb"),
    "wandb_logger": (("wandb",), "wandb"),
}


def csv_logger(
    save_dir: str | Path, name: str = LOG_NAME, version: int | str = LOG_VERSION
) -> Logger:
    """Lightning's ``CSVLogger`` (``<save_dir>/<name>/version_<version>/metrics.csv``): the
    default of code that builds a :class:`~xai_bench.engine.context.RunContext` itself."""
    from pytorch_lightning.loggers import CSVLogger

    return CSVLogger(str(save_dir), name=name, version=version)


def wandb_logger(
    save_dir: str | Path,
    name: str = LOG_NAME,
    version: int | str | None = None,
    offline: bool = True,
    project: str = "xai-bench",
    **kwargs: Any,
) -> Logger:
    """Lightning's ``WandbLogger`` for one folder: offline by default (no network is assumed;
    ``wandb sync <save_dir>/wandb/offline-run-*`` uploads later), files in
    ``<save_dir>/wandb/``. The run is named after the last three parts of ``save_dir``;
    ``name`` and ``version`` (the folder layout of the file loggers) are not used, so that
    every training gets its own W&B run id.

    Raises:
        UserInputError: the ``wandb`` package is not installed (one line naming the extra).
    """
    del name, version
    problem = missing_package("wandb_logger")
    if problem is not None:
        raise UserInputError(problem)
    from pytorch_lightning.loggers import WandbLogger

    label = "/".join(Path(save_dir).parts[-3:])
    return WandbLogger(name=label, save_dir=str(save_dir), offline=offline, project=project,
                       **kwargs)  # fmt: skip


def missing_package(target: str) -> str | None:
    """The one-line message of a logger (its ``_target_``) whose package is not installed, or
    ``None`` (checked without importing it)."""
    modules, extra = PACKAGES.get(str(target).rsplit(".", 1)[-1], ((), ""))
    if not modules or any(importlib.util.find_spec(m) is not None for m in modules):
        return None
    choice = "wandb" if extra == "wandb" else "tensorboard"
    return (
        f"logger={choice} needs the {modules[0]} package, which is not installed: "
        f"pip install -e '.[{extra}]' (or pip install {modules[0]}), or choose another logger "
        "(logger=csv, logger=none)"
    )


def trainer_logger(
    trainer_kwargs: Mapping[str, Any], make_logger: LoggerFactory | None
) -> tuple[dict[str, Any], LoggerFactory | None]:
    """The trainer preset without its ``logger`` key, and the training logger it leaves:
    ``trainer.logger=false`` (or null) turns the training logger off, ``true`` keeps the
    ``logger`` group's.

    Raises:
        UserInputError: ``trainer.logger`` is anything else (the logger is chosen with the
            ``logger`` group).
    """
    kwargs = dict(trainer_kwargs)
    if "logger" not in kwargs:
        return kwargs, make_logger
    value = kwargs.pop("logger")
    check_trainer_logger(value)
    return kwargs, make_logger if value else None


def check_trainer_logger(value: Any) -> None:
    """``trainer.logger`` must be true, false or null."""
    if value is not None and not isinstance(value, bool):
        raise UserInputError(
            f"trainer.logger must be true or false, got {value!r}: choose the logger with "
            "logger=csv|tensorboard|wandb|none"
        )


def open_logger(make_logger: LoggerFactory | None, folder: str | Path) -> Logger | None:
    """The logger of ``folder`` (``<folder>/logs/version_0/``), or ``None`` without a factory."""
    if make_logger is None:
        return None
    return make_logger(save_dir=str(folder), name=LOG_NAME, version=LOG_VERSION)


def close_logger(logger: Logger | None) -> None:
    """Flush ``logger`` to disk; a W&B run is also finished, so that the next training (a ROAR
    retrain, a fine-tune) starts its own run."""
    if logger is None:
        return
    logger.finalize("success")
    finish = getattr(getattr(logger, "_experiment", None), "finish", None)
    if callable(finish):
        finish()


def headline_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a run's summary: its top-level ints and floats (not the booleans, not
    the nested tables), e.g. ``{"gradcam/deletion_auc": 0.21, "accuracy": 0.9}``."""
    return {
        str(k): float(v)
        for k, v in summary.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def log_run(make_logger: LoggerFactory | None, run_dir: str | Path, summary: Mapping) -> None:
    """Log a finished run into the logger of ``run_dir``: its :func:`headline_metrics` as one
    row at step 0 and its figures (``summary["figures"]``, PNG files) as images (TensorBoard,
    W&B) or, for loggers without images (CSV), as the ``figures`` hyperparameter."""
    logger = open_logger(make_logger, run_dir)
    if logger is None:
        return
    metrics = headline_metrics(summary)
    if metrics:
        logger.log_metrics(metrics, step=0)
    figures = [Path(f) for f in summary.get("figures", []) or [] if Path(f).is_file()]
    if figures and not log_images(logger, figures, Path(run_dir)):
        logger.log_hyperparams({"figures": [_relative(f, Path(run_dir)) for f in figures]})
    close_logger(logger)


def log_images(logger: Logger, figures: list[Path], run_dir: Path) -> bool:
    """Log PNG ``figures`` as images if ``logger`` takes images (TensorBoard's
    ``add_image``, W&B's ``log_image``); whether it did."""
    experiment = logger.experiment
    if hasattr(experiment, "add_image"):  # TensorBoard's SummaryWriter
        from matplotlib.image import imread

        for path in figures:
            image = imread(path)  # [H, W] or [H, W, 3|4], floats in [0, 1] for a PNG
            if image.ndim == 2:
                experiment.add_image(_relative(path, run_dir), image, 0, dataformats="HW")
            else:
                experiment.add_image(_relative(path, run_dir), image[..., :3], 0,
                                     dataformats="HWC")  # fmt: skip
        return True
    if hasattr(logger, "log_image"):  # W&B
        for path in figures:
            logger.log_image(key=_relative(path, run_dir), images=[str(path)], step=0)
        return True
    return False


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return path.name
