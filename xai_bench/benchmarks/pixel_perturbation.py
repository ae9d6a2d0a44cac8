"""Pixel perturbation, remove-least-important-first (FullGrad; OPPSD §4.2; PRUNE LeRF; spec §2.2).

For each image, the ``k`` least salient pixels (all channels together) are replaced by a fill
and the target output is compared with the clean one: ``|y' - y| / |y|``, for several fractions
``k / N``. A faithful map puts unimportant pixels last, so lower is better. Defaults follow the
spec's recommendation 5: per-image channel-mean fill, target logit, k in {0.1, 1, 3, 5, 10} %.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from xai_bench.benchmarks.base import Benchmark, Result
from xai_bench.benchmarks.common import (
    EvalBatch,
    batch_chunks,
    check_target,
    explainers,
    method_config,
    partial_store,
)
from xai_bench.methods.base import Explainer
from xai_bench.methods.postprocess import Postprocess
from xai_bench.metrics.perturbation import (
    FILLS,
    SCORES,
    TIE_BREAKS,
    check_choice,
    fill_values,
    fraction_counts,
    order_rank,
    perturbation_scores,
    pixel_order,
    saliency_2d,
    target_score,
    trapezoid_auc,
)
from xai_bench.results.partial import PartialStore
from xai_bench.utils.hashing import stable_hash
from xai_bench.viz.figures import save_figure
from xai_bench.workspace import Workspace

ORDERS = ("least_first", "most_first")


def method_key(ws: Workspace, method: str) -> str:
    """Chunk prefix of a method (``<method>-<hash of its config>``; chunks add ``/batch=<n>``)."""
    return f"{method}-{stable_hash(method_config(ws, method), 8)}"


def method_saliency(
    explainer: Explainer, batch: EvalBatch, postprocess: Postprocess
) -> tuple[torch.Tensor, torch.Tensor]:
    """One value per pixel ``[B, H, W]`` for the batch's targets, and a per-image flag of
    non-finite maps (their NaNs rank as least important, see :func:`saliency_2d`)."""
    attr = explainer(batch.x, batch.target)
    if attr.shape[-2:] != batch.x.shape[-2:]:
        raise ValueError(
            f"maps of shape {tuple(attr.shape)} do not match inputs {tuple(batch.x.shape)}; "
            "add an `upsample` postprocess step"
        )
    nonfinite = ~torch.isfinite(attr.flatten(1)).all(1)
    return saliency_2d(attr, postprocess), nonfinite


def method_chunks(
    ws: Workspace,
    store: PartialStore,
    methods: Sequence[str],
    compute: Callable[[Workspace, Explainer, EvalBatch], pd.DataFrame],
    split: str,
    n_images: int | None,
    batch_size: int,
    target: str,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rows of every (batch, method) chunk through the resumable ``store`` (data-parallel with
    a DDP trainer preset, see :func:`~xai_bench.benchmarks.common.batch_chunks`), with a
    ``method`` column, and the methods skipped as not applicable (name -> reason)."""
    named = list(explainers(ws, methods))
    applicable = [(name, e) for name, e, _ in named if e is not None]
    jobs = [(method_key(ws, name), partial(compute, ws, e)) for name, e in applicable]
    label = {key: name for (key, _), (name, _) in zip(jobs, applicable, strict=True)}
    parts = batch_chunks(ws, store, jobs, split, n_images, batch_size, target)
    chunks = [rows.assign(method=label[key]) for key, _, rows in parts]
    skipped = {name: note for name, e, note in named if e is None}
    return (pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()), skipped


def tidy_table(
    ws: Workspace, benchmark: str, parts: Sequence[pd.DataFrame], skipped: Mapping[str, str]
) -> pd.DataFrame:
    """Long table: identity columns, ``benchmark``, ``method``, ``metric``, ``value``, context;
    one ``applicable = 0`` row per skipped method with the reason in ``note``."""
    notes = [
        {"method": n, "metric": "applicable", "value": 0.0, "note": note}
        for n, note in skipped.items()
    ]
    table = pd.concat([*parts, pd.DataFrame(notes)], ignore_index=True)
    identity = {k: v for k, v in ws.identity.items() if k != "method"}
    front = {**identity, "benchmark": benchmark}
    for key, value in front.items():
        table[key] = value
    first = [*front, "method", "metric", "value"]
    return table.reindex(columns=first + [c for c in table.columns if c not in first])


