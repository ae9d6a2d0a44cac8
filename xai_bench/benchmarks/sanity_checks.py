"""Sanity checks: model-parameter randomisation test (Adebayo et al. 2018; spec §2.4).

Maps of the trained model are compared with maps of copies whose blocks are re-initialised,
either cumulatively from the output to the input (``cascading``) or one block at a time
(``independent``). A method that depends on the learned parameters should lose similarity as
soon as the output block is randomised; a method whose maps stay similar is insensitive to
the model (e.g. the ``random`` baseline, whose maps depend only on the image).

Metrics (per image; rows per method, stage, image and metric):

* ``spearman_abs``: Spearman of Adebayo's abs views (sum ``|.|`` over channels, clipped at the
  99th percentile);
* ``spearman_signed``: Spearman of the diverging views (signed channel sum / 99th pct);
* ``ssim``: SSIM (Gaussian weights, sigma 1.5, data range 1) of the min-max [0, 1] abs views;
* ``hog_spearman``: Spearman of the HOG features of the abs views (POSAGG's metric);
* ``prune_spearman_abs``, ``prune_spearman_signed``, ``prune_ssim``: PRUNE §4.2's [-1, 1]
  max-abs view (with and without ``|.|``; SSIM with data range 2).

The ``original`` stage compares a second call on the trained model with the reference maps,
so it is 1 for deterministic methods by computation, not by definition.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from xai_bench.benchmarks.base import Benchmark, Result
from xai_bench.benchmarks.common import (
    EvalBatch,
    Job,
    batch_chunks,
    explainers,
    method_config,
    method_names,
    partial_store,
)
from xai_bench.methods.base import Explainer
from xai_bench.metrics import similarity as sim
from xai_bench.models.randomize import randomized_copy
from xai_bench.viz.figures import save_figure
from xai_bench.workspace import Workspace

MODES = ("cascading", "independent")
INITS = {"normal": "normal", "default": "default_init"}
TARGETS = ("predicted", "original")
CONSTANT_MAPS = ("define", "nan")
ORIGINAL = "original"

log = logging.getLogger(__name__)

# metric -> (view it compares, similarity of two views)
METRICS: dict[str, tuple[str, str]] = {
    "spearman_abs": ("abs", "spearman"),
    "spearman_signed": ("diverging", "spearman"),
    "ssim": ("abs_minmax", "ssim"),
    "hog_spearman": ("hog", "spearman"),
    "prune_spearman_abs": ("maxabs_abs", "spearman"),
    "prune_spearman_signed": ("maxabs", "spearman"),
    "prune_ssim": ("maxabs", "ssim2"),
}


def map_views(attr: Tensor, views: Sequence[str], hog_cell: int) -> dict[str, Tensor]:
    """The views of raw maps ``[B, C, H, W]`` that the metrics compare (see module doc)."""
    out: dict[str, Tensor] = {}
    if {"abs", "abs_minmax", "hog"} & set(views):
        absv = sim.abs_view(attr)
        out.update(abs=absv, abs_minmax=sim.minmax_view(absv))
    if "hog" in views:
        out["hog"] = sim.hog(out["abs"], hog_cell)
    if "diverging" in views:
        out["diverging"] = sim.diverging_view(attr)
    if {"maxabs", "maxabs_abs"} & set(views):
        out["maxabs"] = sim.maxabs_view(attr)
        out["maxabs_abs"] = out["maxabs"].abs()
    return {k: v for k, v in out.items() if k in views}


def compare(a: dict[str, Tensor], b: dict[str, Tensor], metric: str, defined: bool) -> Tensor:
    """One metric per sample ``[B]`` between two view dicts of :func:`map_views`."""
    view, kind = METRICS[metric]
    x, y = a[view], b[view].to(a[view].device)
    if kind == "spearman":
        return sim.spearman(x, y, defined=defined)
    return sim.ssim(x, y, data_range=2.0 if kind == "ssim2" else 1.0)


def aggregate(table: pd.DataFrame, by: Sequence[str]) -> list[dict[str, Any]]:
    """Mean and std over finite values per group, with the count of finite and NaN values."""
    records = []
    for key, group in table.groupby(list(by), sort=False):
        values = group["value"].astype(float)
        finite = values[values.map(math.isfinite)]
        rec = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        rec.update(
            mean=float(finite.mean()) if len(finite) else None,
            std=float(finite.std(ddof=0)) if len(finite) else None,
            n=len(finite),
            n_nan=int(len(values) - len(finite)),
        )
        if rec["n_nan"]:
            log.warning("%d NaN values (constant or non-finite maps) in %s", rec["n_nan"], key)
        records.append(rec)
    return records


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]", "_", name)


class SanityChecks(Benchmark):
    """``benchmark=sanity_checks``: similarity of maps before/after parameter randomisation.

    Args:
        methods: method config names; empty means the run's own ``method``.
        mode: ``cascading`` (blocks randomised cumulatively, output to input) or
            ``independent`` (one block at a time).
        init: ``normal`` (N(0, ``std``), PRUNE/POSAGG) or ``default`` (each layer's own
            initialiser, Adebayo/Group-CAM); batch-norm running statistics are kept.
        std: standard deviation of ``normal``.
        n_images: images of ``split`` (a seeded subset; ``None`` = all).
        batch_size: images per explainer call.
        split: data split.
        target: ``predicted`` (the randomised model's own argmax, Adebayo) or ``original``
            (the trained model's argmax for every stage).
        hog_cell: HOG cell size in pixels (the papers' 16 at 224 px; images need at least
            3 cells per side).
        metrics: names from :data:`METRICS`.
        blocks: blocks in cascading order; ``None`` = the model's ``blocks`` (ModelMeta).
        constant_maps: ``define`` (Spearman 1 for two constant maps, 0 for one) or ``nan``
            (SciPy's NaN; NaNs are left out of means and counted as ``n_nan``).
    """

    name = "sanity_checks"
    higher_is_better = False

    def __init__(
        self,
        methods: Sequence[str] = (),
        mode: str = "cascading",
        init: str = "normal",
        std: float = 0.01,
        n_images: int | None = 16,
        batch_size: int = 16,
        split: str = "test",
        target: str = "predicted",
        hog_cell: int = 16,
        metrics: Sequence[str] = ("spearman_abs", "spearman_signed", "ssim", "hog_spearman"),
        blocks: Sequence[str] | None = None,
        constant_maps: str = "define",
    ) -> None:
        for value, allowed, what in (
            (mode, MODES, "mode"),
            (init, tuple(INITS), "init"),
            (target, TARGETS, "target"),
            (constant_maps, CONSTANT_MAPS, "constant_maps"),
        ):
            if value not in allowed:
                raise ValueError(f"{what} must be one of {allowed}, got '{value}'")
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise ValueError(f"unknown metrics {unknown} (known: {sorted(METRICS)})")
        self.methods = list(methods)
        self.mode, self.init, self.std = mode, init, float(std)
        self.n_images = None if n_images is None else int(n_images)
        self.batch_size, self.split, self.target = int(batch_size), split, target
        self.hog_cell = int(hog_cell)
        self.metrics = list(metrics)
        self.blocks = None if blocks is None else list(blocks)
        self.constant_maps = constant_maps
        self.views = sorted({METRICS[m][0] for m in self.metrics})

    def _check_sizes(self, ws: Workspace) -> None:
        _, h, w = ws.meta.input_size
        if "hog" in self.views and min(h, w) < 3 * self.hog_cell:
            raise ValueError(
                f"hog_cell={self.hog_cell} needs images of at least {3 * self.hog_cell} px "
                f"(3x3-cell blocks); {ws.meta.name} inputs are {h}x{w}: lower hog_cell"
            )

    def _stages(self, blocks: list[str]) -> list[tuple[str, list[str]]]:
        """``(stage, randomised blocks)``: the original model, then the cascade or each block."""
        if self.mode == "cascading":
            return [(ORIGINAL, []), *((b, blocks[: i + 1]) for i, b in enumerate(blocks))]
        return [(ORIGINAL, []), *((b, [b]) for b in blocks)]

    def _model(self, ws: Workspace, randomised: list[str]) -> nn.Module:
        if not randomised:
            return ws.model
        return randomized_copy(ws.model, randomised, INITS[self.init], self.std, ws.seed)

    def run(self, ws: Workspace) -> Result:
        self._check_sizes(ws)
        blocks = list(ws.meta.blocks) if self.blocks is None else self.blocks
        if not blocks:
            raise ValueError(f"model {ws.meta.name} lists no blocks to randomise (model.blocks)")
        names = method_names(ws, self.methods)
        params = {
            **{k: v for k, v in vars(self).items() if k != "views"},
            "blocks": blocks,
            "method_configs": {n: method_config(ws, n) for n in names},
        }
        store = partial_store(ws, params)
        built = list(explainers(ws, self.methods))
        reference = {name: e for name, e, _ in built if e is not None}
        skipped = {name: note for name, e, note in built if e is None}
        stages = self._stages(blocks)
        shared = _StageCache(self, ws, dict(stages), reference)
        frames = []
        for index, (stage, _) in enumerate(stages):  # one randomised model in memory at a time
            jobs: list[Job] = [
                (f"method={m}/stage={stage}", partial(shared.chunk, m, stage, index))
                for m in reference
            ]
            parts = batch_chunks(ws, store, jobs, self.split, self.n_images, self.batch_size)
            frames += [rows for _, _, rows in parts]  # stage, batch, method order
            shared.release(stage)
        return self._result(ws, frames, [s for s, _ in stages], skipped, store)

    def _target(self, model: nn.Module, batch: EvalBatch) -> Tensor:
        if self.target == "original":
            return batch.target
        with torch.no_grad():
            return model(batch.x).argmax(1)

    def _rows(
        self,
        ws: Workspace,
        method: str,
        stage: str,
        index: int,
        batch: EvalBatch,
        target: Tensor,
        ref: dict[str, Tensor],
        views: dict[str, Tensor],
    ) -> pd.DataFrame:
        identity = {k: v for k, v in ws.identity.items() if k != "method"}
        context = {
            **identity,
            "benchmark": self.name,
            "method": method,
            "mode": self.mode,
            "init": self.init,
            "stage": stage,
            "stage_index": index,
        }
        images = batch.sample["index"].tolist()
        targets = target.tolist()
        rows = []
        for metric in self.metrics:
            values = compare(views, ref, metric, self.constant_maps == "define").tolist()
            for image, t, value in zip(images, targets, values):
                rows.append(
                    {**context, "image": image, "target": t, "metric": metric, "value": value}
                )
        return pd.DataFrame(rows)

    def _result(
        self,
        ws: Workspace,
        frames: list[pd.DataFrame],
        stages: list[str],
        skipped: dict[str, str],
        store: Any,
    ) -> Result:
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        aggregates = aggregate(table, ["method", "stage", "metric"]) if len(table) else []
        figures = [
            str(self._figure(method, stages, aggregates, ws.run_dir))
            for method in dict.fromkeys(r["method"] for r in aggregates)
        ]
        summary = {
            "mode": self.mode,
            "init": self.init,
            "std": self.std,
            "target": self.target,
            "stages": stages,
            "metrics": self.metrics,
            "n_images": int(table["image"].nunique()) if len(table) else 0,
            "aggregate": aggregates,
            "skipped": skipped,
            "chunks_loaded": len(store.loaded),
            "chunks_computed": len(store.computed),
        }
        return Result(table, summary, figures)

    def _figure(
        self, method: str, stages: list[str], aggregates: list[dict[str, Any]], run_dir: Path
    ) -> Path:
        fig = Figure(figsize=(max(4.0, 0.55 * len(stages) + 2), 3.4))
        ax = fig.subplots()
        xs = range(len(stages))
        for metric in self.metrics:
            by_stage = {
                r["stage"]: r for r in aggregates if r["method"] == method and r["metric"] == metric
            }
            mean = [_num(by_stage.get(s, {}).get("mean")) for s in stages]
            std = [_num(by_stage.get(s, {}).get("std")) for s in stages]
            ax.plot(xs, mean, marker="o", ms=3, label=metric)
            lo = [m - s for m, s in zip(mean, std)]
            hi = [m + s for m, s in zip(mean, std)]
            ax.fill_between(xs, lo, hi, alpha=0.15)
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set_xticks(list(xs), stages, rotation=45, ha="right", fontsize=7)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("similarity to the trained model's maps")
        ax.set_title(f"{method}: {self.mode} randomisation ({self.init})", fontsize=9)
        ax.legend(fontsize=7)
        return save_figure(fig, run_dir / f"sanity_checks_{_safe_name(method)}.png")


def _num(v: float | None) -> float:
    return math.nan if v is None else float(v)


class _StageCache:
    """What the (stage, method) chunks of one run share, built lazily once per process: the
    randomised model of the current stage and its explainers (methods fitted from data are
    fitted on that model), the stage's targets for the batch at hand, and the trained model's
    views of every batch (computed once, reused by every stage). Stages run one after another,
    and :meth:`release` drops a finished stage's model."""

    def __init__(
        self,
        bench: SanityChecks,
        ws: Workspace,
        stages: dict[str, list[str]],
        reference: dict[str, Explainer],
    ) -> None:
        self.bench, self.ws, self.stages, self.reference = bench, ws, stages, reference
        self.models: dict[str, nn.Module] = {}
        self.explainers: dict[tuple[str, str], Explainer] = {}
        self.targets: dict[tuple[str, int], Tensor] = {}
        self.views: dict[tuple[str, int], dict[str, Tensor]] = {}

    def model(self, stage: str) -> nn.Module:
        if stage not in self.models:
            self.models[stage] = self.bench._model(self.ws, self.stages[stage])
        return self.models[stage]

    def explainer(self, stage: str, method: str) -> Explainer:
        if not self.stages[stage]:
            return self.reference[method]
        if (stage, method) not in self.explainers:
            explainer = self.ws.explainer_named(method, model=self.model(stage))
            self.explainers[(stage, method)] = explainer
        return self.explainers[(stage, method)]

    def release(self, stage: str) -> None:
        """Forget a finished stage's model, explainers and targets."""
        self.models.pop(stage, None)
        self.explainers = {k: v for k, v in self.explainers.items() if k[0] != stage}
        self.targets = {k: v for k, v in self.targets.items() if k[0] != stage}

    def chunk(self, method: str, stage: str, index: int, batch: EvalBatch) -> pd.DataFrame:
        """Rows of one (stage, method, batch) chunk: the stage's maps against the reference."""
        bench, explainer = self.bench, self.explainer(stage, method)
        if (stage, batch.number) not in self.targets:
            self.targets[(stage, batch.number)] = bench._target(self.model(stage), batch)
        target = self.targets[(stage, batch.number)]
        views = map_views(explainer(batch.x, target), bench.views, bench.hog_cell)
        if (method, batch.number) not in self.views:  # the trained model's maps of the batch
            ref = self.reference[method](batch.x, batch.target)
            self.views[(method, batch.number)] = map_views(ref, bench.views, bench.hog_cell)
        ref_views = self.views[(method, batch.number)]
        return bench._rows(self.ws, method, stage, index, batch, target, ref_views, views)
