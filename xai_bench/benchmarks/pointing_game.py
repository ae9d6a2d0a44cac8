"""Pointing game (Zhang et al. 2016, EBP) as in TorchRay, and POSAGG's restricted variant.

Spec §2.5. For every (image, class present in the image) pair the method explains that class;
the map is resized to the image's original resolution (bilinear, ``align_corners=False``),
optionally Gaussian-smoothed, and its maximum is the predicted point (first maximum in
row-major order on ties). The pair is a hit when a ground-truth pixel of the class (union of
its boxes, or of its instance masks) lies at Euclidean distance ``< tolerance`` of the point.
Accuracy per class is ``hits / pairs``; the headline is the mean over the classes that have
pairs. The restricted variant (POSAGG Tables 1 and 3) computes one map per image, for the
model's top-scoring class, and scores its point against every class present.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure
from omegaconf import OmegaConf
from torch import Tensor
from torch.utils.data import Dataset, Subset

from xai_bench.benchmarks.base import Benchmark, Result
from xai_bench.benchmarks.common import (
    EvalBatch,
    batch_chunks,
    explainers,
    method_config,
    partial_store,
    subset_indices,
)
from xai_bench.data.base import MappedDataset
from xai_bench.methods.postprocess import Postprocess
from xai_bench.metrics.pointing import (
    build_pairs,
    class_accuracies,
    maps_to_points,
    orig_sizes,
    pair_hits,
)
from xai_bench.utils.configs import group_options, option_path
from xai_bench.utils.errors import UserInputError
from xai_bench.utils.hashing import stable_hash
from xai_bench.viz.figures import save_figure
from xai_bench.workspace import Workspace

CENTER = "center"
GT_KINDS = ("boxes", "masks")
PAIR_COLUMNS = ["index", "class", "hit", "degenerate", "u", "v"]

Explain = Callable[[Tensor, Tensor], Tensor]


def datasets_with_boxes() -> list[str]:
    """Dataset configs that declare ``has_boxes: true``."""
    return [
        name
        for name in group_options("dataset")
        if OmegaConf.load(option_path("dataset", name)).get("has_boxes", False)
    ]


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


class PointingGame(Benchmark):
    """``benchmark=pointing_game`` (and ``pointing_game_restricted``): pointing accuracy.

    Args:
        methods: method config names; empty means the run's own ``method``.
        n_images: images of the seeded subset of ``split`` (``None``: all).
        batch_size: images per batch; also the most maps per explainer call.
        split: data split.
        restricted: POSAGG's restricted game (one map for the top-scoring class per image).
        tolerance: hit radius in original-image pixels (strict ``<``; TorchRay: 15).
        gt: ``boxes`` (union of the class's boxes) or ``masks`` (union of instance masks).
        exclude_difficult: drop VOC difficult boxes from the ground truth (TorchRay keeps them;
            either way a class with only difficult boxes is skipped).
        subset_flags: TorchRay flag file restricting the evaluated pairs (EBP "difficult" set,
            POSAGG's multi-class subset); images absent from the file are all kept, as TorchRay.
        smooth_sigma: Gaussian blur of the resized map, sigma as a fraction of
            ``max(H0, W0)`` (TorchRay: 0.02 for gradient-type methods); ``None``: no blur.
        smooth_methods: methods that are blurred (``None``: all but the centre baseline).
        center_baseline: add TorchRay's ``center`` row (the image centre as the point).
        postprocess: steps that collapse a map to one channel before resizing (default:
            TorchRay's max over channels of ``|.|``); maps left with several channels are
            averaged over channels.
    """

    name = "pointing_game"
    higher_is_better = True

    def __init__(
        self,
        methods: Sequence[str] = (),
        n_images: int | None = 256,
        batch_size: int = 32,
        split: str = "test",
        restricted: bool = False,
        tolerance: float = 15.0,
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
        if not float(tolerance) > 0:
            raise ValueError(f"tolerance must be > 0 pixels, got {tolerance}")
        if smooth_sigma is not None and float(smooth_sigma) < 0:
            raise ValueError(f"smooth_sigma must be >= 0, got {smooth_sigma}")
        self.methods = list(methods)
        self.n_images = None if n_images is None else int(n_images)
        self.batch_size = int(batch_size)
        self.split = split
        self.restricted = bool(restricted)
        self.tolerance = float(tolerance)
        self.gt = gt
        self.exclude_difficult = bool(exclude_difficult)
        self.subset_flags = None if subset_flags is None else str(subset_flags)
        self.smooth_sigma = None if smooth_sigma is None else float(smooth_sigma)
        self.smooth_methods = None if smooth_methods is None else list(smooth_methods)
        self.center_baseline = bool(center_baseline)
        self.steps = [s if isinstance(s, str) else dict(s) for s in postprocess]
        self.postprocess = Postprocess(self.steps)
        self.name = "pointing_game_restricted" if self.restricted else "pointing_game"

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
            out = [
                self.points(explain(x[image[s]], cls[s]), sizes[image[s]], smooth)
                for s in (slice(i, i + self.batch_size) for i in range(0, p, self.batch_size))
            ]
            points = torch.cat([o[0] for o in out])
            degenerate = torch.cat([o[1] for o in out])
        hits = pair_hits(points, pairs, sample, sizes, self.tolerance, self.gt)
        index = torch.as_tensor(sample["index"]).reshape(-1)[pairs.image]
        cpu = points.cpu()
        return pd.DataFrame(
            {
                "index": index.tolist(),
                "class": pairs.cls.tolist(),
                "hit": hits.long().cpu().tolist(),
                "degenerate": degenerate.long().cpu().tolist(),
                "u": cpu[:, 0].tolist(),
                "v": cpu[:, 1].tolist(),
            }
        )

    def points(self, attr: Tensor, sizes: Tensor, smooth: bool) -> tuple[Tensor, Tensor]:
        """Explainer output ``[N, C, h, w]`` -> points and degenerate flags (see
        :func:`~xai_bench.metrics.pointing.maps_to_points`) after ``postprocess``; maps left
        with several channels are averaged over channels."""
        m = self.postprocess(attr)
        m = m.mean(1) if m.shape[1] > 1 else m[:, 0]
        return maps_to_points(m, sizes, self.smooth_sigma if smooth else None)

    # ------------------------------------------------------------------ whole run
    def params(self) -> dict[str, Any]:
        """Everything that changes the numbers (the partial store's fingerprint)."""
        return {
            "n_images": self.n_images,
            "batch_size": self.batch_size,
            "split": self.split,
            "restricted": self.restricted,
            "tolerance": self.tolerance,
            "gt": self.gt,
            "exclude_difficult": self.exclude_difficult,
            "subset_flags": self.subset_flags and stable_hash(Path(self.subset_flags).read_text()),
            "smooth_sigma": self.smooth_sigma,
            "smooth_methods": self.smooth_methods,
            "postprocess": self.steps,
        }

    def check_dataset(self, ws: Workspace) -> None:
        """Raise a ValueError naming the datasets with boxes if this one has no ground truth."""
        sample = ws.datamodule.dataset(self.split)[0]
        dataset = ws.identity["dataset"]
        if "boxes" not in sample or "box_labels" not in sample:
            raise UserInputError(
                f"{self.name} needs object boxes; dataset '{dataset}' has none. Datasets with "
                f"boxes: {', '.join(datasets_with_boxes())}"
            )
        if self.gt == "masks" and "masks" not in sample:
            raise UserInputError(
                f"{self.name} with gt=masks needs instance masks; dataset '{dataset}' has boxes "
                "only (use gt=boxes)"
            )

    def run(self, ws: Workspace) -> Result:
        self.check_dataset(ws)
        flags = None if self.subset_flags is None else load_flags(self.subset_flags)
        store = partial_store(ws, self.params())
        methods: list[tuple[str, Explain | None, str]] = []
        if self.center_baseline:
            methods.append((CENTER, None, ""))
        skipped: dict[str, str] = {}
        for name, explainer, note in explainers(ws, self.methods):
            if explainer is None:
                skipped[name] = note
            else:
                key = f"{name}-{stable_hash(method_config(ws, name), 8)}"
                methods.append((key, explainer, name))
        jobs = [(key, partial(self._batch_pairs, ws, e, name, flags)) for key, e, name in methods]
        parts = batch_chunks(ws, store, jobs, self.split, self.n_images, self.batch_size)
        pairs = {
            (CENTER if e is None else name): _concat([rows for k, _, rows in parts if k == key])
            for key, e, name in methods
        }
        n_total = len(ws.datamodule.dataset(self.split))  # type: ignore[arg-type]
        n_images = len(subset_indices(n_total, self.n_images, ws.seed))
        n_pairs = {name: len(df) for name, df in pairs.items()}
        if not any(n_pairs.values()):
            raise ValueError(
                f"{self.name}: no (image, class) pairs to evaluate in {n_images} images of "
                f"'{self.split}' (all classes difficult or filtered out by subset_flags?)"
            )
        table = self._table(ws, pairs, skipped)
        summary: dict[str, Any] = {
            "variant": "restricted" if self.restricted else "standard",
            "tolerance": self.tolerance,
            "gt": self.gt,
            "n_images": n_images,
            "n_pairs": max(n_pairs.values()),
            "skipped": skipped,
            "chunks_loaded": len(store.loaded),
            "chunks_computed": len(store.computed),
        }
        for metric in ("accuracy", "hit_rate"):
            rows = table[(table.metric == metric)]
            summary.update({f"{metric}/{m}": float(v) for m, v in zip(rows.method, rows.value)})
        path = self._figure(table, ws.run_dir / f"{self.name}.png")
        return Result(table, summary, [str(path)])

    def _batch_pairs(
        self,
        ws: Workspace,
        explain: Explain | None,
        name: str,
        flags: dict[str, Tensor] | None,
        batch: EvalBatch,
    ) -> pd.DataFrame:
        """Pair rows of one batch for one method (see :meth:`evaluate`); ``smooth_methods``
        selects the blurred methods by name (never the centre baseline)."""
        k = ws.meta.num_classes
        ds = ws.datamodule.dataset(self.split)
        keep = None if flags is None else self._keep(flags, ds, batch.sample, k)
        listed = self.smooth_methods is None or name in self.smooth_methods
        smooth = explain is not None and listed
        return self.evaluate(explain, batch.x, batch.target, batch.sample, k, smooth, keep)

    @staticmethod
    def _keep(flags: dict[str, Tensor], ds: Dataset, sample: Mapping[str, Any], k: int) -> Tensor:
        names = image_names(ds, torch.as_tensor(sample["index"]).tolist())
        keep = torch.ones(len(names), k, dtype=torch.bool)
        for i, name in enumerate(names):  # metadata lookup, one dict access per image
            if name in flags:
                if len(flags[name]) != k:
                    raise ValueError(f"subset_flags has {len(flags[name])} classes, model {k}")
                keep[i] = flags[name]
        return keep

    def _table(
        self, ws: Workspace, pairs: dict[str, pd.DataFrame], skipped: dict[str, str]
    ) -> pd.DataFrame:
        identity = {k: v for k, v in ws.identity.items() if k != "method"}
        context = {
            **identity,
            "benchmark": self.name,
            "variant": "restricted" if self.restricted else "standard",
            "tolerance": self.tolerance,
            "gt": self.gt,
        }
        k = ws.meta.num_classes
        names = ws.datamodule.class_names or [str(i) for i in range(k)]
        rows = []
        for method, df in pairs.items():
            if df.empty:
                continue
            hits = torch.tensor(df["hit"].to_numpy(), dtype=torch.long)
            classes = torch.tensor(df["class"].to_numpy(), dtype=torch.long)
            _, counts, acc = class_accuracies(hits, classes, k)
            present = counts > 0
            base = {**context, "method": method, "class": "all", "n": len(df)}
            rows += [
                {**base, "metric": "accuracy", "value": float(acc[present].mean())},
                {**base, "metric": "hit_rate", "value": float(hits.double().mean())},
                {**base, "metric": "degenerate_rate", "value": float(df["degenerate"].mean())},
            ]
            for c in present.nonzero().flatten().tolist():
                rows.append(
                    {
                        **base,
                        "class": names[c] if c < len(names) else str(c),
                        "n": int(counts[c]),
                        "metric": "class_accuracy",
                        "value": float(acc[c]),
                    }
                )
        for method, note in skipped.items():
            rows.append(
                {
                    **context,
                    "method": method,
                    "class": "all",
                    "metric": "applicable",
                    "value": 0.0,
                    "note": note,
                }
            )
        return pd.DataFrame(rows)

    def _figure(self, table: pd.DataFrame, path: Path) -> Path:
        acc = table[table.metric == "accuracy"]
        fig = Figure(figsize=(6, 0.3 * len(acc) + 1.2))
        ax = fig.subplots()
        methods = acc[acc.method != CENTER]
        ax.barh(methods.method, methods.value)
        center = acc[acc.method == CENTER]
        if len(center):
            ax.axvline(float(center.value.iloc[0]), color="k", ls="--", lw=0.8, label="center")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"mean class accuracy (tolerance {self.tolerance:g} px)")
        ax.set_title(self.name, fontsize=9)
        ax.invert_yaxis()
        return save_figure(fig, path)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    full = [f for f in frames if not f.empty]
    return pd.concat(full, ignore_index=True) if full else pd.DataFrame(columns=PAIR_COLUMNS)
