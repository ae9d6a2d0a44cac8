"""ROAR, RemOve And Retrain (Hooker et al. 2019; OPPSD §4.3; PRUNE §4.4).

For every method, the model's maps of the train, val and test images are computed once and
cached on disk; for each fraction ``k`` the ``k`` most salient pixels (or values) of every image
are replaced by a fill, a new network is trained on the modified train split (from scratch,
fine-tuned from the model, or from the published ImageNet weights with a new head as OPPSD's
ViT-B/16) and its accuracy on the modified test split is reported. A faithful
method removes what the model needs, so accuracy falls faster than with random removal: lower
is better. Every (method, fraction, seed) retraining is a resumable unit with Lightning
checkpoints, so an interrupted sweep loses at most one epoch.

A method whose cached maps hold a NaN or an infinite value for any image (of any split) has no
defined removal order for that image: its retrains at fractions > 0 are not run, their rows
are NaN (flagged ``map_nonfinite = 1``), so are its curve points and ``roar_auc``, and the
summary counts the images per split under ``nonfinite_maps``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from xai_bench.data.base import SPLITS, ImageDataModule, collate_samples
from xai_bench.data.roar import (
    RemovedDataset,
    RoarDataModule,
    SparseMaps,
    roar_augmentation,
    subset_rows,
)
from xai_bench.engine.batches import check_count, check_target
from xai_bench.engine.benchmark import Benchmark, Result, report_nan
from xai_bench.engine.context import RunContext
from xai_bench.engine.fingerprint import fingerprint
from xai_bench.engine.jobs import chunk_store, tidy_table
from xai_bench.methods.base import Explainer, MethodNotApplicableError
from xai_bench.methods.spec import MethodSpec
from xai_bench.metrics.aggregate import NONFINITE, nan_counts
from xai_bench.metrics.perturbation import check_choice, saliency_2d
from xai_bench.metrics.postprocess import Postprocess
from xai_bench.metrics.removal import RANKINGS, ROAR_FILLS
from xai_bench.results.attributions import AttributionCache
from xai_bench.results.partial import PartialStore, safe_key
from xai_bench.training.fit import train_classifier
from xai_bench.training.lit import accuracy
from xai_bench.training.recipe import Recipe
from xai_bench.utils.hashing import state_hash
from xai_bench.utils.io import atomic_write_json
from xai_bench.viz.roar import roar_curves

INITS = ("scratch", "finetune", "pretrained")
RESULT_METRICS = (
    "test_acc", "val_acc", "train_seconds", "epochs", "resumed_from", "resumed_from_step",
)  # fmt: skip
CLEAN = "clean"  # the key prefix of the shared fraction-0 retrains


class ROAR(Benchmark):
    """``benchmark=roar``: test accuracy of networks retrained without the most salient pixels.

    The methods are the run's (``benchmark.methods``; ``random`` is the baseline and should be
    among them). Maps and retrains are keyed per method spec, so two variants of one method
    (two labels) never share them; fraction ``0`` is one clean retrain shared by all methods.

    Args:
        fractions: shares of pixels (or values) removed; ``0`` retrains on unmodified data.
        seeds: retraining seeds (independent retrains per fraction; Hooker et al. use 5).
        ranking: ``pixel`` (maps collapsed over channels by ``postprocess``) or ``value``
            (every pixel-channel value ranked; Hooker et al. with ``postprocess=[square]``).
        postprocess: named steps from raw maps to ranked scores (OPPSD: channel mean, abs).
        fill: ``dataset_mean`` (RoarTorch), ``image_mean`` (OPPSD) or ``imagenet_mean`` (Hooker).
        target: class explained: ``predicted`` (Hooker, RoarTorch) or ``label`` (OPPSD).
        init: how each retrain starts: ``scratch`` (a new network), ``finetune`` (the
            evaluated model's weights) or ``pretrained`` (the model's published ImageNet weights
            with a new classifier head seeded by the retrain seed: OPPSD's ViT-B/16 ``roar.py``).
        recipe: the retraining recipe, a mapping of :class:`~xai_bench.training.recipe.Recipe`
            fields (missing ones keep ``Recipe()``'s defaults); its ``augment`` is a random crop
            and flip applied after removal (Hooker; off for OPPSD/PRUNE).
        train_limit: retrain on a seeded subset of this many train images (``None``: all).
        attribution_batch_size: images per attribution shard.
        dtype: storage of cached maps, ``float32`` or ``float16``.
        progress: show Lightning's progress bar while retraining.
    """

    name = "roar"
    headline = {"test_acc": False, "roar_auc": False}

    def __init__(
        self,
        fractions: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
        seeds: Sequence[int] = (0,),
        ranking: str = "pixel",
        postprocess: Sequence[str | Mapping[str, Any]] = ("channel_mean", "abs"),
        fill: str = "dataset_mean",
        target: str = "predicted",
        init: str = "scratch",
        recipe: Mapping[str, Any] | Recipe | None = None,
        train_limit: int | None = None,
        attribution_batch_size: int = 64,
        dtype: str = "float32",
        progress: bool = False,
    ) -> None:
        self.fractions = [float(f) for f in fractions]
        if not self.fractions or any(not 0.0 <= f < 1.0 for f in self.fractions):
            raise ValueError(f"fractions must lie in [0, 1), got {self.fractions}")
        self.seeds = [int(s) for s in seeds]
        if not self.seeds:
            raise ValueError("seeds must list at least one retraining seed, got []")
        self.ranking = check_choice(ranking, RANKINGS, "ranking")
        self.post_steps = [_plain(s) for s in postprocess]
        self.postprocess = Postprocess(self.post_steps)
        self.fill = check_choice(fill, ROAR_FILLS, "fill")
        self.target = check_target(target)
        self.init = check_choice(init, INITS, "init")
        self.recipe = Recipe.from_mapping(recipe, name="benchmark.recipe").refuse_init(
            "benchmark.recipe",
            "ROAR's retrains start as benchmark.init says (scratch|finetune|pretrained)",
        )
        self.train_limit = None if train_limit is None else int(train_limit)
        check_count(self.train_limit, "train_limit", nullable=True)
        self.attribution_batch_size = check_count(
            int(attribution_batch_size), "attribution_batch_size"
        )
        self.dtype = dtype
        self.progress = bool(progress)

    def fingerprint_recipe(self) -> dict[str, Any]:
        """What the retrains depend on besides data and maps, as one flat dict (part of the
        partial results' fingerprint): the recipe's fields, ``train_limit`` and ``init``."""
        return {**self.recipe.key_dict(), "train_limit": self.train_limit, "init": self.init}

    def params(self) -> dict[str, Any]:
        """Everything that changes the retrains' numbers (keys the resumable units)."""
        return {"recipe": self.fingerprint_recipe(), "fill": self.fill, "target": self.target,
                "ranking": self.ranking, "postprocess": self.post_steps}  # fmt: skip

    # ------------------------------------------------------------------ attribution caches
    def cache_key(self, ctx: RunContext, weights: str, spec: MethodSpec, split: str) -> str:
        """What the cached maps depend on: model and data (``ctx.fingerprint``), the weights'
        hash, the split, the method's resolved config, the target and how maps are ranked."""
        return fingerprint(
            ctx, length=16, weights=weights, split=split, method=spec.hash,
            target=self.target, ranking=self.ranking, postprocess=self.post_steps,
        )  # fmt: skip

    def maps(self, ctx: RunContext, explainer: Explainer, images: Any) -> torch.Tensor:
        """Scores to rank for a list of samples: ``[B, H, W]`` or ``[B, C, H, W]``."""
        sample = collate_samples(images)
        x = sample["image"].to(ctx.device)
        if self.target == "label" and not ctx.meta.multilabel:
            t = sample["label"].to(ctx.device)
        else:
            with torch.no_grad():
                t = ctx.model(x).argmax(1)
        attr = explainer(x, t)
        if attr.shape[-2:] != x.shape[-2:]:
            raise ValueError(
                f"maps of shape {tuple(attr.shape)} do not match inputs {tuple(x.shape)}; "
                "add an `upsample` postprocess step"
            )
        if self.ranking == "pixel":
            return saliency_2d(attr, self.postprocess)
        return torch.nan_to_num(self.postprocess(attr.float()), nan=-torch.inf)

    def saliency(
        self, ctx: RunContext, weights: str, spec: MethodSpec, explainer: Explainer
    ) -> dict[str, np.ndarray]:
        """Cached maps of every split for one method spec (computed where missing)."""
        if ctx.attribution_dir is None:
            raise ValueError("ROAR needs an attribution cache folder (ctx.attribution_dir)")
        dm = ctx.datamodule
        out: dict[str, Any] = {}
        for split in SPLITS:
            ds = dm.dataset(split)
            n = len(ds)  # type: ignore[arg-type]
            rows = self.train_rows(n) if split == "train" else None
            key = {"key": self.cache_key(ctx, weights, spec, split), "split": split,
                   "method_config": spec.config_name, "method_hash": spec.hash}  # fmt: skip
            if rows is not None:  # only the images the retrains see (``train_limit``)
                key["rows"] = {"train_limit": self.train_limit, "seeds": self.seeds}
            cache = AttributionCache(ctx.attribution_dir, key, self.dtype, force=ctx.force)
            items = list(range(n)) if rows is None else rows

            def compute(idx: list[int], ds: Any = ds, items: list[int] = items) -> torch.Tensor:
                return self.maps(ctx, explainer, [ds[items[i]] for i in idx])

            built = cache.build(len(items), self.attribution_batch_size, compute,
                                ctx.trainer_kwargs)  # fmt: skip
            out[split] = built if rows is None else SparseMaps(built, rows, n)
        return out

    def train_rows(self, n: int) -> list[int] | None:
        """The train images some retrain sees under ``train_limit`` (the union of
        :class:`~xai_bench.data.roar.RoarDataModule`'s seeded subsets over the retrain
        seeds), sorted; ``None`` when every image is used."""
        if self.train_limit is None or self.train_limit >= n:
            return None
        return sorted(set().union(*(subset_rows(n, self.train_limit, s) for s in self.seeds)))

    # ------------------------------------------------------------------ retraining
    def retrain(
        self,
        ctx: RunContext,
        maps: dict[str, np.ndarray] | None,
        fraction: float,
        seed: int,
        out_dir: Path,
    ) -> pd.DataFrame:
        """Train on the modified train split into ``out_dir`` (resuming), test on modified test."""
        r, dm = self.recipe, ctx.datamodule
        augment = roar_augmentation(dm.image_size) if r.augment else None
        datasets = {
            split: RemovedDataset(
                dm.dataset(split),
                maps[split] if maps is not None else _no_maps(dm, split),
                fraction,
                self.fill,
                dm.mean,
                dm.std,
                seed=ctx.seed,
                augment=augment if split == "train" else None,
            )
            for split in SPLITS
        }
        data = RoarDataModule(datasets, r.batch_size, ctx.num_workers, seed, self.train_limit)
        if self.init == "pretrained":
            net = ctx.pretrained_net(seed)
        else:
            net = ctx.fresh_net(seed)
        if self.init == "finetune":
            net.load_state_dict({k: v.detach().cpu() for k, v in ctx.model.state_dict().items()})
        metrics = train_classifier(
            net, data, out_dir, ctx.trainer_kwargs, r, bool(ctx.meta.multilabel), seed,
            self.progress, ctx.checkpoint_every_n_steps, make_logger=ctx.make_logger,
        )  # fmt: skip
        return pd.DataFrame(
            [{"metric": m, "value": float(metrics.get(m, 0))} for m in RESULT_METRICS]
        ).assign(fraction=fraction, retrain_seed=seed)

    def unit_key(self, spec: MethodSpec, fraction: float, seed: int) -> str:
        """The resumable unit of one retrain: per method spec (label and hash) and fraction;
        fraction ``0`` removes nothing, so it is one clean retrain shared by every method."""
        if fraction == 0:
            return f"{CLEAN}/seed={seed}"
        return f"{spec.key}/fraction={fraction:g}/seed={seed}"

    # ------------------------------------------------------------------ run
    def run(self, ctx: RunContext) -> Result:
        if self.init == "pretrained":  # missing published weights fail before any map or retrain
            ctx.pretrained_net(self.seeds[0])
        store = chunk_store(ctx, self.name, self.params())
        base_acc = clean_accuracy(ctx, ctx.datamodule)
        weights = state_hash(ctx.model)
        parts, skipped, nonfinite = [], {}, {}
        for spec in ctx.methods:
            try:
                explainer = ctx.explainer(spec)
            except MethodNotApplicableError as err:
                skipped[spec.label] = str(err)
                continue
            maps = None
            if any(f > 0 for f in self.fractions):
                maps = self.saliency(ctx, weights, spec, explainer)
                bad = nonfinite_images(maps)
                if any(bad.values()):
                    nonfinite[spec.label] = bad
            del explainer
            for fraction in self.fractions:
                for seed in self.seeds:
                    if fraction > 0 and spec.label in nonfinite:  # no defined removal order
                        parts.append(undefined_rows(fraction, seed).assign(**spec.identity))
                        continue
                    key = self.unit_key(spec, fraction, seed)
                    out_dir = store.root / "retrain" / safe_key(key)
                    job = partial(self.retrain, ctx, maps, fraction, seed, out_dir)
                    parts.append(store.cached(key, job).assign(**spec.identity))
        rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        rows = pd.concat([rows, auc_rows(rows)], ignore_index=True)
        if nonfinite:
            bad = rows.method.isin(list(nonfinite)) & rows.value.isna()
            rows[NONFINITE] = bad.astype(int)
        table = tidy_table(ctx, self.name, rows, skipped)
        summary = self.summary(table, base_acc, skipped, store)
        summary["nonfinite"] = report_nan(self.name, nan_counts(rows), skipped)
        summary["nonfinite_maps"] = nonfinite
        figures = []
        if len(summary["curves"]):
            path = ctx.run_dir / f"{self.name}.png"
            figures.append(str(roar_curves(table, path, base_acc, ctx.identity)))
        atomic_write_json(ctx.run_dir / "roar_curves.json", summary["curves"])
        return Result(table, summary, figures)

    def summary(
        self,
        table: pd.DataFrame,
        base_acc: float,
        skipped: Mapping[str, str],
        store: PartialStore,
    ) -> dict[str, Any]:
        acc = table[table.metric == "test_acc"]
        curves = {}
        for method, rows in acc.groupby("method", sort=False):
            means = rows.groupby("fraction")["value"].mean()
            curves[str(method)] = {f"{f:g}": float(v) for f, v in means.items()}
        auc = table[table.metric == "roar_auc"].set_index("method")["value"]
        return {
            "base_test_acc": base_acc,
            "curves": curves,
            "roar_auc": {str(k): float(v) for k, v in auc.items()},
            "skipped": dict(skipped),
            "retrained": len(store.computed),
            "reused": len(store.loaded),
            "headline": dict(self.headline),
        }


def auc_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One ``roar_auc`` row per method (mean test accuracy over the fractions), with the
    method's identity columns."""
    if rows.empty:
        return pd.DataFrame()
    ids = ["method", "method_config", "method_hash"]
    acc = rows[rows.metric == "test_acc"].groupby([*ids, "fraction"], sort=False)["value"]
    curve = acc.mean().reset_index()
    out = [
        {**dict(zip(ids, key, strict=True)), "metric": "roar_auc", "value": _auc(group)}
        for key, group in curve.groupby(ids, sort=False)
    ]
    return pd.DataFrame(out)


def _auc(rows: pd.DataFrame) -> float:
    """Mean height of the accuracy-vs-fraction curve (trapezoid; one point: its value)."""
    rows = rows.sort_values("fraction")
    x, y = rows["fraction"].to_numpy(), rows["value"].to_numpy()
    if len(x) < 2:
        return float(y.mean())
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def nonfinite_images(maps: Mapping[str, Any], block: int = 256) -> dict[str, int]:
    """Per split, the images whose cached map holds a non-finite value (read ``block`` maps
    at a time from the memory maps; a NaN of a raw map is cached as ``-inf``)."""
    out = {}
    for split, m in maps.items():
        m = m.values if isinstance(m, SparseMaps) else m
        n = 0
        for lo in range(0, len(m), block):
            part = np.asarray(m[lo : lo + block]).reshape(min(block, len(m) - lo), -1)
            n += int((~np.isfinite(part)).any(1).sum())
        out[split] = n
    return out


def undefined_rows(fraction: float, seed: int) -> pd.DataFrame:
    """The NaN rows of a retrain that is not run (a method with non-finite maps)."""
    rows = [{"metric": m, "value": np.nan} for m in RESULT_METRICS]
    return pd.DataFrame(rows).assign(fraction=fraction, retrain_seed=seed)


def _no_maps(dm: ImageDataModule, split: str) -> np.ndarray:
    """Placeholder maps for fraction 0 (nothing is removed; only the length is read)."""
    n = len(dm.dataset(split))  # type: ignore[arg-type]
    return np.zeros((n, 1, 1), dtype=np.float32)


def _plain(value: Any) -> Any:
    """A postprocess step as plain data (config nodes become dicts and lists)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_plain(v) for v in value]
    return value


@torch.no_grad()
def clean_accuracy(ctx: RunContext, dm: ImageDataModule, batch_size: int = 256) -> float:
    """The evaluated model's accuracy on the unmodified test split (the curves' reference)."""
    hits, n = 0.0, 0
    for batch in dm.dataloader("test", batch_size=batch_size):
        x = batch["image"].to(ctx.device)
        acc = accuracy(ctx.model(x), batch["label"].to(ctx.device), bool(ctx.meta.multilabel))
        hits += float(acc) * x.shape[0]
        n += x.shape[0]
    return hits / max(n, 1)
