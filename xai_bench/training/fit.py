"""Train a classifier with Lightning into a checkpoint folder, resuming if it was interrupted."""

from __future__ import annotations

import json
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
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn

from xai_bench.data.base import ResumePoint
from xai_bench.training.lit import Classifier
from xai_bench.training.recipe import Recipe
from xai_bench.utils.distributed import is_global_zero
from xai_bench.utils.errors import UserInputError
from xai_bench.utils.io import atomic_write, atomic_write_json, remove_stray_tmp
from xai_bench.utils.lock import RunLock
from xai_bench.utils.loggers import (
    LoggerFactory,
    close_logger,
    csv_logger,
    open_logger,
    trainer_logger,
)
from xai_bench.utils.verbosity import lightning_is_quiet

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


class LastCheckpoint(pl.Callback):
    """Writes ``last.ckpt`` (atomically, through the trainer's checkpoint IO) after every
    training epoch and every ``every_n_steps`` optimizer steps, with the loops', callbacks' and
    random states, so that a killed run loses at most that much work.

    Lightning's own ``ModelCheckpoint(save_last=True, save_top_k=0)`` writes ``last.ckpt`` only
    when the run ends (Lightning 2.6), which makes resumption impossible.

    With gradient accumulation a checkpoint is written only after the batch that completed an
    optimizer step (never with gradients of a partial accumulation pending).
    """

    def __init__(self, path: str | Path, every_n_steps: int = 0) -> None:
        self.path = Path(path)
        self.every_n_steps = int(every_n_steps)
        self._saved_step = -1

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        n, step = self.every_n_steps, trainer.global_step
        if n > 0 and step % n == 0 and step != self._saved_step and not self._at_epoch_end(trainer):
            self._saved_step = step
            trainer.save_checkpoint(self.path)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.save_checkpoint(self.path)

    @staticmethod
    def _at_epoch_end(trainer: pl.Trainer) -> bool:
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        return done >= trainer.num_training_batches


def resume_point(checkpoint: Mapping[str, Any], batch_size: int) -> tuple[int, int]:
    """``(epoch, samples done in it)`` of a Lightning checkpoint: where training resumes."""
    loop = checkpoint["loops"]["fit_loop"]
    # a checkpoint written in on_train_batch_end counts the batch as processed, not completed
    batches = int(loop["epoch_loop.batch_progress"]["current"]["processed"])
    epoch = int(checkpoint["epoch"])
    finished = bool(loop["epoch_loop.batch_progress"].get("is_last_batch")) or (
        int(loop["epoch_progress"]["current"]["completed"]) > epoch
    )
    return (epoch + 1, 0) if finished else (epoch, batches * int(batch_size))


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


class QuietProgressBar(TQDMProgressBar):
    """Lightning's progress bar without the logger's version (``v_num``), which says nothing
    here: every training logs into its own folder's ``version_0``."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


def recipe_trainer_kwargs(recipe: Recipe, trainer_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The ``trainer`` preset's Lightning Trainer arguments with the recipe's
    ``accumulate_grad_batches``, its validation interval (``val_every``) and, if set, its
    ``precision`` (which replaces the preset's).

    Raises:
        UserInputError: ``16-mixed`` on the CPU (float16 autocast needs a CUDA GPU; CPU
            training runs in ``32-true`` or ``bf16-mixed``).
    """
    out = {**trainer_kwargs, "accumulate_grad_batches": recipe.accumulate_grad_batches}
    if recipe.val_every != 1:  # 0: no validation while fitting (fit_and_test validates after)
        out["check_val_every_n_epoch"] = recipe.val_every or recipe.max_epochs + 1
    if recipe.precision is not None:
        out["precision"] = recipe.precision
    accelerator = str(out.get("accelerator", "auto"))
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and str(out.get("precision")) in ("16-mixed", "16"):
        raise UserInputError(
            "precision 16-mixed (float16 autocast) needs a CUDA GPU but this run trains on the "
            "CPU: set train.precision (or benchmark.recipe.precision) to 32-true or bf16-mixed, "
            "or train on a GPU (trainer=gpu)"
        )
    return out


