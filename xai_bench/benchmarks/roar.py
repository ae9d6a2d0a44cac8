"""ROAR, RemOve And Retrain (Hooker et al. 2019; OPPSD §4.3; PRUNE §4.4; spec §2.3).

For every method, the model's maps of the train, val and test images are computed once and
cached on disk; for each fraction ``k`` the ``k`` most salient pixels (or values) of every image
are replaced by a fill, a new network is trained on the modified train split (from scratch or
fine-tuned from the model) and its accuracy on the modified test split is reported. A faithful
method removes what the model needs, so accuracy falls faster than with random removal: lower
is better. Every (method, fraction, seed) retraining is a resumable unit with Lightning
checkpoints, so an interrupted sweep loses at most one epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from xai_bench.benchmarks.base import Benchmark, Result
from xai_bench.benchmarks.common import check_target, method_config, method_names, partial_store
from xai_bench.data.base import SPLITS, ImageDataModule, collate_samples
from xai_bench.data.roar import RemovedDataset, RoarDataModule, roar_augmentation
from xai_bench.methods.base import Explainer, MethodNotApplicableError
from xai_bench.methods.postprocess import Postprocess
from xai_bench.metrics.perturbation import check_choice, saliency_2d
from xai_bench.metrics.removal import RANKINGS, ROAR_FILLS
from xai_bench.models.recipe import Recipe
from xai_bench.results.attributions import AttributionCache
from xai_bench.results.partial import safe_key
from xai_bench.training import train_classifier
from xai_bench.utils.hashing import stable_hash, state_hash
from xai_bench.utils.io import atomic_write_json
from xai_bench.viz.roar import roar_curves
from xai_bench.workspace import _RUNTIME_DATA_KEYS, Workspace

INITS = ("scratch", "finetune")
RESULT_METRICS = ("test_acc", "val_acc", "train_seconds", "epochs", "resumed_from")


class ROAR(Benchmark):
    """``benchmark=roar``: test accuracy of networks retrained without the most salient pixels.

    Args:
        methods: method config names; empty means the run's own ``method`` (``random`` is the
            baseline and should be among them).
        fractions: shares of pixels (or values) removed; ``0`` retrains on unmodified data.
        seeds: retraining seeds (independent retrains per fraction; Hooker et al. use 5).
        ranking: ``pixel`` (maps collapsed over channels by ``postprocess``) or ``value``
            (every pixel-channel value ranked; Hooker et al. with ``postprocess=[square]``).
        postprocess: named steps from raw maps to ranked scores (OPPSD: channel mean, abs).
        fill: ``dataset_mean`` (RoarTorch), ``image_mean`` (OPPSD) or ``imagenet_mean`` (Hooker).
        target: class explained: ``predicted`` (Hooker, RoarTorch) or ``label`` (OPPSD).
        init: ``scratch`` (a new network per retrain) or ``finetune`` (from the model's weights).
        recipe: the retraining recipe, a mapping of :class:`~xai_bench.models.recipe.Recipe`
            fields (missing ones keep ``Recipe()``'s defaults); its ``augment`` is a random crop
            and flip applied after removal (Hooker; off for OPPSD/PRUNE).
        train_limit: retrain on a seeded subset of this many train images (``None``: all).
        attribution_batch_size: images per attribution shard.
        dtype: storage of cached maps, ``float32`` or ``float16``.
        progress: show Lightning's progress bar while retraining.
    """

    name = "roar"
    higher_is_better = False

    def __init__(
        self,
        methods: Sequence[str] = (),
        fractions: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
        seeds: Sequence[int] = (0,),
        ranking: str = "pixel",
        postprocess: Sequence[Any] = ("channel_mean", "abs"),
        fill: str = "dataset_mean",
        target: str = "predicted",
        init: str = "scratch",
        recipe: Mapping[str, Any] | Recipe | None = None,
        train_limit: int | None = None,
        attribution_batch_size: int = 64,
        dtype: str = "float32",
        progress: bool = False,
    ) -> None:
        self.methods = list(methods)
        self.fractions = [float(f) for f in fractions]
        if not self.fractions or any(not 0.0 <= f < 1.0 for f in self.fractions):
            raise ValueError(f"fractions must lie in [0, 1), got {self.fractions}")
        self.seeds = [int(s) for s in seeds]
        self.ranking = check_choice(ranking, RANKINGS, "ranking")
        self.postprocess = Postprocess(postprocess)
        self.post_steps = OmegaConf.to_container(OmegaConf.create(list(postprocess)))
        self.fill = check_choice(fill, ROAR_FILLS, "fill")
        self.target = check_target(target)
        self.init = check_choice(init, INITS, "init")
        self.recipe = Recipe.from_mapping(recipe, name="benchmark.recipe")
        self.train_limit = None if train_limit is None else int(train_limit)
        self.attribution_batch_size = int(attribution_batch_size)
        self.dtype = dtype
        self.progress = bool(progress)

    def fingerprint_recipe(self) -> dict[str, Any]:
        """What the retrains depend on besides data and maps, as one flat dict (part of the
        partial results' fingerprint): the recipe's fields, ``train_limit`` and ``init``."""
        return {**self.recipe.to_dict(), "train_limit": self.train_limit, "init": self.init}

    # ------------------------------------------------------------------ attribution caches
    def cache_key(self, ws: Workspace, method: str, split: str) -> dict[str, Any]:
        """What the cached maps depend on: weights, data, split, method, target, collapse."""
        data = OmegaConf.to_container(ws.cfg.dataset, resolve=True)
        data["datamodule"] = {  # type: ignore[index]
            k: v
            for k, v in data["datamodule"].items()  # type: ignore[index]
            if k not in _RUNTIME_DATA_KEYS
        }
        return {
            "weights": state_hash(ws.model),
            "model": str(ws.cfg.model.name),
            "data": data,
            "split": split,
            "method": method_config(ws, method),
            "target": self.target,
            "ranking": self.ranking,
            "postprocess": self.post_steps,
        }

    def maps(self, ws: Workspace, explainer: Explainer, images: Any) -> torch.Tensor:
        """Scores to rank for a list of samples: ``[B, H, W]`` or ``[B, C, H, W]``."""
        sample = collate_samples(images)
        x = sample["image"].to(ws.device)
        if self.target == "label" and not ws.meta.multilabel:
            t = sample["label"].to(ws.device)
        else:
            with torch.no_grad():
                t = ws.model(x).argmax(1)
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
        self, ws: Workspace, dm: ImageDataModule, method: str, explainer: Explainer
    ) -> dict[str, np.ndarray]:
        """Cached maps of every split for one method (computed where missing)."""
        out = {}
        for split in SPLITS:
            ds = dm.dataset(split)
            cache = AttributionCache(
                ws.cfg.paths.attribution_dir, self.cache_key(ws, method, split), self.dtype
            )

            def compute(idx: list[int], ds: Any = ds) -> torch.Tensor:
                return self.maps(ws, explainer, [ds[i] for i in idx])

            out[split] = cache.build(
                len(ds),  # type: ignore[arg-type]
                self.attribution_batch_size,
                compute,
                ws.trainer_kwargs,
            )
        return out

    # ------------------------------------------------------------------ retraining
    def retrain(
        self,
        ws: Workspace,
        dm: ImageDataModule,
        maps: dict[str, np.ndarray] | None,
        fraction: float,
        seed: int,
        out_dir: Path,
    ) -> pd.DataFrame:
        """Train on the modified train split into ``out_dir`` (resuming), test on modified test."""
        r = self.recipe
        augment = roar_augmentation(dm.image_size) if r.augment else None
        datasets = {
            split: RemovedDataset(
                dm.dataset(split),
                maps[split] if maps is not None else _no_maps(dm, split),
                fraction,
                self.fill,
                dm.mean,
                dm.std,
                seed=ws.seed,
                augment=augment if split == "train" else None,
            )
            for split in SPLITS
        }
        data = RoarDataModule(datasets, r.batch_size, int(ws.cfg.num_workers), seed,
                              self.train_limit)  # fmt: skip
        net = ws.fresh_net(seed)
        if self.init == "finetune":
            net.load_state_dict({k: v.detach().cpu() for k, v in ws.model.state_dict().items()})
        metrics = train_classifier(
            net, data, out_dir, ws.trainer_kwargs, r, bool(ws.meta.multilabel), seed, self.progress
        )
        return pd.DataFrame(
            [{"metric": m, "value": float(metrics[m])} for m in RESULT_METRICS]
        ).assign(fraction=fraction, retrain_seed=seed)

    # ------------------------------------------------------------------ run
    def run(self, ws: Workspace) -> Result:
        dm = ws.build_datamodule()
        params = {"recipe": self.fingerprint_recipe(), "fill": self.fill, "target": self.target,
                  "ranking": self.ranking, "postprocess": self.post_steps}  # fmt: skip
        store = partial_store(ws, params)
        base_acc = clean_accuracy(ws, dm)
        parts, skipped = [], {}
        for name in method_names(ws, self.methods):
            try:
                explainer = ws.explainer_named(name)
            except MethodNotApplicableError as err:
                skipped[name] = str(err)
                continue
            maps = None
            if any(f > 0 for f in self.fractions):
                maps = self.saliency(ws, dm, name, explainer)
            tag = f"{name}-{stable_hash(method_config(ws, name), 8)}"
            for fraction in self.fractions:
                for seed in self.seeds:
                    key = (f"clean/seed={seed}" if fraction == 0
                           else f"{tag}/fraction={fraction:g}/seed={seed}")  # fmt: skip
                    out_dir = store.root / "retrain" / safe_key(key)
                    job = partial(self.retrain, ws, dm, maps, fraction, seed, out_dir)
                    parts.append(store.cached(key, job).assign(method=name))
        table = self.tidy(ws, parts, skipped)
        figure = roar_curves(table, ws.run_dir / "roar.png", base_acc, ws.identity)
        summary = self.summary(table, base_acc, skipped, store)
        atomic_write_json(ws.run_dir / "roar_curves.json", summary["curves"])
        return Result(table, summary, [str(figure)])

    def tidy(
        self, ws: Workspace, parts: list[pd.DataFrame], skipped: dict[str, str]
    ) -> pd.DataFrame:
        """Long rows plus a ``roar_auc`` per method (mean test accuracy over the fractions)."""
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        extra = []
        if not table.empty:
            acc = table[table.metric == "test_acc"].groupby(["method", "fraction"])["value"]
            curve = acc.mean().reset_index()
            for method, rows in curve.groupby("method"):
                extra.append({"method": method, "metric": "roar_auc", "value": _auc(rows)})
        notes = [{"method": n, "metric": "applicable", "value": 0.0, "note": reason}
                 for n, reason in skipped.items()]  # fmt: skip
        table = pd.concat([table, pd.DataFrame(extra + notes)], ignore_index=True)
        front = {**{k: v for k, v in ws.identity.items() if k != "method"}, "benchmark": self.name}
        for key, value in front.items():
            table[key] = value
        first = [*front, "method", "metric", "value", "fraction", "retrain_seed"]
        return table.reindex(columns=first + [c for c in table.columns if c not in first])

    def summary(
        self, table: pd.DataFrame, base_acc: float, skipped: dict[str, str], store: Any
    ) -> dict[str, Any]:
        acc = table[table.metric == "test_acc"]
        curves = {}
        for method, rows in acc.groupby("method"):
            means = rows.groupby("fraction")["value"].mean()
            curves[str(method)] = {f"{f:g}": float(v) for f, v in means.items()}
        auc = table[table.metric == "roar_auc"].set_index("method")["value"]
        return {
            "base_test_acc": base_acc,
            "curves": curves,
            "roar_auc": {str(k): float(v) for k, v in auc.items()},
            "skipped": skipped,
            "retrained": len(store.computed),
            "reused": len(store.loaded),
        }


def _auc(rows: pd.DataFrame) -> float:
    """Mean height of the accuracy-vs-fraction curve (trapezoid; one point: its value)."""
    rows = rows.sort_values("fraction")
    x, y = rows["fraction"].to_numpy(), rows["value"].to_numpy()
    if len(x) < 2:
        return float(y.mean())
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def _no_maps(dm: ImageDataModule, split: str) -> np.ndarray:
    """Placeholder maps for fraction 0 (nothing is removed; only the length is read)."""
    n = len(dm.dataset(split))  # type: ignore[arg-type]
    return np.zeros((n, 1, 1), dtype=np.float32)


@torch.no_grad()
def clean_accuracy(ws: Workspace, dm: ImageDataModule, batch_size: int = 256) -> float:
    """The evaluated model's accuracy on the unmodified test split (the curves' reference)."""
    from xai_bench.models.lit import accuracy

    hits, n = 0.0, 0
    for batch in dm.dataloader("test", batch_size=batch_size):
        x = batch["image"].to(ws.device)
        acc = accuracy(ws.model(x), batch["label"].to(ws.device), bool(ws.meta.multilabel))
        hits += float(acc) * x.shape[0]
        n += x.shape[0]
    return hits / max(n, 1)
