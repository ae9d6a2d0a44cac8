"""One LightningModule that trains any classifier on the dict batches of our DataModules."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def accuracy(logits: Tensor, labels: Tensor, multilabel: bool) -> Tensor:
    """Top-1 accuracy, or for multi-label data the share of images whose top class is present."""
    top = logits.argmax(1)
    if multilabel:
        return labels.gather(1, top[:, None]).squeeze(1).float().mean()
    return (top == labels).float().mean()


class Classifier(pl.LightningModule):
    """Trains ``net`` with cross-entropy (or BCE for multi-label data).

    Args:
        net: the network (owned by this module during training).
        optimizer: ``adam``, ``adamw`` or ``sgd`` (momentum 0.9, Nesterov).
        lr: learning rate.
        weight_decay: L2 weight decay.
        step_size: epochs between learning-rate decays (StepLR), or 0 for none.
        gamma: learning-rate decay factor.
        multilabel: independent sigmoid outputs (VOC, COCO, shapes_multi).
        label_smoothing: cross-entropy label smoothing.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        step_size: int = 0,
        gamma: float = 0.5,
        multilabel: bool = False,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.net = net
        self.save_hyperparameters(ignore=["net"])

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        if self.hparams.multilabel:
            return F.binary_cross_entropy_with_logits(logits, labels.float())
        return F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)

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
        hp = self.hparams
        decay, no_decay = [], []
        for p in self.net.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": hp.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if hp.optimizer == "adam":
            opt = torch.optim.Adam(groups, lr=hp.lr)
        elif hp.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=hp.lr)
        elif hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=0.9, nesterov=True)
        else:
            raise ValueError(f"unknown optimizer '{hp.optimizer}' (adam, adamw, sgd)")
        if hp.step_size <= 0:
            return opt
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=hp.step_size, gamma=hp.gamma)
        return {"optimizer": opt, "lr_scheduler": sched}
