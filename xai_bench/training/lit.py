"""One LightningModule that trains any classifier on the dict batches of our DataModules."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xai_bench.training.recipe import Recipe


def accuracy(logits: Tensor, labels: Tensor, multilabel: bool) -> Tensor:
    """Top-1 accuracy, or for multi-label data the share of images whose top class is present."""
    top = logits.argmax(1)
    if multilabel:
        return labels.gather(1, top[:, None]).squeeze(1).float().mean()
    return (top == labels).float().mean()


class Classifier(pl.LightningModule):
    """Trains ``net`` with cross-entropy (or BCE for multi-label data) under a :class:`Recipe`.

    The recipe is kept as :attr:`recipe`; the checkpoint's hyper-parameters hold it as a plain
    dict (``hparams.recipe``), since resumed checkpoints are loaded with ``weights_only=True``.

    Args:
        net: the network (owned by this module during training).
        recipe: optimiser, learning rate, weight decay, schedule and label smoothing
            (default: ``Recipe()``); its ``batch_size``, ``max_epochs`` and ``augment`` are
            applied by the caller's datamodule and trainer.
        multilabel: independent sigmoid outputs (VOC, COCO, shapes_multi).
    """

    def __init__(
        self, net: nn.Module, recipe: Recipe | None = None, multilabel: bool = False
    ) -> None:
        super().__init__()
        self.net = net
        self.recipe = recipe if recipe is not None else Recipe()
        self.save_hyperparameters({"recipe": self.recipe.to_dict(), "multilabel": bool(multilabel)})

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        if self.hparams.multilabel:
            return F.binary_cross_entropy_with_logits(logits, labels.float())
        return F.cross_entropy(logits, labels, label_smoothing=self.recipe.label_smoothing)

    def _step(self, batch: dict[str, Any], stage: str) -> Tensor:
        logits = self(batch["image"])
        loss = self._loss(logits, batch["label"])
        acc = accuracy(logits, batch["label"], self.hparams.multilabel)
        n = batch["image"].shape[0]
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, prog_bar=on_step, batch_size=n, sync_dist=not on_step)
        self.log(f"{stage}/acc", acc, prog_bar=True, batch_size=n, sync_dist=not on_step)
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> Any:
        r = self.recipe
        decay, no_decay = [], []
        for p in self.net.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": r.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if r.optimizer == "adam":
            opt = torch.optim.Adam(groups, lr=r.lr)
        elif r.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=r.lr)
        else:  # "sgd" (Recipe checks the name)
            nesterov = r.nesterov and r.momentum > 0
            opt = torch.optim.SGD(groups, lr=r.lr, momentum=r.momentum, nesterov=nesterov)
        if r.milestones or r.warmup_epochs > 0:  # per-step schedule: warm-up and milestones
            epochs = max(1, int(self.trainer.max_epochs or 1))
            per_epoch = max(1, int(self.trainer.estimated_stepping_batches) // epochs)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, partial(r.lr_factor, steps_per_epoch=per_epoch)
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if r.step_size <= 0:
            return opt
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=r.step_size, gamma=r.gamma)
        return {"optimizer": opt, "lr_scheduler": sched}
