"""Group-CAM fine-tuning (Zhang et al. 2021, "Group-CAM", §5).

The paper fine-tunes a trained ResNet-50 for 20 epochs on images whose regions outside the
forward-only Group-CAM map of the label are blurred, and reports top-1 76.15 -> 76.74. Here the
evaluated model's weights are fine-tuned twice under the same recipe: ``plain`` (the images as
they are) and ``groupcam`` (:class:`~xai_bench.training.groupcam_augment.GroupCAMAugment`), and
the validation accuracy after every epoch (epoch 0 = the starting model) and the final test
accuracy of both are compared.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from xai_bench.engine.batches import check_count
from xai_bench.engine.benchmark import Benchmark, Result
from xai_bench.engine.context import RunContext
from xai_bench.engine.fingerprint import fingerprint
from xai_bench.engine.jobs import chunk_store, tidy_table
from xai_bench.metrics.perturbation import BLUR_PRESETS
from xai_bench.training.fit import METRICS_FILE, MODEL_FILE, fit_and_test
from xai_bench.training.groupcam_augment import FINETUNE_RECIPE, GroupCAMAugment
from xai_bench.training.lit import Classifier, accuracy
from xai_bench.training.recipe import Recipe
from xai_bench.utils.distributed import remove_tree
from xai_bench.utils.errors import UserInputError
from xai_bench.utils.hashing import state_hash
from xai_bench.utils.io import atomic_write_json
from xai_bench.utils.resolution import float_option, px_option, resolve_blur
from xai_bench.viz.curves import accuracy_curves

VARIANTS = ("plain", "groupcam")
FINETUNE_DIR = "finetune"
RECIPE_FILE = "recipe.json"


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` (used as it is) over a loader."""
    correct, loss, n = 0.0, 0.0, 0
    for batch in loader:
        x, y = batch["image"].to(device), batch["label"].to(device)
        logits = model(x)
        correct += float(accuracy(logits, y, multilabel=False)) * len(y)
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        n += len(y)
    return {"acc": correct / max(n, 1), "loss": loss / max(n, 1)}


