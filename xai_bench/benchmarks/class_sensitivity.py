"""Class sensitivity: do maps change with the explained class? (Rebuffi et al. 2020; spec §2.6)

Per image, maps are computed for the most and the least likely class (argmax and argmin of
the softmax, which are those of the logits) and compared:

* ``spearman``: Spearman rank correlation of the two flattened signed maps after
  ``postprocess`` (Rebuffi's TorchRay fork adds 1e-6 to both maps, which leaves ranks
  unchanged, and averages the finite values);
* ``hog_spearman``: Spearman of the HOG features of the maps after ``hog_postprocess``
  (POSAGG Tables 2 and 4).

Lower is more class-sensitive: a method that ignores the target (e.g. ``random``) scores 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from torch import Tensor

from xai_bench.benchmarks.base import Benchmark, Result
from xai_bench.benchmarks.common import (
    EvalBatch,
    batch_chunks,
    explainers,
    method_config,
    method_names,
    partial_store,
)
from xai_bench.benchmarks.sanity_checks import CONSTANT_MAPS, aggregate
from xai_bench.methods.base import Explainer
from xai_bench.methods.postprocess import Postprocess
from xai_bench.metrics.similarity import hog_spearman, spearman
from xai_bench.viz.figures import save_figure
from xai_bench.workspace import Workspace

METRICS = ("spearman", "hog_spearman")


class ClassSensitivity(Benchmark):
    """``benchmark=class_sensitivity``: similarity of the max- and min-class maps per image.

    Args:
        methods: method config names; empty means the run's own ``method``.
        n_images: images of ``split`` (a seeded subset; ``None`` = all).
        batch_size: images per explainer call.
        split: data split.
        metrics: ``spearman`` (Rebuffi) and/or ``hog_spearman`` (POSAGG).
        postprocess: steps applied before ``spearman`` (default none: raw signed maps, every
            channel; TorchRay's own maps are ``[channel_max_abs, abs]`` for gradients).
        hog_postprocess: steps applied before HOG (default: PathwayGrad's signed max-``|.|``
            channel, scaled to [-1, 1] so that HOG's epsilon is negligible).
        hog_cell: HOG cell size in pixels (16 at 224 px in the papers).
        constant_maps: ``nan`` (SciPy's NaN for a constant map, left out of the mean and
            counted as ``n_nan``: Rebuffi's "mean over finite values") or ``define``
            (1 for two constant maps, 0 for one).
    """

    name = "class_sensitivity"
    higher_is_better = False

    def __init__(
        self,
        methods: Sequence[str] = (),
        n_images: int | None = 32,
        batch_size: int = 32,
        split: str = "test",
        metrics: Sequence[str] = METRICS,
        postprocess: Sequence[str | Mapping[str, Any]] = (),
        hog_postprocess: Sequence[str | Mapping[str, Any]] = ("channel_max_abs", "maxabs"),
        hog_cell: int = 16,
        constant_maps: str = "nan",
    ) -> None:
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise ValueError(f"unknown metrics {unknown} (known: {list(METRICS)})")
        if constant_maps not in CONSTANT_MAPS:
            raise ValueError(f"constant_maps must be one of {CONSTANT_MAPS}, got '{constant_maps}'")
        self.methods = list(methods)
        self.n_images = None if n_images is None else int(n_images)
        self.batch_size, self.split = int(batch_size), split
        self.metrics = list(metrics)
        self.postprocess = Postprocess(list(postprocess))
        self.hog_postprocess = Postprocess(list(hog_postprocess))
        self.hog_cell = int(hog_cell)
        self.constant_maps = constant_maps

    def run(self, ws: Workspace) -> Result:
        _, h, w = ws.meta.input_size
        if "hog_spearman" in self.metrics and min(h, w) < 3 * self.hog_cell:
            raise ValueError(
                f"hog_cell={self.hog_cell} needs images of at least {3 * self.hog_cell} px "
                f"(3x3-cell blocks); {ws.meta.name} inputs are {h}x{w}: lower hog_cell"
            )
        if ws.meta.num_classes < 2:
            raise ValueError("class sensitivity needs a model with at least two classes")
        names = method_names(ws, self.methods)
        params = {
            **{k: repr(v) if isinstance(v, Postprocess) else v for k, v in vars(self).items()},
            "method_configs": {n: method_config(ws, n) for n in names},
        }
        store = partial_store(ws, params)
        built = list(explainers(ws, self.methods))
        skipped = {name: note for name, e, note in built if e is None}
        jobs = [
            (f"method={name}", partial(self._chunk, ws, name, explainer))
            for name, explainer, _ in built
            if explainer is not None
        ]
        parts = batch_chunks(ws, store, jobs, self.split, self.n_images, self.batch_size)
        frames = [rows for _, _, rows in parts]
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        aggregates = aggregate(table, ["method", "metric"]) if len(table) else []
        figures = [str(self._figure(aggregates, ws.run_dir / "class_sensitivity.png"))]
        summary: dict[str, Any] = {
            "metrics": self.metrics,
            "n_images": int(table["image"].nunique()) if len(table) else 0,
            "aggregate": aggregates,
            "skipped": skipped,
            "postprocess": repr(self.postprocess),
            "hog_postprocess": repr(self.hog_postprocess),
            "chunks_loaded": len(store.loaded),
            "chunks_computed": len(store.computed),
        }
        summary.update({f"{r['metric']}/{r['method']}": r["mean"] for r in aggregates})
        return Result(table, summary, figures)

    def similarities(self, a: Tensor, b: Tensor) -> dict[str, Tensor]:
        """Each metric per sample ``[B]`` between two batches of raw maps."""
        defined = self.constant_maps == "define"
        out = {}
        if "spearman" in self.metrics:
            out["spearman"] = spearman(self.postprocess(a), self.postprocess(b), defined)
        if "hog_spearman" in self.metrics:
            ha, hb = self.hog_postprocess(a), self.hog_postprocess(b)
            out["hog_spearman"] = hog_spearman(ha, hb, self.hog_cell, defined=defined)
        return out

    def _chunk(
        self, ws: Workspace, name: str, explainer: Explainer, batch: EvalBatch
    ) -> pd.DataFrame:
        top, bottom = batch.logits.argmax(1), batch.logits.argmin(1)
        values = self.similarities(explainer(batch.x, top), explainer(batch.x, bottom))
        identity = {k: v for k, v in ws.identity.items() if k != "method"}
        context = {**identity, "benchmark": self.name, "method": name}
        images, tops, bottoms = batch.sample["index"].tolist(), top.tolist(), bottom.tolist()
        rows = [
            {**context, "image": i, "class_max": hi, "class_min": lo, "metric": metric, "value": v}
            for metric, vals in values.items()
            for i, hi, lo, v in zip(images, tops, bottoms, vals.tolist())
        ]
        return pd.DataFrame(rows)

    def _figure(self, aggregates: list[dict[str, Any]], path: Path) -> Path:
        methods = list(dict.fromkeys(r["method"] for r in aggregates))
        fig = Figure(figsize=(6, 0.35 * max(len(methods), 1) * len(self.metrics) + 1.2))
        ax = fig.subplots()
        height = 0.8 / len(self.metrics)
        for j, metric in enumerate(self.metrics):
            rec = {r["method"]: r for r in aggregates if r["metric"] == metric}
            ys = [i + j * height for i in range(len(methods))]
            means = [_num(rec.get(m, {}).get("mean")) for m in methods]
            stds = [_num(rec.get(m, {}).get("std")) for m in methods]
            ax.barh(ys, means, height=height, xerr=stds, label=metric, capsize=2)
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(methods))], methods, fontsize=8)
        ax.axvline(0.0, color="k", lw=0.6)
        ax.set_xlim(-1.05, 1.05)
        ax.set_xlabel("Spearman(max-class map, min-class map); lower = more class-sensitive")
        ax.invert_yaxis()
        ax.legend(fontsize=7)
        return save_figure(fig, path)


def _num(v: float | None) -> float:
    return math.nan if v is None else float(v)
