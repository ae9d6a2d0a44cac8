"""Seeded evaluation batches: the same images, in the same batches, in every rerun and rank."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

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


def size_batches(
    indices: Sequence[int], sizes: Sequence[Hashable] | None, batch_size: int
) -> list[list[int]]:
    """``indices`` in batches of at most ``batch_size`` that hold one input size each.

    Without ``sizes`` (every image the same size) the batches are consecutive runs of
    ``indices``; otherwise the indices of each size, in order, are cut into runs, the sizes in
    order of their first image. The batches depend only on the subset and the sizes, so a
    rerun sees the same ones."""
    groups: dict[Hashable, list[int]] = {}
    if sizes is None:
        groups[None] = list(indices)
    else:
        for i, size in zip(indices, sizes, strict=True):
            groups.setdefault(size, []).append(int(i))
    return [g[s : s + batch_size] for g in groups.values() for s in range(0, len(g), batch_size)]


#: per datamodule, the batches of each plan (reading the sizes of every image once)
_CHUNKS: WeakKeyDictionary[Any, dict[tuple[Any, ...], list[list[int]]]] = WeakKeyDictionary()


@dataclass(frozen=True)
class BatchPlan:
    """Which images a benchmark evaluates: a seeded subset of ``split`` in fixed batches.

    ``target='predicted'`` explains the model's argmax class ( for most benchmarks),
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

    def chunks(self, ctx: RunContext) -> list[list[int]]:
        """The subset's indices in batches of at most ``batch_size``: consecutive runs, or, where
        the datamodule's images differ in size (its ``input_sizes``, e.g. ``dataset.resize=
        torchray``), consecutive runs of each size's images (:func:`size_batches`)."""
        idx = self.indices(ctx)
        sizes_of = getattr(ctx.datamodule, "input_sizes", None)
        if sizes_of is None:
            return size_batches(idx, None, self.batch_size)
        key = (self, ctx.seed, len(idx))
        cache = _CHUNKS.setdefault(ctx.datamodule, {})
        if key not in cache:
            cache[key] = size_batches(idx, sizes_of(self.split, idx), self.batch_size)
        return cache[key]

    def n_batches(self, ctx: RunContext) -> int:
        return len(self.chunks(ctx))

    def batch(self, ctx: RunContext, number: int) -> EvalBatch:
        """Batch ``number`` with the class to explain per image."""
        check_target(self.target)
        ds = ctx.datamodule.dataset(self.split)
        chunks = self.chunks(ctx)
        if not 0 <= number < len(chunks):
            n = sum(map(len, chunks))
            raise IndexError(f"batch {number} is past the end of the {n}-image subset")
        sample = collate_samples([ds[i] for i in chunks[number]])
        x = sample["image"].to(ctx.device)
        with torch.no_grad():
            logits = ctx.model(x)
        if self.target == "label" and not ctx.meta.multilabel:
            t = sample["label"].to(ctx.device)
        else:
            t = logits.argmax(1)
        return EvalBatch(number, x, t, logits, sample)
