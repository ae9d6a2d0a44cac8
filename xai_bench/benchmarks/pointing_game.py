"""Pointing game (Zhang et al. 2016, EBP) as in TorchRay, and POSAGG's restricted variant.

Spec §2.5. For every (image, class present in the image) pair the method explains that class;
the map is resized to the image's original resolution (bilinear, ``align_corners=False``),
optionally Gaussian-smoothed, and its maximum is the predicted point (first maximum in
row-major order on ties). The pair is a hit when a ground-truth pixel of the class (union of
its boxes, or of its instance masks) lies at Euclidean distance ``< tolerance`` of the point.
Accuracy per class is ``hits / pairs``; the headline is the mean over the classes that have
pairs. The restricted variant (POSAGG Tables 1 and 3) computes one map per image, for the
model's top-scoring class, and scores its point against every class present.

A map with a NaN or an infinite value has no point: its pairs get ``hit`` NaN (flagged
``map_nonfinite = 1``), so the accuracy of their class, the method's accuracy and its hit rate
are NaN, and the summary counts those pairs under ``nonfinite``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from xai_bench.data.base import MappedDataset
from xai_bench.engine.batches import BatchPlan, EvalBatch
from xai_bench.engine.benchmark import EvalBenchmark, Result
from xai_bench.engine.context import RunContext
from xai_bench.engine.jobs import Job, build_explainers, chunk_store, run_jobs
from xai_bench.methods.spec import MethodSpec
from xai_bench.metrics.aggregate import NONFINITE
from xai_bench.metrics.pointing import (
    build_pairs,
    class_accuracies,
    maps_to_points,
    orig_sizes,
    pair_hits,
)
from xai_bench.metrics.postprocess import Postprocess
from xai_bench.utils.errors import UserInputError
from xai_bench.utils.hashing import stable_hash
from xai_bench.utils.resolution import (
    POINTING_TOLERANCE,
    REFERENCE_SIDE,
    float_option,
    resolve_float,
)
from xai_bench.viz.pointing import accuracy_bars

log = logging.getLogger(__name__)

CENTER = "center"
#: the centre baseline as a job of its own (never built into an explainer)
CENTER_SPEC = MethodSpec(CENTER, CENTER, {}, {"name": CENTER, "point": "image centre"})
GT_KINDS = ("boxes", "masks")
PAIR_COLUMNS = ["index", "class", "hit", "degenerate", "u", "v", NONFINITE]

Explain = Callable[[Tensor, Tensor], Tensor]


def load_flags(path: str | Path) -> dict[str, Tensor]:
    """TorchRay's subset flag file (e.g. ``pointing_game_ebp_voc07_difficult.txt``): one row per
    image, ``<name>\\t<flag class 0>\\t...``; returns ``{name: bool [K]}``."""
    flags = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            name, *values = line.strip().split("\t")
            flags[name] = torch.tensor([bool(int(v)) for v in values])
    return flags


def image_names(ds: Dataset, indices: Sequence[int]) -> list[str]:
    """File stems of the images behind sample ``index`` values of a VOC or COCO split."""
    while isinstance(ds, Subset):  # limit subsets: sample indices refer to the inner dataset
        ds = ds.dataset
    base = ds.base if isinstance(ds, MappedDataset) else ds
    idx = [int(i) for i in indices]
    while isinstance(base, Subset):
        idx = [int(base.indices[i]) for i in idx]
        base = base.dataset
    if hasattr(base, "images"):  # torchvision VOCDetection
        return [Path(base.images[i]).stem for i in idx]
    if hasattr(base, "coco") and hasattr(base, "ids"):  # torchvision CocoDetection
        return [Path(base.coco.loadImgs(base.ids[i])[0]["file_name"]).stem for i in idx]
    raise ValueError("subset_flags needs image file names: only voc07 and coco2017 have them")


class PointingGame(EvalBenchmark):
    """``benchmark=pointing_game`` (and ``pointing_game_restricted``): pointing accuracy.

    Args:
        n_images: images of the seeded subset of ``split`` (``None``: all).
        batch_size: images per batch; also the most maps per explainer call.
        split: data split.
        restricted: POSAGG's restricted game (one map for the top-scoring class per image).
        tolerance: hit radius in original-image pixels (strict ``<``); ``auto``: TorchRay's
            15 px at 224 px model inputs, scaled to the model's input side
            (:mod:`~xai_bench.utils.resolution`; 15 for 224 px models, about 4.3 at 64 px).
        gt: ``boxes`` (union of the class's boxes) or ``masks`` (union of instance masks).
        exclude_difficult: drop VOC difficult boxes from the ground truth (TorchRay keeps them;
            either way a class with only difficult boxes is skipped).
        subset_flags: TorchRay flag file restricting the evaluated pairs (EBP "difficult" set,
            POSAGG's multi-class subset); images absent from the file are all kept, as TorchRay.
        smooth_sigma: Gaussian blur of the resized map, sigma as a fraction of
            ``max(H0, W0)`` (TorchRay: 0.02 for gradient-type methods); ``None``: no blur.
        smooth_methods: method labels that are blurred (``None``: all but the centre baseline).
        center_baseline: add TorchRay's ``center`` row (the image centre as the point).
        postprocess: steps that collapse a map to one channel before resizing (default:
            TorchRay's max over channels of ``|.|``); maps left with several channels are
            averaged over channels.
    """

    name = "pointing_game"
    headline = {"accuracy": True, "hit_rate": True}

    def __init__(
        self,
        n_images: int | None = 256,
        batch_size: int = 32,
        split: str = "test",
        restricted: bool = False,
        tolerance: float | str = "auto",
        gt: str = "boxes",
        exclude_difficult: bool = False,
        subset_flags: str | None = None,
        smooth_sigma: float | None = None,
        smooth_methods: Sequence[str] | None = None,
        center_baseline: bool = True,
        postprocess: Sequence[str | Mapping[str, Any]] = ("channel_max_abs", "abs"),
    ) -> None:
        if gt not in GT_KINDS:
            raise ValueError(f"gt must be one of {GT_KINDS}, got '{gt}'")
        if smooth_sigma is not None and float(smooth_sigma) < 0:
            raise ValueError(f"smooth_sigma must be >= 0, got {smooth_sigma}")
        n = None if n_images is None else int(n_images)
        self.plan = BatchPlan(split, n, int(batch_size), "predicted")
        self.restricted = bool(restricted)
        self.tolerance_option = float_option(tolerance, "tolerance")
        # the tolerance at 224 px inputs until check() resolves it for the model's input
        self.tolerance = resolve_float(self.tolerance_option, POINTING_TOLERANCE, REFERENCE_SIDE)
        self.gt = gt
        self.exclude_difficult = bool(exclude_difficult)
        self.subset_flags = None if subset_flags is None else str(subset_flags)
        self.smooth_sigma = None if smooth_sigma is None else float(smooth_sigma)
        self.smooth_methods = None if smooth_methods is None else list(smooth_methods)
        self.center_baseline = bool(center_baseline)
        self.steps = [s if isinstance(s, str) else dict(s) for s in postprocess]
        self.postprocess = Postprocess(self.steps)
        self.name = "pointing_game_restricted" if self.restricted else "pointing_game"  # type: ignore[misc]

    # ------------------------------------------------------------------ one batch
    def evaluate(
        self,
        explain: Explain | None,
        x: Tensor,
        target: Tensor,
        sample: Mapping[str, Any],
        num_classes: int,
        smooth: bool = False,
        keep: Tensor | None = None,
    ) -> pd.DataFrame:
        """Pair rows (``index, class, hit, degenerate, u, v``) of one batch.

        Args:
            explain: ``explain(x, target) -> [N, C, H, W]`` (an explainer); ``None``: the
                centre baseline.
            x: model inputs ``[B, C, H, W]``.
            target: the model's top-scoring class per image ``[B]`` (restricted variant only).
            sample: the collated sample dict (``box_labels``, ``boxes``/``masks``, ...).
            num_classes: number of classes of the model.
            smooth: blur the maps with ``smooth_sigma``.
            keep: bool ``[B, K]``, pairs to evaluate (subset flags); ``None``: all.
        """
        pairs = build_pairs(sample, num_classes, self.exclude_difficult, keep)
        dev = x.device
        p = len(pairs.cls)
        if p == 0:
            return pd.DataFrame(columns=PAIR_COLUMNS)
        sizes = orig_sizes(sample, x)
        image, cls = pairs.image.to(dev), pairs.cls.to(dev)
        if explain is None:
            points = sizes.flip(1).float()[image] / 2  # TorchRay: (W / 2, H / 2)
            degenerate = torch.zeros(p, dtype=torch.bool, device=dev)
        elif self.restricted:
            pts, deg = self.points(explain(x, target.to(dev)), sizes, smooth)
            points, degenerate = pts[image], deg[image]
        else:
            size = self.plan.batch_size
            out = [
                self.points(explain(x[image[s]], cls[s]), sizes[image[s]], smooth)
                for s in (slice(i, i + size) for i in range(0, p, size))
            ]
            points = torch.cat([o[0] for o in out])
            degenerate = torch.cat([o[1] for o in out])
        nonfinite = points.isnan().any(1)  # a non-finite map: neither hit nor miss
        hits = pair_hits(points.nan_to_num(0.0), pairs, sample, sizes, self.tolerance, self.gt)
        hits = hits.double().masked_fill(nonfinite, float("nan"))
        index = torch.as_tensor(sample["index"]).reshape(-1)[pairs.image]
        cpu = points.cpu()
        return pd.DataFrame(
            {
                "index": index.tolist(),
                "class": pairs.cls.tolist(),
                "hit": hits.cpu().tolist(),
                "degenerate": degenerate.long().cpu().tolist(),
                "u": cpu[:, 0].tolist(),
                "v": cpu[:, 1].tolist(),
                NONFINITE: nonfinite.long().cpu().tolist(),
            }
        )

    def points(self, attr: Tensor, sizes: Tensor, smooth: bool) -> tuple[Tensor, Tensor]:
        """Explainer output ``[N, C, h, w]`` -> points and degenerate flags (see
        :func:`~xai_bench.metrics.pointing.maps_to_points`) after ``postprocess``; maps left
        with several channels are averaged over channels."""
        m = self.postprocess(attr)
        m = m.mean(1) if m.shape[1] > 1 else m[:, 0]
        return maps_to_points(m, sizes, self.smooth_sigma if smooth else None)

    def score(
        self,
        ctx: RunContext,
        explainer: Explain | None,
        batch: EvalBatch,
        smooth: bool | None = None,
        flags: Mapping[str, Tensor] | None = None,
    ) -> pd.DataFrame:
        """Pair rows of one batch for one method (see :meth:`evaluate`); ``explainer=None`` is
        the centre baseline. ``smooth`` (default: an explainer when ``smooth_methods`` is
        ``None``) blurs the maps; ``flags`` are the loaded ``subset_flags``."""
        if smooth is None:
            smooth = explainer is not None and self.smooth_methods is None
        if flags is None and self.subset_flags is not None:
            flags = load_flags(self.subset_flags)
        k = ctx.meta.num_classes
        keep = None
        if flags is not None:
            keep = self._keep(flags, ctx.datamodule.dataset(self.plan.split), batch.sample, k)
        return self.evaluate(explainer, batch.x, batch.target, batch.sample, k, smooth, keep)

    @staticmethod
    def _keep(
        flags: Mapping[str, Tensor], ds: Dataset, sample: Mapping[str, Any], k: int
    ) -> Tensor:
        names = image_names(ds, torch.as_tensor(sample["index"]).tolist())
        keep = torch.ones(len(names), k, dtype=torch.bool)
        for i, name in enumerate(names):  # metadata lookup, one dict access per image
            if name in flags:
                if len(flags[name]) != k:
                    raise ValueError(f"subset_flags has {len(flags[name])} classes, model {k}")
                keep[i] = flags[name]
        return keep

    # ------------------------------------------------------------------ whole run
    def params(self) -> dict[str, Any]:
        """Everything that changes the numbers (the chunk store's fingerprint)."""
        return {
            "plan": vars(self.plan),
            "restricted": self.restricted,
            "tolerance": self.tolerance,
            "gt": self.gt,
            "exclude_difficult": self.exclude_difficult,
            "subset_flags": self.subset_flags and stable_hash(Path(self.subset_flags).read_text()),
            "smooth_sigma": self.smooth_sigma,
            "smooth_methods": self.smooth_methods,
            "postprocess": self.steps,
        }

    def check(self, ctx: RunContext) -> None:
        """Refuse a dataset without the ground truth (boxes, or masks with ``gt=masks``)."""
        side = min(ctx.meta.input_size[1:])
        self.tolerance = resolve_float(self.tolerance_option, POINTING_TOLERANCE, side)
        sample = ctx.datamodule.dataset(self.plan.split)[0]
        dataset = ctx.identity.get("dataset", type(ctx.datamodule).__name__)
        if "boxes" not in sample or "box_labels" not in sample:
            raise UserInputError(
                f"{self.name} needs object boxes; dataset '{dataset}' has none (the dataset "
                "configs with `has_boxes: true` have them)"
            )
        if self.gt == "masks" and "masks" not in sample:
            raise UserInputError(
                f"{self.name} with gt=masks needs instance masks; dataset '{dataset}' has boxes "
                "only (use gt=boxes)"
            )
        if self.center_baseline and CENTER in ctx.methods.labels():
            raise UserInputError(
                f"{self.name}: the label '{CENTER}' is the centre baseline's; give the method "
                "another `label` (or set center_baseline=false)"
            )

    def run(self, ctx: RunContext) -> Result:
        self.check(ctx)
        flags = None if self.subset_flags is None else load_flags(self.subset_flags)
        store = chunk_store(ctx, self.name, self.params())
        built, skipped = build_explainers(ctx)
        jobs = [Job(CENTER_SPEC, partial(self.score, ctx, None, flags=flags))]
        jobs = jobs if self.center_baseline else []
        for spec, explainer in built:
            smooth = self.smooth_methods is None or spec.label in self.smooth_methods
            jobs.append(Job(spec, partial(self.score, ctx, explainer, smooth=smooth, flags=flags)))
        pairs = run_jobs(ctx, store, jobs, self.plan, self.name)
        n_images = len(self.plan.indices(ctx))
        n_skipped = self.skipped_annotations(ctx)
        if jobs and not len(pairs):
            raise UserInputError(
                f"{self.name}: no (image, class) pairs to evaluate in {n_images} images of "
                f"'{self.plan.split}' (all classes difficult or filtered out by subset_flags? "
                f"{n_skipped} boxes/masks skipped as invalid)"
            )
        rows = self.accuracies(ctx, pairs, [job.spec for job in jobs])
        result = self.result(ctx, rows, skipped, store)
        result.summary["n_images"] = n_images
        result.summary["skipped_annotations"] = n_skipped
        table = result.table
        for key, value in self._context().items():  # also on the `applicable = 0` rows
            table[key] = value
        table["class"] = table["class"].fillna("all") if "class" in table else "all"
        return result

    def skipped_annotations(self, ctx: RunContext) -> int:
        """Ground-truth boxes or masks of the evaluated images that the dataset left out
        (inverted, outside the image or of zero area: they would be pairs that always miss);
        a warning on the console gives their number."""
        count = getattr(ctx.datamodule, "skipped_annotations", None)
        n = 0 if count is None else int(count(self.plan.split, self.plan.indices(ctx)))
        if n:
            log.warning(
                "%s: %d ground-truth boxes/masks of the %s images were skipped (inverted, "
                "outside the image or of zero area; the log names them); see "
                "skipped_annotations in the summary",
                self.name, n, self.plan.split,
            )  # fmt: skip
        return n

    def _context(self) -> dict[str, Any]:
        variant = "restricted" if self.restricted else "standard"
        return {"variant": variant, "tolerance": self.tolerance, "gt": self.gt}

    def accuracies(
        self, ctx: RunContext, pairs: pd.DataFrame, specs: Sequence[MethodSpec]
    ) -> pd.DataFrame:
        """Per method (in ``specs`` order): ``accuracy`` (mean over classes with pairs),
        ``hit_rate``, ``degenerate_rate`` (``class = all``) and ``class_accuracy`` per class."""
        k = ctx.meta.num_classes
        names = ctx.datamodule.class_names or [str(i) for i in range(k)]
        rows = []
        for spec in specs:
            df = pairs[pairs["method"] == spec.label] if len(pairs) else pairs
            if df.empty:
                continue
            hits = torch.tensor(df["hit"].to_numpy(dtype=np.float64))  # NaN: non-finite map
            classes = torch.tensor(df["class"].to_numpy(dtype=np.int64))
            _, counts, acc = class_accuracies(hits, classes, k)
            present = counts > 0
            n_bad = int(df[NONFINITE].fillna(0).sum()) if NONFINITE in df else 0
            base = {**spec.identity, **self._context(), "class": "all", "n": len(df),
                    "n_nonfinite": n_bad}  # fmt: skip
            degenerate = float(df["degenerate"].to_numpy(dtype=np.float64).mean())
            rows += [
                {**base, "metric": "accuracy", "value": float(acc[present].mean())},
                {**base, "metric": "hit_rate", "value": float(hits.double().mean())},
                {**base, "metric": "degenerate_rate", "value": degenerate},
            ]
            for c in present.nonzero().flatten().tolist():
                name = names[c] if c < len(names) else str(c)
                rows.append(
                    {**base, "class": name, "n": int(counts[c]),
                     "metric": "class_accuracy", "value": float(acc[c])}
                )  # fmt: skip
        return pd.DataFrame(rows)

    def nan_counts(self, rows: pd.DataFrame) -> dict[str, tuple[int, int, int]]:
        """Per method: ``(pairs of non-finite maps, pairs, the same)`` (a pair is NaN only when
        its map held a NaN or an infinite value)."""
        part = rows[(rows["class"] == "all") & (rows.metric == "hit_rate")]
        return {
            str(m): (int(b), int(n), int(b))
            for m, n, b in zip(part.method, part["n"], part["n_nonfinite"].fillna(0))
        }

    def summarize(self, rows: pd.DataFrame) -> dict[str, Any]:
        overall = rows[rows["class"] == "all"]
        summary: dict[str, Any] = self._context()
        summary["n_pairs"] = int(overall["n"].max())
        for metric in ("accuracy", "hit_rate"):
            part = overall[overall.metric == metric]
            summary.update({f"{metric}/{m}": float(v) for m, v in zip(part.method, part.value)})
        return summary

    def draw(self, rows: pd.DataFrame, run_dir: Path) -> list[Path]:
        path = run_dir / f"{self.name}.png"
        return [accuracy_bars(rows, path, self.tolerance, self.name, baseline=CENTER)]
