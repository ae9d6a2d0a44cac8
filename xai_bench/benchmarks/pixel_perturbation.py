"""Pixel perturbation, remove-least-important-first (FullGrad; OPPSD §4.2; PRUNE LeRF).

For each image, the ``k`` least salient pixels (all channels together) are replaced by a fill
and the target output is compared with the clean one: ``|y' - y| / |y|``, for several fractions
``k / N``. A faithful map puts unimportant pixels last, so lower is better. Defaults (our
recommendation for new runs): per-image channel-mean fill, target logit, k in {0.1, 1, 3, 5, 10} %.

An image whose map holds a NaN or an infinite value gets NaN in every row (flagged
``map_nonfinite = 1``), and a method's mean over rows with such a row is NaN; rows undefined
because ``y = 0`` are NaN too but left out of the means and counted in ``undefined_rows``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xai_bench.engine.batches import BatchPlan, EvalBatch, check_count, check_target
from xai_bench.engine.benchmark import EvalBenchmark
from xai_bench.engine.context import RunContext
from xai_bench.methods.base import Explainer
from xai_bench.metrics.aggregate import NONFINITE, flagged_mean
from xai_bench.metrics.functional import pixel_perturbation
from xai_bench.metrics.perturbation import (
    FILLS,
    ORDERS,
    SCORES,
    TIE_BREAKS,
    check_choice,
    flat,
    fraction_counts,
)
from xai_bench.metrics.postprocess import Postprocess
from xai_bench.utils.resolution import float_option, px_option
from xai_bench.viz.perturbation import pixel_perturbation_curves


class PixelPerturbation(EvalBenchmark):
    """``benchmark=pixel_perturbation``: output change after removing the least salient pixels.

    Args:
        n_images: images of a seeded random subset of ``split`` (``None``: all).
        batch_size: images per explained batch (one resumable chunk per method and batch).
        split: data split.
        target: class explained and measured, ``predicted`` or ``label``.
        fractions: shares of pixels removed; ``k = max(1, int(N * p))`` (OPPSD).
        order: ``least_first`` (LeRF, spec) or ``most_first``.
        fill: ``image_mean``, ``dataset_mean``, ``zero`` (black) or ``blur``.
        output: ``logit`` (default) or ``softmax`` (PRUNE's LeRF tool).
        postprocess: steps that collapse a map to one value per pixel (OPPSD: channel mean, abs).
        tie_break: ``random`` (seeded per image) or ``index`` (numpy's argsort order).
        blur_kernel_size: kernel of the ``blur`` fill in px; ``auto``: Group-CAM's 51 px at
            224 px scaled to the input (:mod:`~xai_bench.utils.resolution`).
        blur_sigma: sigma of the ``blur`` fill in px; ``auto``: 50 px at 224 px, scaled.
        internal_batch_size: perturbed images per forward pass (``None``: all at once).
    """

    name = "pixel_perturbation"
    headline = {"output_change": False, "auc": False}
    nan_reason = "undefined: zero clean output |y|"
    runtime_params = ("internal_batch_size", "postprocess")

    def __init__(
        self,
        n_images: int | None = 64,
        batch_size: int = 32,
        split: str = "test",
        target: str = "predicted",
        fractions: Sequence[float] = (0.001, 0.01, 0.03, 0.05, 0.1),
        order: str = "least_first",
        fill: str = "image_mean",
        output: str = "logit",
        postprocess: Sequence[str | Mapping[str, Any]] = ("channel_mean", "abs"),
        tie_break: str = "random",
        blur_kernel_size: int | str = "auto",
        blur_sigma: float | str = "auto",
        internal_batch_size: int | None = 256,
    ) -> None:
        n = None if n_images is None else int(n_images)
        self.plan = BatchPlan(split, n, int(batch_size), check_target(target))
        self.fractions = sorted(float(f) for f in fractions)
        fraction_counts(1, self.fractions)  # validates the range
        self.order = check_choice(order, ORDERS, "order")
        self.fill = check_choice(fill, FILLS, "fill")
        self.output = check_choice(output, SCORES, "output")
        self.postprocess_steps = [s if isinstance(s, str) else dict(s) for s in postprocess]
        self.postprocess = Postprocess(self.postprocess_steps)
        self.tie_break = check_choice(tie_break, TIE_BREAKS, "tie_break")
        self.blur_kernel_size = px_option(blur_kernel_size, "blur_kernel_size")
        self.blur_sigma = float_option(blur_sigma, "blur_sigma")
        self.internal_batch_size = check_count(
            internal_batch_size, "internal_batch_size", nullable=True
        )

    def score(self, ctx: RunContext, explainer: Explainer, batch: EvalBatch) -> pd.DataFrame:
        """Rows of one batch for one method: the change per (image, fraction) and its AUC
        (:func:`~xai_bench.metrics.functional.pixel_perturbation`)."""
        x, t = batch.x, batch.target
        r = pixel_perturbation(
            ctx.model, x, t, explainer(x, t), fractions=self.fractions, order=self.order,
            fill=self.fill, output=self.output, logits=batch.logits, mean=ctx.meta.mean,
            std=ctx.meta.std, multilabel=ctx.meta.multilabel, postprocess=self.postprocess,
            tie_break=self.tie_break, blur_kernel_size=self.blur_kernel_size,
            blur_sigma=self.blur_sigma, keys=batch.sample["index"], seed=ctx.seed,
            internal_batch_size=self.internal_batch_size,
        )  # fmt: skip
        change, auc, counts, nonfinite = r.change, r.auc, r.n_pixels, r.nonfinite
        b, f = change.shape
        index = batch.sample["index"].numpy()
        context = {
            "index": np.repeat(index, f),
            "target": np.repeat(t.cpu().numpy(), f),
            "fraction": np.tile(self.fractions, b),
            "n_pixels": np.tile(counts.numpy(), b),
            "map_nonfinite": np.repeat(nonfinite.cpu().numpy().astype(int), f),
        }
        curve = pd.DataFrame({**context, "metric": "output_change", "value": flat(change)})
        area = pd.DataFrame(
            {
                "index": index,
                "target": t.cpu().numpy(),
                "fraction": np.nan,
                "n_pixels": np.nan,
                "map_nonfinite": nonfinite.cpu().numpy().astype(int),
                "metric": "auc",
                "value": flat(auc),
            }
        )
        return pd.concat([curve, area], ignore_index=True)

    def summarize(self, rows: pd.DataFrame) -> dict[str, Any]:
        out: dict[str, Any] = {"fractions": self.fractions}
        changes = rows[rows.metric == "output_change"]
        for (method, fraction), g in changes.groupby(["method", "fraction"]):
            out[f"{method}/change@{fraction:g}"] = flagged_mean(g.value, g[NONFINITE])
        for method, g in rows[rows.metric == "auc"].groupby("method"):
            out[f"{method}/auc"] = flagged_mean(g.value, g[NONFINITE])
        undefined = changes[changes.value.isna() & ~changes[NONFINITE].astype(bool)]
        out["undefined_rows"] = {k: int(n) for k, n in undefined.groupby("method").size().items()}
        nonfinite = rows[rows.metric == "auc"].groupby("method").map_nonfinite.sum()
        out["nonfinite_maps"] = {k: int(n) for k, n in nonfinite.items() if n > 0}
        return out

    def draw(self, rows: pd.DataFrame, run_dir: Path) -> list[Path]:
        path = run_dir / f"{self.name}.png"
        return [pixel_perturbation_curves(rows, path, self.order, self.output, self.fill)]
