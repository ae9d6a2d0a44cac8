"""Seeded evaluation batches: the same images, in the same batches, in every rerun and rank."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from xai_bench.data.base import check_split, collate_samples
from xai_bench.engine.context import RunContext

TARGETS = ("predicted", "label")


@dataclass
class EvalBatch:
    """One batch of evaluation images on the device.

    Attributes:
        number: position of the batch in the subset (0, 1, ...), stable across reruns.
        x: model inputs ``[B, C, H, W]``.
        target: class explained per image ``[B]`` (int64).
        logits: the model's logits on ``x`` ``[B, K]``.
        sample: the collated sample dict (labels, indices, boxes, masks ...), on the CPU.
    """

    number: int
    x: Tensor
    target: Tensor
    logits: Tensor
    sample: dict[str, Any]


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got '{target}'")
    return target


def check_count(value: Any, key: str, low: int = 1, nullable: bool = False) -> Any:
    """``value`` if it is an integer >= ``low`` (or ``None`` where ``nullable``), else raise a
    ``ValueError`` that names ``key`` and what is allowed."""
    if value is None and nullable:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        allowed = f"an integer >= {low}" + (" (or null: all)" if nullable else "")
        raise ValueError(f"{key} must be {allowed}, got {value!r}")
    return value


def subset_indices(n_total: int, n_images: int | None, seed: int) -> list[int]:
    """A seeded random subset of ``n_images`` indices (all when ``None`` or too many), sorted."""
    if n_images is None or n_images >= n_total:
        return list(range(n_total))
    g = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(n_total, generator=g)[:n_images].tolist())


@dataclass(frozen=True)
class BatchPlan:
    """Which images a benchmark evaluates: a seeded subset of ``split`` in fixed batches.

    ``target='predicted'`` explains the model's argmax class (spec §0 for most benchmarks),
    ``'label'`` the ground-truth label (multi-label data always uses the prediction).
    """

    split: str = "test"
    n_images: int | None = None
    batch_size: int = 32
    target: str = "predicted"

    def __post_init__(self) -> None:
        """Refuse values that would evaluate no image, or the wrong ones (a negative count
        would slice the subset from its end)."""
        check_split(self.split)
        check_count(self.n_images, "n_images", nullable=True)
        check_count(self.batch_size, "batch_size")
        check_target(self.target)

    def indices(self, ctx: RunContext) -> list[int]:
        ds = ctx.datamodule.dataset(self.split)
        return subset_indices(len(ds), self.n_images, ctx.seed)  # type: ignore[arg-type]

    def n_batches(self, ctx: RunContext) -> int:
        return -(-len(self.indices(ctx)) // self.batch_size)

    def batch(self, ctx: RunContext, number: int) -> EvalBatch:
        """Batch ``number`` with the class to explain per image."""
        check_target(self.target)
        ds = ctx.datamodule.dataset(self.split)
        idx = self.indices(ctx)
        chunk = idx[number * self.batch_size : (number + 1) * self.batch_size]
        if not chunk:
            raise IndexError(f"batch {number} is past the end of the {len(idx)}-image subset")
        sample = collate_samples([ds[i] for i in chunk])
        x = sample["image"].to(ctx.device)
        with torch.no_grad():
            logits = ctx.model(x)
        if self.target == "label" and not ctx.meta.multilabel:
            t = sample["label"].to(ctx.device)
        else:
            t = logits.argmax(1)
        return EvalBatch(number, x, t, logits, sample)