class GroupCAMFinetune(Benchmark):
    """``benchmark=groupcam_finetune``: plain vs Group-CAM-augmented fine-tuning.

    Both variants start from the evaluated model's weights (copied into a fresh network; the
    model itself is never changed), use the same seed, data order and recipe, and differ only
    in the training images. Each trains into its own checkpoint folder
    ``<run_dir>/finetune/<variant>-<hash>``, keyed by the recipe, the starting weights, the
    model and data (``ctx.fingerprint``) and the seed: a killed run resumes from Lightning's
    ``last.ckpt``, and a finished variant is reused, never retrained. It compares two training
    schemes, not the run's methods: the ``method`` column of its rows is the variant.

    Args:
        recipe: the fine-tuning recipe, a mapping of :class:`~xai_bench.training.recipe.Recipe`
            fields (missing ones keep
            :data:`~xai_bench.training.groupcam_augment.FINETUNE_RECIPE`'s: momentum SGD,
            lr 1e-3, 3 epochs); its ``batch_size`` is also the evaluation batch
            size and its ``augment`` the dataset's training augmentation (ImageNet:
            RandomResizedCrop + flip). ``max_epochs`` must be at least 1.
        p: probability that a training image is replaced by its Group-CAM blend.
        groups: Group-CAM channel groups (paper: 16).
        blur_kernel: Gaussian blur kernel size in px; ``auto``: the paper's 51 px at 224 px,
            scaled to the input (:mod:`~xai_bench.utils.resolution`).
        blur_sigma: Gaussian blur sigma in px; ``auto``: the paper's 50 px, scaled likewise.
        internal_batch_size: Group-CAM's blended inputs per forward pass (not part of the key).
        progress: show Lightning's progress bar.
    """

    name = "groupcam_finetune"
    headline = {"test_acc": True}

    def __init__(
        self,
        recipe: Mapping[str, Any] | Recipe | None = None,
        p: float = 1.0,
        groups: int = 16,
        blur_kernel: int | str = "auto",
        blur_sigma: float | str = "auto",
        internal_batch_size: int | None = 128,
        progress: bool = True,
    ) -> None:
        if not 0.0 <= p <= 1.0:
            raise UserInputError(f"benchmark.p is a probability in [0, 1], got {p}")
        self.recipe = Recipe.from_mapping(recipe, FINETUNE_RECIPE, name="benchmark.recipe")
        self.recipe.refuse_init("benchmark.recipe", "fine-tuning starts from model.weights")
        if self.recipe.max_epochs < 1:
            raise UserInputError(
                f"benchmark.recipe.max_epochs must be >= 1, got {self.recipe.max_epochs}"
            )
        check_count(int(groups), "groups")
        check_count(internal_batch_size, "internal_batch_size", nullable=True)
        self.blur_options = (px_option(blur_kernel, "blur_kernel"),
                             float_option(blur_sigma, "blur_sigma"))  # fmt: skip
        self.groupcam: dict[str, Any] = {"p": float(p), "groups": int(groups)}
        self.internal_batch_size = internal_batch_size
        self.progress = bool(progress)

    def params(self, variant: str) -> dict[str, Any]:
        """What changes a variant's numbers (besides model, data and seed)."""
        recipe = self.recipe.key_dict()
        extra = self.groupcam if variant == "groupcam" else {}
        return {"variant": variant, **recipe, **extra}

    def checkpoint_dir(self, ctx: RunContext, variant: str, start: str) -> Path:
        """``<run_dir>/finetune/<variant>-<fingerprint of recipe, starting weights, model and
        data, seed>``."""
        meta = ctx.meta
        key = fingerprint(
            ctx, params=self.params(variant), start=start,
            layer=[meta.cam_layer, meta.reshape, meta.num_prefix_tokens],
        )  # fmt: skip
        return ctx.run_dir / FINETUNE_DIR / f"{variant}-{key}"

    def check(self, ctx: RunContext) -> None:
        if ctx.meta.multilabel:
            raise UserInputError(
                f"{self.name} blends the map of each image's ground-truth class; dataset "
                f"'{ctx.identity.get('dataset')}' is multi-label"
            )
        if ctx.meta.cam_layer is None:
            raise UserInputError(f"{self.name} needs a CAM layer; model.cam_layer is null")

    def module(self, ctx: RunContext, variant: str) -> pl.LightningModule:
        """A fresh network holding the starting weights, in the variant's LightningModule."""
        net = ctx.fresh_net()
        net.load_state_dict(ctx.model.state_dict())
        if variant == "plain":
            return Classifier(net, self.recipe)
        return GroupCAMAugment(
            net,
            layer=str(ctx.meta.cam_layer),
            reshape=ctx.meta.reshape,
            num_prefix_tokens=ctx.meta.num_prefix_tokens,
            internal_batch_size=self.internal_batch_size,
            seed=ctx.seed,
            recipe=self.recipe,
            **self.groupcam,
        )

    def finetune(self, ctx: RunContext, variant: str, out_dir: Path) -> tuple[dict[str, Any], bool]:
        """The variant's metrics, and whether a finished checkpoint was reused (a forced run
        removes the variant's earlier checkpoints and trains it anew)."""
        if ctx.force:
            remove_tree(out_dir)
        if (out_dir / MODEL_FILE).is_file() and (out_dir / METRICS_FILE).is_file():
            return json.loads((out_dir / METRICS_FILE).read_text()), True
        atomic_write_json(out_dir / RECIPE_FILE, self.params(variant))
        module = self.module(ctx, variant)
        metrics = fit_and_test(
            module, ctx.datamodule, out_dir, ctx.trainer_kwargs, self.recipe.max_epochs,
            ctx.seed, self.progress, ctx.checkpoint_every_n_steps, make_logger=ctx.make_logger,
        )  # fmt: skip
        return metrics, False

    def start_rows(self, ctx: RunContext, weights: str) -> pd.DataFrame:
        """Validation and test accuracy and loss of the starting model (epoch 0, its weights'
        hash ``weights``), cached in the run's partial store."""
        store = chunk_store(ctx, self.name, {"start": weights})

        def compute() -> pd.DataFrame:
            rows = []
            for split in ("val", "test"):
                loader = ctx.datamodule.dataloader(split, batch_size=self.recipe.batch_size)
                for key, value in evaluate(ctx.model, loader, ctx.device).items():
                    rows.append({"metric": f"{split}_{key}", "value": value})
            return pd.DataFrame(rows)

        return store.cached("start", compute)

    def run(self, ctx: RunContext) -> Result:
        self.check(ctx)
        side = min(ctx.meta.input_size[1:])
        k, sigma = resolve_blur(*self.blur_options, BLUR_PRESETS["gcam"], side)
        self.groupcam.update(blur_kernel=k, blur_sigma=sigma)
        dm = ctx.datamodule
        saved = dm.batch_size, dm.augment
        dm.batch_size, dm.augment = self.recipe.batch_size, self.recipe.augment
        try:
            weights = state_hash(ctx.model)
            start = self.start_rows(ctx, weights)
            runs = {}
            for variant in VARIANTS:
                out_dir = self.checkpoint_dir(ctx, variant, weights)
                metrics, reused = self.finetune(ctx, variant, out_dir)
                runs[variant] = {"metrics": metrics, "reused": reused, "dir": str(out_dir)}
        finally:
            dm.batch_size, dm.augment = saved
        table = self.table(ctx, start, runs)
        figure = accuracy_curves(
            table, ctx.run_dir / f"{self.name}.png", metric="val_acc",
            title=f"fine-tuning {ctx.identity.get('model')} on {ctx.identity.get('dataset')}",
        )  # fmt: skip
        return Result(table, self.summary(start, runs), [str(figure)])

    def table(
        self, ctx: RunContext, start: pd.DataFrame, runs: dict[str, dict[str, Any]]
    ) -> pd.DataFrame:
        """Tidy rows: ``val_acc``/``val_loss`` per epoch 0..E, final ``test_acc``/``test_loss``
        and the starting model's ``start_test_acc``, per variant (``method`` column; the method
        config and hash columns stay empty: the variants are training schemes)."""
        s = dict(zip(start.metric, start.value, strict=True))
        rows = []
        for variant, run in runs.items():
            m = run["metrics"]
            curve = [{"epoch": 0, "val/acc": s["val_acc"], "val/loss": s["val_loss"]}]
            for h in [*curve, *m["history"]]:
                for metric in ("acc", "loss"):
                    if f"val/{metric}" in h:
                        rows.append((variant, f"val_{metric}", h[f"val/{metric}"], h["epoch"]))
            last = len(m["history"])
            rows += [
                (variant, "test_acc", m["test_acc"], last),
                (variant, "test_loss", m["test_loss"], last),
                (variant, "start_test_acc", s["test_acc"], 0),
            ]
        table = pd.DataFrame(rows, columns=["method", "metric", "value", "epoch"])
        table["epoch"] = table["epoch"].astype(int)
        return tidy_table(ctx, self.name, table, {})

    def summary(self, start: pd.DataFrame, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        s = dict(zip(start.metric, start.value, strict=True))
        out: dict[str, Any] = {
            "start/val_acc": s["val_acc"],
            "start/test_acc": s["test_acc"],
            "recipe": self.recipe.to_dict(),
            "groupcam": self.groupcam,
        }
        for variant, run in runs.items():
            m = run["metrics"]
            out[f"{variant}/test_acc"] = float(m["test_acc"])
            out[f"{variant}/val_acc"] = float(m["val_acc"])
            out[f"{variant}/epochs"] = len(m["history"])
            out[f"{variant}/train_seconds"] = float(m["train_seconds"])
        out["gain"] = out["groupcam/test_acc"] - out["plain/test_acc"]
        out["gain_over_start"] = out["groupcam/test_acc"] - out["start/test_acc"]
        out["reused"] = {v: run["reused"] for v, run in runs.items()}
        out["resumed_from"] = {v: int(run["metrics"]["resumed_from"]) for v, run in runs.items()}
        out["checkpoints"] = {v: run["dir"] for v, run in runs.items()}
        out["headline"] = dict(self.headline)
        return out
