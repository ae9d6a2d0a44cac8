"""One LightningModule that trains any classifier on the dict batches of our DataModules."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xai_bench.models.finetune import find_head, head_parameters
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

    Fine-tuning (:attr:`Recipe.splits_head`): the classifier head (``head``, found by
    :func:`~xai_bench.models.finetune.find_head` when not given) and the backbone get parameter
    groups of their own at ``head_lr`` and ``backbone_lr``; during the first ``head_epochs``
    epochs the backbone's parameters are frozen and its modules in eval mode (BatchNorm keeps
    its running statistics, dropout is off), so only the head learns.

    Args:
        net: the network (owned by this module during training).
        recipe: optimiser, learning rate, weight decay, schedule and label smoothing
            (default: ``Recipe()``); its ``batch_size``, ``max_epochs`` and ``augment`` are
            applied by the caller's datamodule and trainer.
        multilabel: independent sigmoid outputs (VOC, COCO, shapes_multi).
        head: dotted name of the classifier head (``model.head``; default: found in ``net``).
    """

    def __init__(
        self,
        net: nn.Module,
        recipe: Recipe | None = None,
        multilabel: bool = False,
        head: str | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.recipe = recipe if recipe is not None else Recipe()
        self.head_name = find_head(net, head) if self.recipe.splits_head else head
        self._frozen: list[nn.Parameter] = []
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

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.recipe.head_epochs > 0:
            self.freeze_backbone(self.current_epoch < self.recipe.head_epochs)

    def on_train_end(self) -> None:
        self.freeze_backbone(False)

    def freeze_backbone(self, frozen: bool) -> None:
        """Freeze (``requires_grad=False``, eval mode) or release the backbone, i.e. every
        parameter and module of ``net`` outside the head. Releasing it restores the flags it
        froze and puts ``net`` in train mode; only for networks this module owns."""
        if not frozen:
            if self._frozen:
                for p in self._frozen:
                    p.requires_grad_(True)
                self._frozen = []
                self.net.train()
            return
        head = self.net.get_submodule(str(self.head_name))
        if not self._frozen:
            own = {id(p) for p in head.parameters()}
            params = self.net.parameters()
            self._frozen = [p for p in params if p.requires_grad and id(p) not in own]
            for p in self._frozen:
                p.requires_grad_(False)
        self.net.eval()
        head.train()

    def param_groups(self) -> list[dict[str, Any]]:
        """The optimiser's parameter groups. Weight decay applies to weights of two or more
        dimensions only. With :attr:`Recipe.splits_head` the head's and the backbone's
        parameters form groups of their own, named ``head`` and ``backbone``, at ``head_lr``
        and ``backbone_lr`` (``lr`` where ``None``)."""
        r = self.recipe
        split = r.splits_head
        head = head_parameters(self.net, str(self.head_name)) if split else set()
        groups: list[dict[str, Any]] = []
        for part, lr in (("backbone", r.backbone_lr), ("head", r.head_lr)):
            decay, no_decay = [], []
            for p in self.net.parameters():
                if p.requires_grad and (id(p) in head) == (part == "head"):
                    (no_decay if p.ndim <= 1 else decay).append(p)
            for params, wd in ((decay, r.weight_decay), (no_decay, 0.0)):
                if not split:
                    groups.append({"params": params, "weight_decay": wd})
                elif params:
                    groups.append({"params": params, "weight_decay": wd, "name": part,
                                   "lr": r.lr if lr is None else lr})  # fmt: skip
            if not split:
                break
        return groups

    def configure_optimizers(self) -> Any:
        r = self.recipe
        groups = self.param_groups()
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
