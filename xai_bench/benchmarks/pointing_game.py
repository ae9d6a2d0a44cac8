"""Pointing game (Zhang et al. 2016, EBP) as in TorchRay, and POSAGG's restricted variant.

Spec §2.5. For every (image, class present in the image) pair the method explains that class;
the map is resized to the image's original resolution (bilinear, ``align_corners=False``),
optionally Gaussian-smoothed, and its maximum is the predicted point (first maximum in
row-major order on ties). The pair is a hit when a ground-truth pixel of the class (union of
its boxes, or of its instance masks) lies at Euclidean distance ``< tolerance`` of the point.
Accuracy per class is ``hits / pairs`` (TorchRay's ``hits / (hits + misses)``); the headline
is the mean over the classes (:func:`~xai_bench.metrics.pointing.mean_class_accuracy`). The
restricted variant (POSAGG Tables 1 and 3) computes one map per image, for the model's
top-scoring class, and scores its point against every class present.

With a subset flag file (TorchRay's EBP "difficult" set) one run reports both subsets, as
TorchRay's ``attribution_benchmark.py`` does: the rows of ``subset = all`` (every pair) and of
``subset = difficult`` (the flagged pairs), from the same maps.

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

import pandas as pd
import torch
from torch import Tensor

from xai_bench.benchmarks.pointing_tables import (
    ALL,
    IN_SUBSET,
    accuracy_table,
    nonfinite_pairs,
    subset_summary,
)
from xai_bench.data.pointing_flags import image_names, load_flags, subset_mask
from xai_bench.engine.batches import BatchPlan, EvalBatch
from xai_bench.engine.benchmark import EvalBenchmark, Result
from xai_bench.engine.context import RunContext
from xai_bench.engine.jobs import Job, build_explainers, chunk_store, run_jobs
from xai_bench.methods.spec import MethodSpec
from xai_bench.metrics.aggregate import NONFINITE
from xai_bench.metrics.pointing import (
    CLASS_MEANS,
    build_pairs,
    map_points,
    orig_sizes,
    score_pairs,
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
        subset_flags: TorchRay flag file of a subset of the pairs (EBP "difficult" set, POSAGG's
            multi-class subset; format: :mod:`~xai_bench.data.pointing_flags`): every pair is
            scored and the rows are reported for ``subset = all`` and ``subset =
            <subset_name>`` (the flagged pairs; an image absent from the file keeps all its
            pairs, as TorchRay).
        subset_name: the ``subset`` label of the flagged pairs' rows.
        class_mean: classes averaged in ``accuracy``: ``present`` (those with pairs) or
            ``all`` (TorchRay: a class without pairs counts 0); they agree on full datasets.
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
        subset_name: str = "difficult",
        class_mean: str = "present",
        smooth_sigma: float | None = None,
        smooth_methods: Sequence[str] | None = None,
        center_baseline: bool = True,
        postprocess: Sequence[str | Mapping[str, Any]] = ("channel_max_abs", "abs"),
    ) -> None:
        if gt not in GT_KINDS:
            raise ValueError(f"gt must be one of {GT_KINDS}, got '{gt}'")
        if smooth_sigma is not None and float(smooth_sigma) < 0:
            raise ValueError(f"smooth_sigma must be >= 0, got {smooth_sigma}")
        if class_mean not in CLASS_MEANS:
            raise UserInputError(
                f"benchmark.class_mean must be one of {', '.join(CLASS_MEANS)}, got {class_mean!r}"
            )
        if not str(subset_name) or str(subset_name) == ALL:
            raise UserInputError(
                f"benchmark.subset_name must be a non-empty label other than '{ALL}', got "
                f"{subset_name!r}"
            )
        n = None if n_images is None else int(n_images)
        self.plan = BatchPlan(split, n, int(batch_size), "predicted")
        self.restricted = bool(restricted)
        self.tolerance_option = float_option(tolerance, "tolerance")
        # the tolerance at 224 px inputs until check() resolves it for the model's input
        self.tolerance = resolve_float(self.tolerance_option, POINTING_TOLERANCE, REFERENCE_SIDE)
        self.gt = gt
        self.exclude_difficult = bool(exclude_difficult)
        self.subset_flags = None if subset_flags is None else str(subset_flags)
        # read (and checked) once, here, so that a bad file fails before any computation
        self.flags = None if self.subset_flags is None else load_flags(self.subset_flags)
        self.subset_name = str(subset_name)
        self.class_mean = str(class_mean)
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
            keep: bool ``[B, K]``, the pairs of the flagged subset (subset flags): every pair
                is scored, and this adds the column ``in_subset``; ``None``: no column.
        """
        pairs = build_pairs(sample, num_classes, self.exclude_difficult)
        dev = x.device
        p = len(pairs.cls)
        if p == 0:
            return pd.DataFrame(columns=PAIR_COLUMNS + ([] if keep is None else [IN_SUBSET]))
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
        hits = score_pairs(points, pairs, sample, sizes, self.tolerance, self.gt)
        index = torch.as_tensor(sample["index"]).reshape(-1)[pairs.image]
        cpu = points.cpu()
        out = pd.DataFrame(
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
        if keep is not None:
            out[IN_SUBSET] = keep[pairs.image, pairs.cls].long().tolist()
        return out

    def points(self, attr: Tensor, sizes: Tensor, smooth: bool) -> tuple[Tensor, Tensor]:
        """Explainer output ``[N, C, h, w]`` -> points and degenerate flags
        (:func:`~xai_bench.metrics.pointing.map_points` after ``postprocess``)."""
        return map_points(attr, sizes, self.postprocess, self.smooth_sigma if smooth else None)

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
        ``None``) blurs the maps; ``flags`` (default: the loaded ``subset_flags``) mark the
        pairs of the flagged subset."""
        if smooth is None:
            smooth = explainer is not None and self.smooth_methods is None
        if flags is None:
            flags = self.flags
        k = ctx.meta.num_classes
        keep = None
        if flags is not None:
            index = torch.as_tensor(batch.sample["index"]).tolist()
            keep = subset_mask(flags, ctx.datamodule.dataset(self.plan.split), index, k)
        return self.evaluate(explainer, batch.x, batch.target, batch.sample, k, smooth, keep)

    # ------------------------------------------------------------------ whole run
    def params(self) -> dict[str, Any]:
        """Everything that changes the numbers (the chunk store's fingerprint)."""
        return {
            "plan": vars(self.plan),
            "restricted": self.restricted,
            "tolerance": self.tolerance,
            "gt": self.gt,
            "exclude_difficult": self.exclude_difficult,
            # chunks hold every pair with its `in_subset` flag (no longer only the flagged ones)
            "subset_flags": self.subset_flags
            and {"sha": stable_hash(Path(self.subset_flags).read_text()), "rows": "all+flag"},
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
        if self.flags is not None:
            width = len(next(iter(self.flags.values())))
            if width != ctx.meta.num_classes:
                raise UserInputError(
                    f"subset_flags file {self.subset_flags} has {width} flags per line but "
                    f"dataset '{dataset}' has {ctx.meta.num_classes} classes: use the flag file "
                    "of this dataset (VOC07: 20 flags, COCO: 80)"
                )
            image_names(ctx.datamodule.dataset(self.plan.split), [0])  # VOC or COCO file names
        if self.center_baseline and CENTER in ctx.methods.labels():
            raise UserInputError(
                f"{self.name}: the label '{CENTER}' is the centre baseline's; give the method "
                "another `label` (or set center_baseline=false)"
            )

    def run(self, ctx: RunContext) -> Result:
        self.check(ctx)
        flags = self.flags
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
                f"'{self.plan.split}' (all classes difficult? {n_skipped} boxes/masks skipped "
                "as invalid)"
            )
        rows = self.accuracies(ctx, pairs, [job.spec for job in jobs])
        result = self.result(ctx, rows, skipped, store)
        result.summary["n_images"] = n_images
        result.summary["skipped_annotations"] = n_skipped
        table = result.table
        for key, value in self._context().items():  # also on the `applicable = 0` rows
            table[key] = value
        table["class"] = table["class"].fillna("all") if "class" in table else "all"
        table["subset"] = table["subset"].fillna(ALL) if "subset" in table else ALL
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
        return {
            "variant": variant,
            "tolerance": self.tolerance,
            "gt": self.gt,
            "class_mean": self.class_mean,
        }

    def accuracies(
        self, ctx: RunContext, pairs: pd.DataFrame, specs: Sequence[MethodSpec]
    ) -> pd.DataFrame:
        """Per method (in ``specs`` order) and subset (``all``, then the flagged pairs of
        ``subset_flags`` as ``subset_name``): see :func:`~xai_bench.benchmarks.
        pointing_tables.accuracy_table`."""
        if (
            self.flags is not None
            and len(pairs)
            and not (IN_SUBSET in pairs and pairs[IN_SUBSET].astype(bool).any())
        ):
            log.warning(
                "%s: no evaluated (image, class) pair is flagged in %s: no '%s' rows",
                self.name, self.subset_flags, self.subset_name,
            )  # fmt: skip
        k = ctx.meta.num_classes
        names = ctx.datamodule.class_names or [str(i) for i in range(k)]
        subset = self.subset_name if self.flags is not None else None
        return accuracy_table(pairs, specs, subset, k, names, self.class_mean, self._context())

    def nan_counts(self, rows: pd.DataFrame) -> dict[str, tuple[int, int, int]]:
        """Per method: pairs of non-finite maps over all pairs (:func:`~xai_bench.benchmarks.
        pointing_tables.nonfinite_pairs`)."""
        return nonfinite_pairs(rows)

    def summarize(self, rows: pd.DataFrame) -> dict[str, Any]:
        """``n_pairs``, ``accuracy/<method>`` and ``hit_rate/<method>`` over all pairs, and the
        same prefixed ``<subset_name>/`` (e.g. ``difficult/accuracy/gradcam``) for the
        flagged subset."""
        return {**self._context(), **subset_summary(rows)}

    def draw(self, rows: pd.DataFrame, run_dir: Path) -> list[Path]:
        """One bar chart of mean class accuracy per subset."""
        subsets = rows["subset"] if "subset" in rows else pd.Series(ALL, rows.index)
        paths = []
        for subset in dict.fromkeys(subsets):
            suffix = "" if subset == ALL else f"_{subset}"
            title = self.name if subset == ALL else f"{self.name} ({subset})"
            path = run_dir / f"{self.name}{suffix}.png"
            part = rows[subsets == subset]
            paths.append(accuracy_bars(part, path, self.tolerance, title, baseline=CENTER))
        return paths