class PixelPerturbation(Benchmark):
    """``benchmark=pixel_perturbation``: output change after removing the least salient pixels.

    Args:
        methods: method config names; empty means the run's own ``method``.
        n_images: images of a seeded random subset of ``split`` (``None``: all).
        batch_size: images per explained batch (one resumable chunk per method and batch).
        split: data split.
        target: class explained and measured, ``predicted`` or ``label``.
        fractions: shares of pixels removed; ``k = max(1, int(N * p))`` (OPPSD).
        order: ``least_first`` (LeRF, spec) or ``most_first``.
        fill: ``image_mean``, ``dataset_mean``, ``zero`` (black) or ``blur``.
        output: ``logit`` (spec rec. 5) or ``softmax`` (PRUNE's LeRF tool).
        postprocess: steps that collapse a map to one value per pixel (OPPSD: channel mean, abs).
        tie_break: ``random`` (seeded per image) or ``index`` (numpy's argsort order).
        blur_kernel_size: kernel of the ``blur`` fill.
        blur_sigma: sigma of the ``blur`` fill.
        internal_batch_size: perturbed images per forward pass (``None``: all at once).
    """

    name = "pixel_perturbation"
    higher_is_better = False

    def __init__(
        self,
        methods: Sequence[str] = (),
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
        blur_kernel_size: int = 51,
        blur_sigma: float = 50.0,
        internal_batch_size: int | None = 256,
    ) -> None:
        self.methods = list(methods)
        self.n_images = None if n_images is None else int(n_images)
        self.batch_size = int(batch_size)
        self.split = split
        self.target = check_target(target)
        self.fractions = sorted(float(f) for f in fractions)
        fraction_counts(1, self.fractions)  # validates the range
        self.order = check_choice(order, ORDERS, "order")
        self.fill = check_choice(fill, FILLS, "fill")
        self.output = check_choice(output, SCORES, "output")
        self.postprocess_steps = [s if isinstance(s, str) else dict(s) for s in postprocess]
        self.postprocess = Postprocess(self.postprocess_steps)
        self.tie_break = check_choice(tie_break, TIE_BREAKS, "tie_break")
        self.blur_kernel_size = int(blur_kernel_size)
        self.blur_sigma = float(blur_sigma)
        self.internal_batch_size = internal_batch_size

    def params(self) -> dict[str, Any]:
        """What changes the numbers (the partial store's fingerprint)."""
        skip = ("methods", "internal_batch_size", "postprocess")
        return {k: v for k, v in vars(self).items() if k not in skip}

    def run(self, ws: Workspace) -> Result:
        store = partial_store(ws, {"benchmark": self.name, **self.params()})
        rows, skipped = method_chunks(
            ws, store, self.methods, self.chunk, self.split, self.n_images, self.batch_size,
            self.target,
        )  # fmt: skip
        table = tidy_table(ws, self.name, [rows], skipped)
        figures = [] if rows.empty else [str(self.figure(rows, ws.run_dir / f"{self.name}.png"))]
        return Result(table, self.summary(rows, skipped), figures)

    def chunk(self, ws: Workspace, explainer: Explainer, batch: EvalBatch) -> pd.DataFrame:
        """Rows of one batch for one method: the change per (image, fraction) and its AUC."""
        x, t = batch.x, batch.target
        saliency, nonfinite = method_saliency(explainer, batch, self.postprocess)
        order = pixel_order(
            saliency,
            descending=self.order == "most_first",
            tie_break=self.tie_break,
            keys=batch.sample["index"],
            seed=ws.seed,
        )
        n_pixels = order.shape[1]
        counts = fraction_counts(n_pixels, self.fractions)
        fill = fill_values(
            x, self.fill, ws.meta.mean, ws.meta.std, self.blur_kernel_size, self.blur_sigma
        )
        multilabel = ws.meta.multilabel
        y0 = target_score(batch.logits, t, self.output, multilabel)
        y = perturbation_scores(
            ws.model, x, fill, order_rank(order), counts, t, self.output, multilabel,
            self.internal_batch_size,
        )  # fmt: skip
        change = relative_change(y, y0)  # [B, F]
        auc = (
            trapezoid_auc(change, torch.tensor(self.fractions)) if len(counts) > 1 else change[:, 0]
        )
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

    def summary(self, rows: pd.DataFrame, skipped: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {"n_images": 0, "skipped": skipped, "fractions": self.fractions}
        if rows.empty:
            return out
        out["n_images"] = int(rows[rows.metric == "auc"].groupby("method").size().max())
        changes = rows[rows.metric == "output_change"]
        for (method, fraction), v in changes.groupby(["method", "fraction"]).value:
            out[f"{method}/change@{fraction:g}"] = float(v.mean())
        for method, v in rows[rows.metric == "auc"].groupby("method").value:
            out[f"{method}/auc"] = float(v.mean())
        undefined = changes[changes.value.isna()].groupby("method").size()
        out["undefined_rows"] = {k: int(n) for k, n in undefined.items()}
        nonfinite = rows[rows.metric == "auc"].groupby("method").map_nonfinite.sum()
        out["nonfinite_maps"] = {k: int(n) for k, n in nonfinite.items() if n > 0}
        return out

    def figure(self, rows: pd.DataFrame, path: Path) -> Path:
        means = rows[rows.metric == "output_change"].groupby(["method", "fraction"]).value.mean()
        fig = Figure(figsize=(5, 3.5))
        ax = fig.subplots()
        for method in dict.fromkeys(rows.method):
            curve = means.loc[method]
            ax.plot(100 * curve.index.to_numpy(), curve.to_numpy(), marker="o", label=method)
        ax.set_xscale("log")
        ax.set_xlabel(f"pixels removed, % ({self.order.replace('_', ' ')})")
        ax.set_ylabel(f"mean |Δ{self.output}| / |{self.output}|")
        ax.set_title(f"pixel perturbation, fill {self.fill}", fontsize=9)
        ax.legend(fontsize=7)
        return save_figure(fig, path)


def relative_change(y: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
    """``|y - y0| / |y0|`` per column of ``y`` ``[B, F]``; NaN where ``y0 == 0`` (undefined)."""
    den = y0.abs().view(-1, 1)
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, (y - y0.view(-1, 1)).abs() / safe, torch.nan)


def flat(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy().reshape(-1)