def fit_and_test(
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    out_dir: str | Path,
    trainer_kwargs: Mapping[str, Any],
    max_epochs: int,
    seed: int = 0,
    progress: bool = True,
    checkpoint_every_n_steps: int = 0,
    make_logger: LoggerFactory | None = csv_logger,
) -> dict[str, Any]:
    """Fit ``module`` (which holds the network as ``module.net``), validate and test it, and
    save ``model.pt`` (the network's state) and ``metrics.json`` into ``out_dir``.

    ``last.ckpt`` is written atomically under ``out_dir/lightning`` after every epoch and every
    ``checkpoint_every_n_steps`` steps (0: epochs only), with the random states. A new call
    with the same ``out_dir`` resumes from it, mid-epoch included (the datamodule's
    ``resume`` point makes its :class:`~xai_bench.data.base.EpochShuffle` skip the batches
    already trained on), and ends with the same numbers as an uninterrupted run.

    One process trains into ``out_dir`` at a time (:class:`~xai_bench.utils.lock.RunLock`):
    a second one waits, then returns the metrics the first one saved (with ``reused: True``).

    A :class:`~xai_bench.training.lit.Classifier` brings its recipe's gradient accumulation and
    precision (:func:`recipe_trainer_kwargs`, checked before ``out_dir`` is created).

    The curves go to ``make_logger``'s logger in ``out_dir/logs/version_0/`` (default: CSV;
    ``None``: no logger; a ``logger`` key of ``trainer_kwargs`` set to false also turns it off).

    Returns:
        ``test_acc``, ``val_acc``, ``test_loss``, ``train_seconds``, ``epochs``, ``resumed_from``
        (the epoch training resumed in, 0 for a fresh start), ``resumed_from_step`` (the
        optimizer step) and ``history`` (per-epoch validation metrics).
    """
    out_dir = Path(out_dir)
    trainer_kwargs, make_logger = trainer_logger(trainer_kwargs, make_logger)
    recipe = getattr(module, "recipe", None)
    if isinstance(recipe, Recipe):
        trainer_kwargs = recipe_trainer_kwargs(recipe, trainer_kwargs)
    if not is_global_zero():  # rank 0 holds the lock for the whole data-parallel run
        return _fit_and_test(module, datamodule, out_dir, trainer_kwargs, max_epochs, seed,
                             progress, checkpoint_every_n_steps, make_logger)  # fmt: skip
    with RunLock(out_dir):
        for path in remove_stray_tmp(out_dir):
            log.info("removed %s, left by a killed run", path)
        if (out_dir / MODEL_FILE).is_file() and (out_dir / METRICS_FILE).is_file():
            log.info("%s was trained meanwhile by another run; reusing it", out_dir)
            return {**json.loads((out_dir / METRICS_FILE).read_text()), "reused": True}
        return _fit_and_test(module, datamodule, out_dir, trainer_kwargs, max_epochs, seed,
                             progress, checkpoint_every_n_steps, make_logger)  # fmt: skip


def _fit_and_test(
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    out_dir: Path,
    trainer_kwargs: Mapping[str, Any],
    max_epochs: int,
    seed: int,
    progress: bool,
    checkpoint_every_n_steps: int,
    make_logger: LoggerFactory | None,
) -> dict[str, Any]:
    pl.seed_everything(seed, workers=True, verbose=False)
    history = EpochHistory()
    last = out_dir / "lightning" / "last.ckpt"
    ckpt = LastCheckpoint(last, checkpoint_every_n_steps)
    callbacks: list[pl.Callback] = [history, RNGState(), ckpt]
    if progress and lightning_is_quiet():
        callbacks.append(QuietProgressBar())
    logger = open_logger(make_logger, out_dir)
    trainer = pl.Trainer(
        **dict(trainer_kwargs),
        max_epochs=max_epochs,
        default_root_dir=str(out_dir),
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
        # the train sampler (EpochShuffle) shards itself over the ranks, resumably; val and test
        # run whole on every rank, so their metrics equal a single process's
        use_distributed_sampler=False,
    )
    resumed_from = resumed_step = 0
    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=False)
        resumed_from, samples = resume_point(state, getattr(datamodule, "batch_size", 1))
        resumed_step = int(state["global_step"])
        if samples and getattr(datamodule, "resume", None) is not None:
            datamodule.resume = ResumePoint(resumed_from, samples)  # type: ignore[attr-defined]
        log.info("resuming %s in epoch %d at step %d (%s)", out_dir.name, resumed_from,
                 resumed_step, last)  # fmt: skip
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if last.is_file() else None)
    seconds = time.perf_counter() - start
    last = history.history[-1] if history.history else {}
    if last.get("epoch") == trainer.current_epoch and "val/acc" in last:
        val_acc = float(last["val/acc"])  # the last epoch's validation: the same weights
    else:
        val = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
        val_acc = float(val["val/acc"])
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    if trainer.is_global_zero:
        close_logger(logger)
    metrics = {
        "val_acc": val_acc,
        "test_acc": float(test["test/acc"]),
        "test_loss": float(test["test/loss"]),
        "train_seconds": seconds,
        "epochs": int(trainer.current_epoch),
        "resumed_from": resumed_from,
        "resumed_from_step": resumed_step,
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
    checkpoint_every_n_steps: int = 0,
    head: str | None = None,
    make_logger: LoggerFactory | None = csv_logger,
) -> dict[str, Any]:
    """Fit ``net`` on the train split with :class:`Classifier` and :func:`fit_and_test`, for
    ``recipe.max_epochs`` epochs.

    ``net`` is trained in place (the caller hands over a network it built for this, e.g. with
    published backbone weights for ``init=pretrained``). The recipe's ``batch_size`` and
    ``augment`` are the datamodule's: the caller builds it with them. ``head``: the classifier
    head's dotted name, for the recipe's head epochs and rates (default: found in ``net``).
    ``make_logger``: the logger of the curves (:func:`fit_and_test`).
    """
    module = Classifier(net, recipe, multilabel=multilabel, head=head)
    return fit_and_test(
        module, datamodule, out_dir, trainer_kwargs, recipe.max_epochs, seed, progress,
        checkpoint_every_n_steps, make_logger,
    )  # fmt: skip
