"""Overview: the model's test accuracy and a figure of test images with boxes and predictions."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from xai_bench.data.base import check_split
from xai_bench.engine.batches import check_count
from xai_bench.engine.benchmark import Result, Task
from xai_bench.engine.context import RunContext
from xai_bench.training.lit import accuracy
from xai_bench.viz.figures import sample_grid


class Overview(Task):
    """Accuracy of the evaluated model on one split, and a grid of labelled samples.

    Args:
        split: ``train``, ``val`` or ``test``.
        batch_size: evaluation batch size.
        n_figure: images in the sample figure.
    """

    name = "overview"
    headline = {"accuracy": True}

    def __init__(self, split: str = "test", batch_size: int = 256, n_figure: int = 16) -> None:
        self.split = check_split(split)
        self.batch_size = check_count(int(batch_size), "batch_size")
        self.n_figure = check_count(int(n_figure), "n_figure", low=0)

    @torch.no_grad()
    def run(self, ctx: RunContext) -> Result:
        model, dm, multilabel = ctx.model, ctx.datamodule, ctx.meta.multilabel
        correct, total, first = 0.0, 0, None
        for batch in dm.dataloader(self.split, batch_size=self.batch_size):
            x, y = batch["image"].to(ctx.device), batch["label"].to(ctx.device)
            logits = model(x)
            correct += float(accuracy(logits, y, multilabel)) * x.shape[0]
            total += x.shape[0]
            if first is None:
                first = (batch, logits.argmax(1).cpu())
        acc = correct / max(total, 1)
        figures = []
        if first is not None and self.n_figure:
            figures.append(str(self.figure(ctx, *first)))
        table = pd.DataFrame(
            [
                {
                    **ctx.identity,
                    "seed": ctx.seed,
                    "benchmark": self.name,
                    "split": self.split,
                    "metric": "accuracy",
                    "value": acc,
                    "n": total,
                }
            ]
        )
        summary = {"accuracy": acc, "n": total, "headline": dict(self.headline)}
        return Result(table, summary, figures)

    def figure(self, ctx: RunContext, batch: dict[str, Any], pred: torch.Tensor) -> Any:
        """``samples.png``: the first images with their classes, the prediction (wrong ones
        framed in red) and their named object boxes."""
        dm = ctx.datamodule
        k = min(self.n_figure, batch["image"].shape[0])
        names = dm.class_names
        titles = [
            f"{_label(batch['label'][i], names)} → {_name(int(pred[i]), names)}" for i in range(k)
        ]
        right = [_predicted_right(batch["label"][i], int(pred[i])) for i in range(k)]
        boxes, box_names = batch.get("boxes"), None
        if boxes is not None:
            boxes = [_to_input(boxes[i], batch, i) for i in range(k)]
            labels = batch.get("box_labels")
            if labels is not None:
                box_names = [[_name(int(c), names) for c in labels[i].tolist()] for i in range(k)]
        return sample_grid(
            dm.denormalize(batch["image"][:k]), titles, boxes, ctx.run_dir / "samples.png",
            box_labels=box_names, correct=right,
        )  # fmt: skip


def _to_input(boxes: torch.Tensor, batch: dict[str, Any], i: int) -> torch.Tensor:
    """Boxes in original-image pixels scaled to the model input (``orig_size`` -> image)."""
    sizes = batch.get("orig_size")
    if sizes is None:
        return boxes
    h0, w0 = (float(s) for s in sizes[i])
    h, w = batch["image"].shape[-2:]
    scale = torch.tensor([w / w0, h / h0, w / w0, h / h0], dtype=boxes.dtype)
    return boxes * scale


def _predicted_right(label: torch.Tensor, pred: int) -> bool:
    """The prediction is the class (single label) or one of the present classes (multi-hot)."""
    if label.dim() == 0:
        return int(label) == pred
    return bool(label[pred] > 0)


def _name(index: int, names: list[str] | None) -> str:
    return str(index) if names is None else names[index]


def _label(label: torch.Tensor, names: list[str] | None) -> str:
    """A class name, or the present classes of a multi-hot label."""
    if label.dim() == 0:
        return _name(int(label), names)
    return ", ".join(_name(i, names) for i in label.nonzero().flatten().tolist())
