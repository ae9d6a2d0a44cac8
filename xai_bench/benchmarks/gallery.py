"""Gallery: a figure of saliency maps, methods x images, with the chosen post-processing."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from xai_bench.benchmarks.base import Benchmark, Result
from xai_bench.methods.base import MethodNotApplicableError
from xai_bench.methods.postprocess import Postprocess
from xai_bench.viz.figures import map_grid
from xai_bench.workspace import Workspace


class Gallery(Benchmark):
    """Maps of several methods (by config name) for the first ``n_images`` of a split.

    Methods that do not fit the model are shown as ``n/a`` and listed in the table.

    Args:
        methods: method config names; empty means the run's own ``method``.
        n_images: images (columns) in the figure.
        split: data split to draw images from.
        target: ``predicted`` (argmax of the model) or ``label``.
        postprocess: post-processing steps (see :mod:`xai_bench.methods.postprocess`); a map
            with several channels after them is averaged over channels for display.
    """

    name = "gallery"

    def __init__(
        self,
        methods: Sequence[str] = (),
        n_images: int = 6,
        split: str = "test",
        target: str = "predicted",
        postprocess: Sequence[str | Mapping[str, Any]] = ("channel_mean", "abs", "minmax"),
    ) -> None:
        if target not in ("predicted", "label"):
            raise ValueError("target must be 'predicted' or 'label'")
        self.methods = list(methods)
        self.n_images = int(n_images)
        self.split = split
        self.target = target
        self.postprocess = Postprocess(list(postprocess))

    def run(self, ws: Workspace) -> Result:
        batch = next(iter(ws.datamodule.dataloader(self.split, batch_size=self.n_images)))
        x = batch["image"].to(ws.device)
        with torch.no_grad():
            pred = ws.model(x).argmax(1)
        target = pred if self.target == "predicted" or ws.meta.multilabel else batch["label"]
        target = target.to(ws.device)
        names = self.methods or [str(ws.cfg.method.name)]
        maps: list[torch.Tensor | None] = []
        rows = []
        for name in names:
            try:
                explainer = ws.explainer_named(name)
            except MethodNotApplicableError as err:
                maps.append(None)
                rows.append(
                    {"method": name, "metric": "applicable", "value": 0.0, "note": str(err)}
                )
                continue
            start = time.perf_counter()
            m = self.postprocess(explainer(x, target))
            seconds = time.perf_counter() - start
            maps.append(m.mean(1, keepdim=True) if m.shape[1] > 1 else m)
            rows.append({"method": name, "metric": "seconds_per_image", "value": seconds / len(x)})
        classes = ws.datamodule.class_names
        titles = [classes[int(t)] if classes else str(int(t)) for t in target.tolist()]
        path = map_grid(
            ws.datamodule.denormalize(x), maps, names, titles, ws.run_dir / "gallery.png"
        )
        identity = {k: v for k, v in ws.identity.items() if k != "method"}
        table = pd.DataFrame([{**identity, "benchmark": self.name, **r} for r in rows])
        shown = sum(m is not None for m in maps)
        return Result(
            table, {"methods_shown": shown, "postprocess": repr(self.postprocess)}, [str(path)]
        )
