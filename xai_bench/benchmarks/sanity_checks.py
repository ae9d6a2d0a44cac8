"""Sanity checks: model-parameter randomisation test (Adebayo et al. 2018).

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

A map with a NaN or an infinite value (at the stage or in the reference) gives NaN in every
metric, its rows are flagged ``map_nonfinite = 1``, and the mean of each (method, stage,
metric) group with such a row is NaN (:func:`~xai_bench.metrics.aggregate.aggregate`).

The first image's abs view per method and stage (Adebayo's Fig. 2 strip, OPPSD Fig. 2b) is kept
beside the chunks when its first batch is computed and joined into ``sanity_maps.npz``
(:mod:`~xai_bench.benchmarks.sanity_maps`), which ``make figures`` draws.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from xai_bench.benchmarks.sanity_maps import MAPS_FILE, keep_array, map_file, write_stage_maps
from xai_bench.engine.batches import BatchPlan, EvalBatch
from xai_bench.engine.benchmark import EvalBenchmark, Result
from xai_bench.engine.context import RunContext
from xai_bench.engine.jobs import Job, build_explainers, chunk_store, run_jobs
from xai_bench.methods.base import Explainer
from xai_bench.methods.spec import MethodSpec
from xai_bench.metrics import similarity as sim
from xai_bench.metrics.aggregate import NONFINITE, aggregate, check_constant_maps
from xai_bench.metrics.postprocess import nonfinite_maps
from xai_bench.metrics.similarity import SANITY_METRICS as METRICS
from xai_bench.metrics.similarity import compare_views as compare
from xai_bench.metrics.similarity import map_views
from xai_bench.models.randomize import randomized_copy
from xai_bench.utils.distributed import is_global_zero
from xai_bench.utils.resolution import (
    HOG_CELL,
    REFERENCE_SIDE,
    SSIM_SIGMA,
    float_option,
    px_option,
    resolve_float,
    resolve_px,
)
from xai_bench.viz.sanity import stage_curves

MODES = ("cascading", "independent")
INITS = {"normal": "normal", "default": "default_init"}
TARGETS = ("predicted", "original")
ORIGINAL = "original"


def file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]", "_", name)


def figure_names(rows: pd.DataFrame) -> dict[str, str]:
    """A file-safe name per method label, unique (the hash is appended on a collision)."""
    names: dict[str, str] = {}
    pairs = rows[["method", "method_hash"]].drop_duplicates("method")
    for label, method_hash in pairs.itertuples(index=False):
        name = file_safe(str(label))
        if name in names.values():
            name = f"{name}-{str(method_hash)[:8]}"
        names[str(label)] = name
    return names


def stage_order(rows: pd.DataFrame) -> list[str]:
    """The stages of the rows in the order they ran."""
    stages = rows.drop_duplicates("stage_index").sort_values("stage_index")["stage"]
    return [str(s) for s in stages]


class SanityChecks(EvalBenchmark):
    """``benchmark=sanity_checks``: similarity of maps before/after parameter randomisation.

    Stages run one after another with one randomised model in memory at a time; each is one
    set of :class:`Job` (one per method, ``stage``/``stage_index`` conditions) over the same
    batches, resumable chunk by chunk.

    Args:
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
        hog_cell: HOG cell size in pixels; ``auto``: the papers' 16 px at 224 px scaled to the
            input (:mod:`~xai_bench.utils.resolution`, at least 2; images need 3 cells per
            side).
        ssim_sigma: SSIM's Gaussian window sigma in pixels; ``auto``: scikit-image's 1.5 at
            224 px scaled to the input (at least 0.5).
        metrics: names from :data:`METRICS`.
        blocks: blocks in cascading order; ``None`` = the model's ``blocks`` (ModelMeta).
        constant_maps: ``define`` (Spearman 1 for two constant maps, 0 for one) or ``nan``
            (SciPy's NaN; NaNs are left out of means and counted as ``n_nan``). Maps with a
            NaN or an infinite value are NaN either way and make their group's mean NaN.
    """

    name = "sanity_checks"
    nan_reason = "undefined: constant maps (constant_maps=nan)"
    headline = {"spearman_abs": False, "spearman_signed": False, "ssim": False,
                "hog_spearman": False}  # fmt: skip

    def __init__(
        self,
        mode: str = "cascading",
        init: str = "normal",
        std: float = 0.01,
        n_images: int | None = 16,
        batch_size: int = 16,
        split: str = "test",
        target: str = "predicted",
        hog_cell: int | str = "auto",
        metrics: Sequence[str] = ("spearman_abs", "spearman_signed", "ssim", "hog_spearman"),
        blocks: Sequence[str] | None = None,
        constant_maps: str = "define",
        ssim_sigma: float | str = "auto",
    ) -> None:
        for value, allowed, what in (
            (mode, MODES, "mode"),
            (init, tuple(INITS), "init"),
            (target, TARGETS, "target"),
        ):
            if value not in allowed:
                raise ValueError(f"{what} must be one of {allowed}, got '{value}'")
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise ValueError(f"unknown metrics {unknown} (known: {sorted(METRICS)})")
        n = None if n_images is None else int(n_images)
        # the batches' own target is the trained model's argmax; each stage picks its own
        self.plan = BatchPlan(split, n, int(batch_size), "predicted")
        if not float(std) > 0 or float(std) == float("inf"):
            raise ValueError(f"std must be a finite number > 0, got {std}")
        self.mode, self.init, self.std = mode, init, float(std)
        self.target = target
        self.hog_cell = px_option(hog_cell, "hog_cell")
        self.ssim_sigma = float_option(ssim_sigma, "ssim_sigma")
        self.metrics = list(metrics)
        self.blocks = None if blocks is None else list(blocks)
        self.constant_maps = check_constant_maps(constant_maps)
        # the sizes at 224 px inputs until check() resolves them for the model's input
        self.cell_px = resolve_px(self.hog_cell, HOG_CELL, REFERENCE_SIDE)
        self.sigma_px = resolve_float(self.ssim_sigma, SSIM_SIGMA, REFERENCE_SIDE)

    @property
    def views(self) -> list[str]:
        """The map views the metrics compare."""
        return sorted({METRICS[m][0] for m in self.metrics})

    def model_blocks(self, ctx: RunContext) -> list[str]:
        """The blocks to randomise, in cascading order."""
        return list(ctx.meta.blocks) if self.blocks is None else list(self.blocks)

    def check(self, ctx: RunContext) -> None:
        _, h, w = ctx.meta.input_size
        self.cell_px = resolve_px(self.hog_cell, HOG_CELL, min(h, w), minimum=2)
        self.sigma_px = resolve_float(self.ssim_sigma, SSIM_SIGMA, min(h, w), minimum=0.5)
        if "hog" in self.views and min(h, w) < 3 * self.cell_px:
            raise ValueError(
                f"hog_cell={self.cell_px} needs images of at least {3 * self.cell_px} px "
                f"(3x3-cell blocks); {ctx.meta.name} inputs are {h}x{w}: lower hog_cell"
            )
        if not self.model_blocks(ctx):
            raise ValueError(f"model {ctx.meta.name} lists no blocks to randomise (model.blocks)")

    def stages(self, blocks: Sequence[str]) -> list[tuple[str, list[str]]]:
        """``(stage, randomised blocks)``: the original model, then the cascade or each block."""
        if self.mode == "cascading":
            return [(ORIGINAL, []), *((b, list(blocks[: i + 1])) for i, b in enumerate(blocks))]
        return [(ORIGINAL, []), *((b, [b]) for b in blocks)]

    def randomised(self, ctx: RunContext, blocks: Sequence[str]) -> nn.Module:
        """The trained model with ``blocks`` re-initialised: a copy (``ctx.model`` is kept)."""
        if not blocks:
            return ctx.model
        return randomized_copy(ctx.model, list(blocks), INITS[self.init], self.std, ctx.seed)

    def run(self, ctx: RunContext) -> Result:
        self.check(ctx)
        blocks = self.model_blocks(ctx)
        store = chunk_store(ctx, self.name, {**self.params(), "blocks": blocks})
        built, skipped = build_explainers(ctx)
        stages = self.stages(blocks)
        shared = _StageCache(self, ctx, dict(stages), {spec.label: e for spec, e in built})
        shared.maps_dir = store.root / "maps"
        frames = []
        for index, (stage, _) in enumerate(stages):  # one randomised model in memory at a time
            conditions = {"stage": stage, "stage_index": index}
            jobs = [Job(spec, partial(shared.chunk, spec, stage), conditions) for spec, _ in built]
            frames.append(run_jobs(ctx, store, jobs, self.plan, f"{self.name} {stage}"))
            shared.release(stage)
        frames = [f for f in frames if len(f)]
        rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if is_global_zero():
            keys = [(spec.label, spec.key) for spec, _ in built]
            write_stage_maps(shared.maps_dir, ctx.run_dir / MAPS_FILE, keys, [s for s, _ in stages])
        return self.result(ctx, rows, skipped, store)

    def stage_target(self, model: nn.Module, batch: EvalBatch) -> Tensor:
        """The class explained at a stage whose model is ``model``."""
        if self.target == "original":
            return batch.target
        with torch.no_grad():
            return model(batch.x).argmax(1)

    def map_views(self, attr: Tensor) -> dict[str, Tensor]:
        return map_views(attr, self.views, self.cell_px)

    def rows(
        self, batch: EvalBatch, target: Tensor, views: dict[str, Tensor], ref: dict[str, Tensor]
    ) -> pd.DataFrame:
        """Rows of one batch: each metric between a stage's views and the reference views."""
        context = {"mode": self.mode, "init": self.init}
        images, targets = batch.sample["index"].tolist(), target.tolist()
        # views of a map with a non-finite value are all NaN (a NaN map is no constant map)
        bad = torch.zeros(len(images), dtype=torch.bool)
        for v in (*views.values(), *ref.values()):
            bad |= nonfinite_maps(v).cpu()
        flags = bad.long().tolist()
        rows = []
        for metric in self.metrics:
            defined = self.constant_maps == "define"
            values = compare(views, ref, metric, defined, self.sigma_px).tolist()
            for image, t, value, flag in zip(images, targets, values, flags, strict=True):
                rows.append(
                    {**context, "image": image, "target": t, "metric": metric, "value": value,
                     NONFINITE: flag}
                )  # fmt: skip
        return pd.DataFrame(rows)

    def score(self, ctx: RunContext, explainer: Explainer, batch: EvalBatch) -> pd.DataFrame:
        """Rows of the ``original`` stage of one batch: a second call of ``explainer`` (bound
        to the trained model) against its first. :meth:`run` scores every stage and computes
        each reference map once."""
        views = self.map_views(explainer(batch.x, batch.target))
        ref = self.map_views(explainer(batch.x, batch.target))
        return self.rows(batch, batch.target, views, ref)

    def summarize(self, rows: pd.DataFrame) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "init": self.init,
            "std": self.std,
            "target": self.target,
            "stages": stage_order(rows),
            "metrics": self.metrics,
            "aggregate": aggregate(rows, ["method", "stage", "metric"]),
        }

    def draw(self, rows: pd.DataFrame, run_dir: Path) -> list[Path]:
        """One figure of the stage curves per method label."""
        stages = stage_order(rows)
        aggregates = aggregate(rows, ["method", "stage", "metric"], warn=False)
        title = f"{self.mode} randomisation ({self.init})"
        paths = []
        for label, name in figure_names(rows).items():
            path = run_dir / f"{self.name}_{name}.png"
            paths.append(
                stage_curves(aggregates, label, stages, self.metrics, f"{label}: {title}", path)
            )
        return paths


