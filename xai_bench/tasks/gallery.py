"""Gallery: a figure of saliency maps, methods x images, with the chosen post-processing."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from xai_bench.data.base import check_split
from xai_bench.engine.batches import check_count
from xai_bench.engine.benchmark import Result, Task
from xai_bench.engine.context import RunContext
from xai_bench.engine.jobs import tidy_table
from xai_bench.methods.base import MethodNotApplicableError
from xai_bench.metrics.postprocess import Postprocess
from xai_bench.viz.figures import map_grid


class Gallery(Task):
    """Maps of the run's methods for the first ``n_images`` of a split.

    Methods that do not fit the model are shown as ``n/a`` and listed in the table.

    Args:
        n_images: images (columns) in the figure.
        split: data split to draw images from.
        target: ``predicted`` (argmax of the model) or ``label``.
        postprocess: post-processing steps (see :mod:`xai_bench.metrics.postprocess`); a map
            with several channels after them is averaged over channels for display.
        classes_per_image: maps of each image for its ``k`` top-scoring classes, one column
            per (image, class) (class-sensitivity figures, POSAGG Fig. 1); ``1``: ``target``.
        overlay: draw each map alpha-blended on its image (pytorch-grad-cam's
            ``show_cam_on_image``) instead of on its own.
        overlay_alpha: the map's weight in the blend, in [0, 1].
    """

    name = "gallery"
    headline = {"seconds_per_image": False}

    def __init__(
        self,
        n_images: int = 6,
        split: str = "test",
        target: str = "predicted",
        postprocess: Sequence[str | Mapping[str, Any]] = ("channel_mean", "abs", "minmax"),
        classes_per_image: int = 1,
        overlay: bool = False,
        overlay_alpha: float = 0.5,
    ) -> None:
        if target not in ("predicted", "label"):
            raise ValueError("target must be 'predicted' or 'label'")
        if not 0.0 <= float(overlay_alpha) <= 1.0:
            raise ValueError(f"overlay_alpha must be in [0, 1], got {overlay_alpha}")
        self.overlay = bool(overlay)
        self.overlay_alpha = float(overlay_alpha)
        self.n_images = check_count(int(n_images), "n_images")
        self.split = check_split(split)
        self.target = target
        self.postprocess = Postprocess(list(postprocess))
        self.classes_per_image = check_count(int(classes_per_image), "classes_per_image")

    def run(self, ctx: RunContext) -> Result:
        batch = next(iter(ctx.datamodule.dataloader(self.split, batch_size=self.n_images)))
        x = batch["image"].to(ctx.device)
        with torch.no_grad():
            logits = ctx.model(x)
        pred = logits.argmax(1)
        target = pred if self.target == "predicted" or ctx.meta.multilabel else batch["label"]
        target = target.to(ctx.device)
        if self.classes_per_image > 1:  # columns: each image for its k top-scoring classes
            k = min(self.classes_per_image, logits.shape[1])
            target = logits.topk(k, dim=1).indices.flatten()
            x = x.repeat_interleave(k, dim=0)
        names = ctx.methods.labels()
        maps: list[torch.Tensor | None] = []
        rows, skipped = [], {}
        for spec in ctx.methods:
            try:
                explainer = ctx.explainer(spec)
            except MethodNotApplicableError as err:
                maps.append(None)
                skipped[spec.label] = str(err)
                continue
            start = time.perf_counter()
            m = self.postprocess(explainer(x, target))
            seconds = time.perf_counter() - start
            maps.append(m.mean(1, keepdim=True) if m.shape[1] > 1 else m)
            rows.append({**spec.identity, "metric": "seconds_per_image", "value": seconds / len(x)})
        classes = ctx.datamodule.class_names
        titles = [classes[int(t)] if classes else str(int(t)) for t in target.tolist()]
        path = map_grid(
            ctx.datamodule.denormalize(x), maps, names, titles, ctx.run_dir / "gallery.png",
            overlay=self.overlay, alpha=self.overlay_alpha,
            configs={s.label: s.config_name for s in ctx.methods},
        )  # fmt: skip
        table = tidy_table(ctx, self.name, pd.DataFrame(rows), skipped)
        shown = sum(m is not None for m in maps)
        summary = {"methods_shown": shown, "postprocess": repr(self.postprocess),
                   "skipped": skipped, "headline": dict(self.headline)}  # fmt: skip
        return Result(table, summary, [str(path)])
