"""Train a classifier with Lightning into a checkpoint folder, resuming if it was interrupted."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn

from xai_bench.training.lit import Classifier
from xai_bench.training.recipe import Recipe
from xai_bench.utils.io import atomic_write, atomic_write_json

MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temporary file and renamed: a kill never leaves a
    truncated ``last.ckpt`` behind."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        atomic_write(Path(path), lambda p: torch.save(checkpoint, p))


class EpochHistory(pl.Callback):
    """Validation metrics after every training epoch (an accuracy curve).

    The history is part of the checkpoint, so a resumed run returns the whole curve.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        row = {"epoch": float(trainer.current_epoch + 1)}
        for key, value in trainer.callback_metrics.items():
            if key.startswith("val/"):
                row[key] = float(value)
        self.history.append(row)

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])


class RNGState(pl.Callback):
    """Saves the Python, NumPy and torch random states in every checkpoint and restores them on
    resume, so random augmentation continues as if the run had not been interrupted."""

    def state_dict(self) -> dict[str, Any]:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        numpy_state = [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]
        state = {"python": random.getstate(), "numpy": numpy_state}
        state["torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(state_dict["python"])
        name, keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def fit_and_test(
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    out_dir: str | Path,
    trainer_kwargs: Mapping[str, Any],
    max_epochs: int,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit ``module`` (which holds the network as ``module.net``), validate and test it, and
    save ``model.pt`` (the network's state) and ``metrics.json`` into ``out_dir``.

    Lightning keeps ``last.ckpt`` (written atomically, with the random states) after every
    epoch under ``out_dir/lightning``; a new call with the same ``out_dir`` resumes from it,
    so an interruption costs at most one epoch and ends with the same numbers.

    Returns:
        ``test_acc``, ``val_acc``, ``test_loss``, ``train_seconds``, ``epochs``, ``resumed_from``
        (the epoch training resumed at, 0 for a fresh start) and ``history`` (per-epoch
        validation metrics).
    """
    out_dir = Path(out_dir)
    pl.seed_everything(seed, workers=True, verbose=False)
    if not progress:  # quiet: no "GPU available" banner per run (warnings still show)
        logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    history = EpochHistory()
    ckpt = ModelCheckpoint(dirpath=out_dir / "lightning", save_last=True, save_top_k=0)
    trainer = pl.Trainer(
        **dict(trainer_kwargs),
        max_epochs=max_epochs,
        default_root_dir=str(out_dir),
        logger=CSVLogger(str(out_dir), name="logs", version=0),
        callbacks=[history, RNGState(), ckpt],
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
    )
    last = out_dir / "lightning" / "last.ckpt"
    resumed_from = 0
    if last.is_file():
        resumed_from = int(torch.load(last, map_location="cpu", weights_only=False)["epoch"]) + 1
        log.info("resuming %s from epoch %d (%s)", out_dir.name, resumed_from, last)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if last.is_file() else None)
    seconds = time.perf_counter() - start
    val = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    metrics = {
        "val_acc": float(val["val/acc"]),
        "test_acc": float(test["test/acc"]),
        "test_loss": float(test["test/loss"]),
        "train_seconds": seconds,
        "epochs": int(trainer.current_epoch),
        "resumed_from": resumed_from,
        "history": history.history,
    }
    if trainer.is_global_zero:
        state = {k: v.detach().cpu().clone() for k, v in module.net.state_dict().items()}
        atomic_write(out_dir / MODEL_FILE, lambda p: torch.save(state, p))
        atomic_write_json(out_dir / METRICS_FILE, metrics)
    return metrics


def train_classifier(
    net: nn.Module,
    datamodule: pl.LightningDataModule,
    out_dir: str | Path,
    trainer_kwargs: Mapping[str, Any],
    recipe: Recipe,
    multilabel: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit ``net`` on the train split with :class:`Classifier` and :func:`fit_and_test`, for
    ``recipe.max_epochs`` epochs.

    ``net`` is trained in place (the caller hands over a network it built for this). The
    recipe's ``batch_size`` and ``augment`` are the datamodule's: the caller builds it with them.
    """
    module = Classifier(net, recipe, multilabel=multilabel)
    return fit_and_test(
        module, datamodule, out_dir, trainer_kwargs, recipe.max_epochs, seed, progress
    )
