"""Overview: the model's test accuracy and a figure of test images with boxes and predictions."""

from __future__ import annotations

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
        if first is not None:
            batch, pred = first
            k = min(self.n_figure, batch["image"].shape[0])
            names = dm.class_names
            titles = [
                f"{_label(batch['label'][i], names)} / pred {_name(int(pred[i]), names)}"
                for i in range(k)
            ]
            boxes = batch.get("boxes")
            path = sample_grid(
                dm.denormalize(batch["image"][:k]),
                titles,
                None if boxes is None else boxes[:k],
                ctx.run_dir / "samples.png",
            )
            figures.append(str(path))
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


def _name(index: int, names: list[str] | None) -> str:
    return str(index) if names is None else names[index]


def _label(label: torch.Tensor, names: list[str] | None) -> str:
    """A class name, or the present classes of a multi-hot label."""
    if label.dim() == 0:
        return _name(int(label), names)
    return ",".join(_name(i, names) for i in label.nonzero().flatten().tolist())
