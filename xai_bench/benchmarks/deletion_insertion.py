"""Deletion and insertion (Petsiuk et al., RISE, BMVC 2018; Group-CAM Table 1; spec §2.1).

Deletion replaces the most salient pixels, ``step`` at a time (all channels together), by a
substrate (zeros in normalised space); insertion starts from a blurred image and puts the
original pixels back in the same order. After each step the softmax probability of the class
predicted on the clean image is recorded (``ceil(N / step) + 1`` points, before the first and
after the last change), and each curve's AUC is the trapezoid on [0, 1]. Lower deletion and
higher insertion are better; Group-CAM's over-all score is insertion - deletion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from xai_bench.benchmarks.base import Benchmark, Result
from xai_bench.benchmarks.common import EvalBatch, check_target
from xai_bench.benchmarks.common import partial_store as make_store
from xai_bench.benchmarks.pixel_perturbation import (
    flat,
    method_chunks,
    method_saliency,
    tidy_table,
)
from xai_bench.methods.base import Explainer
from xai_bench.methods.postprocess import Postprocess
from xai_bench.metrics.perturbation import (
    BLUR_PRESETS,
    FILLS,
    SCORES,
    TIE_BREAKS,
    blur_settings,
    check_choice,
    fill_values,
    order_rank,
    perturbation_scores,
    pixel_order,
    step_counts,
    trapezoid_auc,
)
from xai_bench.viz.figures import save_figure
from xai_bench.workspace import Workspace

CURVES = ("deletion", "insertion")


class DeletionInsertion(Benchmark):
    """``benchmark=deletion_insertion``: deletion, insertion and over-all AUC per method.

    Args:
        methods: method config names; empty means the run's own ``method``.
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
        blur_kernel_size: overrides the preset's kernel size.
        blur_sigma: overrides the preset's sigma.
        score: ``softmax`` (spec; sigmoid for multi-label models) or ``logit``.
        postprocess: steps that collapse a map to one value per pixel; identity on the
            non-negative one-channel maps (CAMs, RISE) that the papers evaluated.
        tie_break: ``random`` (seeded per image) or ``index`` (RISE's ``np.flip(np.argsort)``).
        internal_batch_size: perturbed images per forward pass (``None``: all at once).
    """

    name = "deletion_insertion"
    higher_is_better = True  # the headline over-all score

    def __init__(
        self,
        methods: Sequence[str] = (),
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
        blur_kernel_size: int | None = None,
        blur_sigma: float | None = None,
        score: str = "softmax",
        postprocess: Sequence[str | Mapping[str, Any]] = ("channel_mean", "abs"),
        tie_break: str = "random",
        internal_batch_size: int | None = 256,
    ) -> None:
        self.methods = list(methods)
        self.n_images = None if n_images is None else int(n_images)
        self.batch_size = int(batch_size)
        self.split = split
        self.target = check_target(target)
        if step_fraction is not None and not 0.0 < step_fraction <= 1.0:
            raise ValueError(f"step_fraction must lie in (0, 1], got {step_fraction}")
        if step_pixels < 1:
            raise ValueError(f"step_pixels must be >= 1, got {step_pixels}")
        self.step_pixels = int(step_pixels)
        self.step_reference_size = None if step_reference_size is None else int(step_reference_size)
        self.step_fraction = None if step_fraction is None else float(step_fraction)
        self.deletion_fill = check_choice(deletion_fill, FILLS, "deletion_fill")
        self.insertion_fill = check_choice(insertion_fill, FILLS, "insertion_fill")
        check_choice(blur, tuple(BLUR_PRESETS), "blur")
        self.blur = blur_settings(blur, blur_kernel_size, blur_sigma)
        self.score = check_choice(score, SCORES, "score")
        self.postprocess_steps = [s if isinstance(s, str) else dict(s) for s in postprocess]
        self.postprocess = Postprocess(self.postprocess_steps)
        self.tie_break = check_choice(tie_break, TIE_BREAKS, "tie_break")
        self.internal_batch_size = internal_batch_size

    def params(self) -> dict[str, Any]:
        """What changes the numbers (the partial store's fingerprint)."""
        skip = ("methods", "internal_batch_size", "postprocess")
        return {k: v for k, v in vars(self).items() if k not in skip}

    def step(self, n_pixels: int) -> int:
        """Pixels changed per step for an input of ``n_pixels`` pixels."""
        if self.step_fraction is not None:
            return max(1, round(self.step_fraction * n_pixels))
        if self.step_reference_size is None:
            return self.step_pixels
        scale = n_pixels / self.step_reference_size**2
        return max(1, round(self.step_pixels * scale))

    def run(self, ws: Workspace) -> Result:
        store = make_store(ws, {"benchmark": self.name, **self.params()})
        _, h, w = ws.meta.input_size
        step = self.step(h * w)
        compute = partial(self.chunk, step=step)
        rows, skipped = method_chunks(
            ws, store, self.methods, compute, self.split, self.n_images, self.batch_size,
            self.target,
        )  # fmt: skip
        table = self.table(ws, rows, skipped)
        summary = self.summary(rows, skipped)
        summary.update({"step_pixels": step, "n_steps": math.ceil(h * w / step)})
        figures = [] if rows.empty else [str(self.figure(rows, ws.run_dir / f"{self.name}.png"))]
        return Result(table, summary, figures)

    def chunk(
        self, ws: Workspace, explainer: Explainer, batch: EvalBatch, step: int
    ) -> pd.DataFrame:
        """Rows of one batch for one method: both curves per image, their AUCs, over-all."""
        x, t = batch.x, batch.target
        saliency, nonfinite = method_saliency(explainer, batch, self.postprocess)
        order = pixel_order(
            saliency, True, self.tie_break, keys=batch.sample["index"], seed=ws.seed
        )
        rank = order_rank(order)
        n_pixels = rank.shape[1]
        counts = step_counts(n_pixels, step)
        mean, std = ws.meta.mean, ws.meta.std
        pairs = {
            "deletion": (x, fill_values(x, self.deletion_fill, mean, std, *self.blur)),
            "insertion": (fill_values(x, self.insertion_fill, mean, std, *self.blur), x),
        }
        index = batch.sample["index"].numpy()
        context = {
            "index": index,
            "target": t.cpu().numpy(),
            "map_nonfinite": nonfinite.cpu().numpy().astype(int),
        }
        b, s = len(index), len(counts)
        frames, aucs = [], {}
        for curve, (base, substitute) in pairs.items():
            scores = perturbation_scores(
                ws.model, base, substitute, rank, counts, t, self.score, ws.meta.multilabel,
                self.internal_batch_size,
            )  # fmt: skip
            aucs[curve] = trapezoid_auc(scores)
            points = {k: np.repeat(v, s) for k, v in context.items()}
            points.update(step=np.tile(np.arange(s), b), n_pixels=np.tile(counts.numpy(), b))
            frames.append(
                pd.DataFrame({**points, "curve": curve, "metric": "score", "value": flat(scores)})
            )
            frames.append(
                pd.DataFrame({**context, "curve": curve, "metric": f"{curve}_auc"}).assign(
                    value=flat(aucs[curve])
                )
            )
        overall = aucs["insertion"] - aucs["deletion"]
        frames.append(
            pd.DataFrame({**context, "curve": "both", "metric": "overall", "value": flat(overall)})
        )
        return pd.concat(frames, ignore_index=True)

    def table(self, ws: Workspace, rows: pd.DataFrame, skipped: dict[str, str]) -> pd.DataFrame:
        """Per-image AUC rows and the mean curves (``mean_score`` per method, curve and step)."""
        parts = []
        if not rows.empty:
            parts.append(rows[rows.metric != "score"])
            points = rows[rows.metric == "score"]
            keys = ["method", "curve", "step", "n_pixels"]
            mean = points.groupby(keys, sort=False).value.agg(["mean", "size"]).reset_index()
            parts.append(
                mean.rename(columns={"mean": "value", "size": "n_images"}).assign(
                    metric="mean_score"
                )
            )
        return tidy_table(ws, self.name, parts, skipped)

    def summary(self, rows: pd.DataFrame, skipped: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {"n_images": 0, "skipped": skipped, "blur": list(self.blur)}
        if rows.empty:
            return out
        per_image = rows[rows.metric.isin(["deletion_auc", "insertion_auc", "overall"])]
        out["n_images"] = int(
            per_image[per_image.metric == "overall"].groupby("method").size().max()
        )
        for (method, metric), v in per_image.groupby(["method", "metric"]).value:
            out[f"{method}/{metric}"] = float(v.mean())
        flags = per_image[per_image.metric == "overall"].groupby("method").map_nonfinite.sum()
        out["nonfinite_maps"] = {k: int(n) for k, n in flags.items() if n > 0}
        return out

    def figure(self, rows: pd.DataFrame, path: Path) -> Path:
        points = rows[rows.metric == "score"]
        means = points.groupby(["curve", "method", "n_pixels"]).value.mean()
        aucs = rows[rows.metric.str.endswith("_auc")].groupby(["metric", "method"]).value.mean()
        n_total = float(points.n_pixels.max())
        fig = Figure(figsize=(9, 3.5))
        axes = fig.subplots(1, 2, sharey=True)
        for ax, curve in zip(axes, CURVES):
            for method in dict.fromkeys(rows.method):
                m = means.loc[(curve, method)]
                auc = aucs.loc[(f"{curve}_auc", method)]
                ax.plot(m.index.to_numpy() / n_total, m.to_numpy(), label=f"{method} ({auc:.3f})")
            ax.set_title(curve, fontsize=9)
            ax.set_xlabel(
                "fraction of pixels " + ("deleted" if curve == "deletion" else "inserted")
            )
            ax.legend(fontsize=7, title="method (AUC)", title_fontsize=7)
        axes[0].set_ylabel(f"mean {self.score} of the predicted class")
        return save_figure(fig, path)
