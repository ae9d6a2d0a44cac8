"""Train a classifier with Lightning into a checkpoint folder, resuming if it was interrupted."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch import nn

from xai_bench.data.base import ImageDataModule
from xai_bench.models.lit import Classifier
from xai_bench.utils.io import atomic_write, atomic_write_json

MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"


def train_classifier(
    net: nn.Module,
    datamodule: ImageDataModule,
    out_dir: str | Path,
    trainer_kwargs: Mapping[str, Any],
    max_epochs: int,
    optimizer: str = "adam",
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    step_size: int = 0,
    gamma: float = 0.5,
    label_smoothing: float = 0.0,
    multilabel: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """Fit ``net`` on the train split, test it, and save ``model.pt`` and ``metrics.json``.

    ``net`` is trained in place (the caller hands over a network it built for this). Lightning
    keeps ``last.ckpt`` after every epoch under ``out_dir/lightning``; a new call with the same
    ``out_dir`` resumes from it, so an interruption costs at most one epoch.

    Returns:
        ``test_acc``, ``val_acc``, ``test_loss``, ``train_seconds`` and ``epochs``.
    """
    out_dir = Path(out_dir)
    pl.seed_everything(seed, workers=True, verbose=False)
    module = Classifier(
        net,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        step_size=step_size,
        gamma=gamma,
        multilabel=multilabel,
        label_smoothing=label_smoothing,
    )
    ckpt = ModelCheckpoint(dirpath=out_dir / "lightning", save_last=True, save_top_k=0)
    trainer = pl.Trainer(
        **dict(trainer_kwargs),
        max_epochs=max_epochs,
        default_root_dir=str(out_dir),
        logger=CSVLogger(str(out_dir), name="logs", version=0),
        callbacks=[ckpt],
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
    )
    last = out_dir / "lightning" / "last.ckpt"
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
    }
    if trainer.is_global_zero:
        state = {k: v.detach().cpu().clone() for k, v in module.net.state_dict().items()}
        atomic_write(out_dir / MODEL_FILE, lambda p: torch.save(state, p))
        atomic_write_json(out_dir / METRICS_FILE, metrics)
    return metrics