class _StageCache:
    """What the (stage, method) chunks of one run share, built lazily once per process: the
    randomised model of the current stage and its explainers (methods fitted from data are
    fitted on that model), the stage's targets for the batch at hand, and the trained model's
    views of every batch per method label (computed once, reused by every stage). Stages run
    one after another, and :meth:`release` drops a finished stage's model."""

    def __init__(
        self,
        bench: SanityChecks,
        ctx: RunContext,
        stages: dict[str, list[str]],
        reference: dict[str, Explainer],
    ) -> None:
        self.bench, self.ctx, self.stages, self.reference = bench, ctx, stages, reference
        self.models: dict[str, nn.Module] = {}
        self.explainers: dict[tuple[str, str], Explainer] = {}
        self.targets: dict[tuple[str, int], Tensor] = {}
        self.views: dict[tuple[str, int], dict[str, Tensor]] = {}
        self.maps_dir: Path | None = None  # where the first image's maps are kept

    def model(self, stage: str) -> nn.Module:
        if stage not in self.models:
            self.models[stage] = self.bench.randomised(self.ctx, self.stages[stage])
        return self.models[stage]

    def explainer(self, stage: str, spec: MethodSpec) -> Explainer:
        if not self.stages[stage]:
            return self.reference[spec.label]
        if (stage, spec.label) not in self.explainers:
            explainer = self.ctx.explainer(spec, model=self.model(stage))
            self.explainers[(stage, spec.label)] = explainer
        return self.explainers[(stage, spec.label)]

    def release(self, stage: str) -> None:
        """Forget a finished stage's model, explainers and targets."""
        self.models.pop(stage, None)
        self.explainers = {k: v for k, v in self.explainers.items() if k[0] != stage}
        self.targets = {k: v for k, v in self.targets.items() if k[0] != stage}

    def chunk(self, spec: MethodSpec, stage: str, batch: EvalBatch) -> pd.DataFrame:
        """Rows of one (stage, method, batch) chunk: the stage's maps against the reference."""
        bench, explainer = self.bench, self.explainer(stage, spec)
        if (stage, batch.number) not in self.targets:
            self.targets[(stage, batch.number)] = bench.stage_target(self.model(stage), batch)
        target = self.targets[(stage, batch.number)]
        attr = explainer(batch.x, target)
        if batch.number == 0 and self.maps_dir is not None:
            self.keep_first_map(spec, stage, batch, attr)
        views = bench.map_views(attr)
        if (spec.label, batch.number) not in self.views:  # the trained model's maps
            ref = self.reference[spec.label](batch.x, batch.target)
            self.views[(spec.label, batch.number)] = bench.map_views(ref)
        return bench.rows(batch, target, views, self.views[(spec.label, batch.number)])

    def keep_first_map(self, spec: MethodSpec, stage: str, batch: EvalBatch, attr: Tensor) -> None:
        """Keep the abs view ``[H, W]`` of the batch's first map (and the image) as float16."""
        assert self.maps_dir is not None
        view = sim.abs_view(attr[:1].detach().float())[0, 0]
        keep_array(map_file(self.maps_dir, spec.key, stage), view.cpu().numpy())
        if not (self.maps_dir / "image.npy").is_file():
            image = self.ctx.datamodule.denormalize(batch.x[:1].detach().float())[0]
            keep_array(self.maps_dir / "image.npy", image.clamp(0, 1).cpu().numpy())
