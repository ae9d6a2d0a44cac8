"""Class sensitivity: do maps change with the explained class? (Rebuffi et al. 2020)

Per image, maps are computed for the most and the least likely class (argmax and argmin of
the softmax, which are those of the logits) and compared:

* ``spearman``: Spearman rank correlation of the two flattened signed maps after
  ``postprocess`` (Rebuffi's TorchRay fork adds 1e-6 to both maps, which leaves ranks
  unchanged, and averages the finite values);
* ``hog_spearman``: Spearman of the HOG features of the maps after ``hog_postprocess``
  (POSAGG Tables 2 and 4).

Lower is more class-sensitive: a method that ignores the target (e.g. ``random``) scores 1.

A map with a NaN or an infinite value (either of the pair) gives NaN in both metrics, its rows
are flagged ``map_nonfinite = 1`` and the method's mean is NaN (never averaged away).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from torch import Tensor

from xai_bench.engine.batches import BatchPlan, EvalBatch
from xai_bench.engine.benchmark import EvalBenchmark
from xai_bench.engine.context import RunContext
from xai_bench.methods.base import Explainer
from xai_bench.metrics.aggregate import NONFINITE, aggregate, check_constant_maps
from xai_bench.metrics.functional import CLASS_METRICS as METRICS
from xai_bench.metrics.functional import class_sensitivity
from xai_bench.metrics.postprocess import Postprocess, nonfinite_maps
from xai_bench.utils.resolution import HOG_CELL, REFERENCE_SIDE, px_option, resolve_px
from xai_bench.viz.sanity import class_sensitivity_bars


class ClassSensitivity(EvalBenchmark):
    """``benchmark=class_sensitivity``: similarity of the max- and min-class maps per image.

    Args:
        n_images: images of ``split`` (a seeded subset; ``None`` = all).
        batch_size: images per explainer call.
        split: data split.
        metrics: ``spearman`` (Rebuffi) and/or ``hog_spearman`` (POSAGG).
        postprocess: steps applied before ``spearman`` (default none: raw signed maps, every
            channel; TorchRay's own maps are ``[channel_max_abs, abs]`` for gradients).
        hog_postprocess: steps applied before HOG (default: PathwayGrad's signed max-``|.|``
            channel, scaled to [-1, 1] so that HOG's epsilon is negligible).
        hog_cell: HOG cell size in pixels; ``auto``: the papers' 16 px at 224 px scaled to the
            input (:mod:`~xai_bench.utils.resolution`, at least 2).
        constant_maps: ``nan`` (SciPy's NaN for a constant map, left out of the mean and
            counted as ``n_nan``: Rebuffi's "mean over finite values") or ``define``
            (1 for two constant maps, 0 for one).
    """

    name = "class_sensitivity"
    headline = {"spearman": False, "hog_spearman": False}
    nan_reason = "undefined: constant maps (constant_maps=nan)"
    runtime_params = ("postprocess", "hog_postprocess")

    def __init__(
        self,
        n_images: int | None = 32,
        batch_size: int = 32,
        split: str = "test",
        metrics: Sequence[str] = METRICS,
        postprocess: Sequence[str | Mapping[str, Any]] = (),
        hog_postprocess: Sequence[str | Mapping[str, Any]] = ("channel_max_abs", "maxabs"),
        hog_cell: int | str = "auto",
        constant_maps: str = "nan",
    ) -> None:
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise ValueError(f"unknown metrics {unknown} (known: {list(METRICS)})")
        n = None if n_images is None else int(n_images)
        # the maps are those of the argmax and argmin classes, whatever the batch's target
        self.plan = BatchPlan(split, n, int(batch_size), "predicted")
        self.metrics = list(metrics)
        self.postprocess_steps = [s if isinstance(s, str) else dict(s) for s in postprocess]
        self.hog_postprocess_steps = [s if isinstance(s, str) else dict(s) for s in hog_postprocess]
        self.postprocess = Postprocess(self.postprocess_steps)
        self.hog_postprocess = Postprocess(self.hog_postprocess_steps)
        self.hog_cell = px_option(hog_cell, "hog_cell")
        self.constant_maps = check_constant_maps(constant_maps)
        self.cell_px = resolve_px(self.hog_cell, HOG_CELL, REFERENCE_SIDE)  # check() rescales

    def check(self, ctx: RunContext) -> None:
        _, h, w = ctx.meta.input_size
        self.cell_px = resolve_px(self.hog_cell, HOG_CELL, min(h, w), minimum=2)
        if "hog_spearman" in self.metrics and min(h, w) < 3 * self.cell_px:
            raise ValueError(
                f"hog_cell={self.cell_px} needs images of at least {3 * self.cell_px} px "
                f"(3x3-cell blocks); {ctx.meta.name} inputs are {h}x{w}: lower hog_cell"
            )
        if ctx.meta.num_classes < 2:
            raise ValueError("class sensitivity needs a model with at least two classes")

    def similarities(self, a: Tensor, b: Tensor) -> dict[str, Tensor]:
        """Each metric per sample ``[B]`` between two batches of raw maps
        (:func:`~xai_bench.metrics.functional.class_sensitivity`), in :data:`METRICS` order."""
        kw = {"postprocess": self.postprocess, "hog_postprocess": self.hog_postprocess,
              "hog_cell": self.cell_px, "constant_maps": self.constant_maps}  # fmt: skip
        return {m: class_sensitivity(a, b, m, **kw) for m in METRICS if m in self.metrics}

    def score(self, ctx: RunContext, explainer: Explainer, batch: EvalBatch) -> pd.DataFrame:
        """Rows of one batch: each metric between the argmax- and the argmin-class maps."""
        top, bottom = batch.logits.argmax(1), batch.logits.argmin(1)
        a, b = explainer(batch.x, top), explainer(batch.x, bottom)
        values = self.similarities(a, b)
        bad = (nonfinite_maps(a) | nonfinite_maps(b)).long().tolist()
        images, tops, bottoms = batch.sample["index"].tolist(), top.tolist(), bottom.tolist()
        rows = [
            {"image": i, "class_max": hi, "class_min": lo, "metric": metric, "value": v,
             NONFINITE: f}
            for metric, vals in values.items()
            for i, hi, lo, v, f in zip(images, tops, bottoms, vals.tolist(), bad, strict=True)
        ]  # fmt: skip
        return pd.DataFrame(rows)

    def summarize(self, rows: pd.DataFrame) -> dict[str, Any]:
        aggregates = aggregate(rows, ["method", "metric"])
        summary: dict[str, Any] = {
            "metrics": self.metrics,
            "aggregate": aggregates,
            "postprocess": repr(self.postprocess),
            "hog_postprocess": repr(self.hog_postprocess),
        }
        summary.update({f"{r['metric']}/{r['method']}": r["mean"] for r in aggregates})
        return summary

    def draw(self, rows: pd.DataFrame, run_dir: Path) -> list[Path]:
        aggregates = aggregate(rows, ["method", "metric"], warn=False)
        return [class_sensitivity_bars(aggregates, self.metrics, run_dir / f"{self.name}.png")]
