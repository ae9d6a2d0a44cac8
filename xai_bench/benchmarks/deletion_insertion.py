"""Deletion and insertion (Petsiuk et al., RISE, BMVC 2018; Group-CAM Table 1).

Deletion replaces the most salient pixels, ``step`` at a time (all channels together), by a
substrate (zeros in normalised space); insertion starts from a blurred image and puts the
original pixels back in the same order. After each step the softmax probability of the class
predicted on the clean image is recorded (``ceil(N / step) + 1`` points, before the first and
after the last change), and each curve's AUC is the trapezoid on [0, 1]. Lower deletion and
higher insertion are better; Group-CAM's over-all score is insertion - deletion.

An image whose map holds a NaN or an infinite value gets NaN in every row (curve points, AUCs,
over-all; flagged ``map_nonfinite = 1``), and a mean over rows with such a row (the summary's
AUCs, the ``mean_score`` curve points) is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xai_bench.engine.batches import BatchPlan, EvalBatch, check_count, check_target
from xai_bench.engine.benchmark import EvalBenchmark
from xai_bench.engine.context import RunContext
from xai_bench.engine.jobs import METHOD_COLUMNS
from xai_bench.methods.base import Explainer
from xai_bench.metrics.aggregate import NONFINITE, flagged_mean
from xai_bench.metrics.functional import deletion_insertion
from xai_bench.metrics.perturbation import (
    BLUR_PRESETS,
    FILLS,
    SCORES,
    TIE_BREAKS,
    check_choice,
    flat,
    preset_blur,
    step_size,
)
from xai_bench.metrics.postprocess import Postprocess
from xai_bench.utils.resolution import float_option, px_option
from xai_bench.viz.perturbation import deletion_insertion_curves


class DeletionInsertion(EvalBenchmark):
    """``benchmark=deletion_insertion``: deletion, insertion and over-all AUC per method.

    Args:
        n_images: images of a seeded random subset of ``split`` (``None``: all).
        batch_size: images per explained batch (one resumable chunk per method and batch).
        split: data split.
        target: class explained and scored, ``predicted`` (spec) or ``label``.
        step_pixels: pixels changed per step at ``step_reference_size`` (Group-CAM 448, RISE
            224); scaled by ``H * W / step_reference_size**2`` for other input sizes.
        step_reference_size: side the step refers to; ``None`` uses ``step_pixels`` as is.
        step_fraction: share of the pixels per step instead (the Group-CAM paper's "1%").
        deletion_fill: deletion substrate (``dataset_mean`` = zeros in normalised space).
        insertion_fill: insertion start image (``blur``).
        blur: blur preset, ``gcam`` (kornia 51 px, sigma 50, reflect) or ``rise`` (11 px,
            sigma 5, scipy kernel, zero padding).
        blur_kernel_size: the blur's kernel size in px; ``auto``: the preset's (at 224 px)
            scaled to the input (:mod:`~xai_bench.utils.resolution`).
        blur_sigma: the blur's sigma in px; ``auto``: the preset's, scaled likewise.
        score: ``softmax`` (spec; sigmoid for multi-label models) or ``logit``.
        postprocess: steps that collapse a map to one value per pixel; identity on the
            non-negative one-channel maps (CAMs, RISE) that the papers evaluated.
        tie_break: ``random`` (seeded per image) or ``index`` (RISE's ``np.flip(np.argsort)``).
        internal_batch_size: perturbed images per forward pass (``None``: all at once).
    """

    name = "deletion_insertion"
    headline = {"deletion_auc": False, "insertion_auc": True, "overall": True}
    runtime_params = ("internal_batch_size", "postprocess")

    def __init__(
        self,
        n_images: int | None = 32,
        batch_size: int = 32,
        split: str = "test",
        target: str = "predicted",
        step_pixels: int = 448,
        step_reference_size: int | None = 224,
        step_fraction: float | None = None,
        deletion_fill: str = "dataset_mean",
        insertion_fill: str = "blur",
        blur: str = "gcam",
        blur_kernel_size: int | str = "auto",
        blur_sigma: float | str = "auto",
        score: str = "softmax",
        postprocess: Sequence[str | Mapping[str, Any]] = ("channel_mean", "abs"),
        tie_break: str = "random",
        internal_batch_size: int | None = 256,
    ) -> None:
        n = None if n_images is None else int(n_images)
        self.plan = BatchPlan(split, n, int(batch_size), check_target(target))
        if step_fraction is not None and not 0.0 < step_fraction <= 1.0:
            raise ValueError(f"step_fraction must lie in (0, 1], got {step_fraction}")
        if step_pixels < 1:
            raise ValueError(f"step_pixels must be >= 1, got {step_pixels}")
        self.step_pixels = int(step_pixels)
        self.step_reference_size = None if step_reference_size is None else int(step_reference_size)
        self.step_fraction = None if step_fraction is None else float(step_fraction)
        self.deletion_fill = check_choice(deletion_fill, FILLS, "deletion_fill")
        self.insertion_fill = check_choice(insertion_fill, FILLS, "insertion_fill")
        self.blur_preset = check_choice(blur, tuple(BLUR_PRESETS), "blur")
        self.blur_kernel_size = px_option(blur_kernel_size, "blur_kernel_size")
        self.blur_sigma = float_option(blur_sigma, "blur_sigma")
        self.output = check_choice(score, SCORES, "score")
        self.postprocess_steps = [s if isinstance(s, str) else dict(s) for s in postprocess]
        self.postprocess = Postprocess(self.postprocess_steps)
        self.tie_break = check_choice(tie_break, TIE_BREAKS, "tie_break")
        for key, value in (("internal_batch_size", internal_batch_size),
                           ("step_reference_size", step_reference_size)):  # fmt: skip
            check_count(value, key, nullable=True)
        self.internal_batch_size = internal_batch_size

    def blur(self, side: int) -> tuple[int, float, str]:
        """``(kernel size, sigma, style)`` of the blur for inputs of ``side`` px: the preset's
        224 px values scaled to ``side`` where the kernel or sigma is ``auto``."""
        return preset_blur(self.blur_preset, self.blur_kernel_size, self.blur_sigma, side)

    def step(self, n_pixels: int) -> int:
        """Pixels changed per step for an input of ``n_pixels`` pixels."""
        return step_size(n_pixels, self.step_pixels, self.step_reference_size, self.step_fraction)

    def score(self, ctx: RunContext, explainer: Explainer, batch: EvalBatch) -> pd.DataFrame:
        """Rows of one batch for one method: both curves per image, their AUCs, over-all
        (:func:`~xai_bench.metrics.functional.deletion_insertion`)."""
        x, t = batch.x, batch.target
        r = deletion_insertion(
            ctx.model, x, t, explainer(x, t), step=self.step(x.shape[-2] * x.shape[-1]),
            deletion_fill=self.deletion_fill, insertion_fill=self.insertion_fill,
            blur=self.blur_preset, blur_kernel_size=self.blur_kernel_size,
            blur_sigma=self.blur_sigma, mean=ctx.meta.mean, std=ctx.meta.std, score=self.output,
            multilabel=ctx.meta.multilabel, postprocess=self.postprocess,
            tie_break=self.tie_break, keys=batch.sample["index"], seed=ctx.seed,
            internal_batch_size=self.internal_batch_size,
        )  # fmt: skip
        index = batch.sample["index"].numpy()
        context = {
            "index": index,
            "target": t.cpu().numpy(),
            "map_nonfinite": r.nonfinite.cpu().numpy().astype(int),
        }
        b, s = len(index), len(r.n_pixels)
        frames = []
        for curve, scores, auc in (("deletion", r.deletion, r.deletion_auc),
                                   ("insertion", r.insertion, r.insertion_auc)):  # fmt: skip
            points = {k: np.repeat(v, s) for k, v in context.items()}
            points.update(step=np.tile(np.arange(s), b), n_pixels=np.tile(r.n_pixels.numpy(), b))
            frames.append(
                pd.DataFrame({**points, "curve": curve, "metric": "score", "value": flat(scores)})
            )
            frames.append(
                pd.DataFrame({**context, "curve": curve, "metric": f"{curve}_auc"}).assign(
                    value=flat(auc)
                )
            )
        overall = {"curve": "both", "metric": "overall", "value": flat(r.overall)}
        frames.append(pd.DataFrame({**context, **overall}))
        return pd.concat(frames, ignore_index=True)

    def tabulate(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Per-image AUC rows and the mean curves (``mean_score`` per method, curve and step)."""
        points = rows[rows.metric == "score"]
        keys = [*METHOD_COLUMNS, "curve", "step", "n_pixels"]
        grouped = points.assign(_bad=points[NONFINITE].fillna(0).astype(bool)).groupby(
            keys, sort=False
        )
        mean = grouped.value.agg(["mean", "size"])
        mean["mean"] = mean["mean"].where(~grouped["_bad"].any())  # never average a NaN map away
        mean = mean.reset_index().rename(columns={"mean": "value", "size": "n_images"})
        return pd.concat([rows[rows.metric != "score"], mean.assign(metric="mean_score")])

    def summarize(self, rows: pd.DataFrame) -> dict[str, Any]:
        n_pixels = int(rows.n_pixels.max())
        step = self.step(n_pixels)
        side = math.isqrt(n_pixels)  # the summary names the blur of square inputs
        out: dict[str, Any] = {"blur": list(self.blur(side)), "step_pixels": step,
                               "n_steps": math.ceil(n_pixels / step)}  # fmt: skip
        per_image = rows[rows.metric.isin(["deletion_auc", "insertion_auc", "overall"])]
        for (method, metric), g in per_image.groupby(["method", "metric"]):
            out[f"{method}/{metric}"] = flagged_mean(g.value, g[NONFINITE])
        flags = per_image[per_image.metric == "overall"].groupby("method").map_nonfinite.sum()
        out["nonfinite_maps"] = {k: int(n) for k, n in flags.items() if n > 0}
        return out

    def draw(self, rows: pd.DataFrame, run_dir: Path) -> list[Path]:
        return [deletion_insertion_curves(rows, run_dir / f"{self.name}.png", self.output)]
