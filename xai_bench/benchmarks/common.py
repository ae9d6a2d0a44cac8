"""What the evaluation benchmarks share: a seeded image subset in batches, the target of each
image, the methods to compare, and a resumable store for finished chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd
import torch
from omegaconf import OmegaConf
from torch import Tensor

from xai_bench.data.base import collate_samples
from xai_bench.methods.base import Explainer, MethodNotApplicableError
from xai_bench.results.partial import PartialStore
from xai_bench.utils.configs import option_path
from xai_bench.utils.distributed import distributed_map
from xai_bench.workspace import Workspace

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


def subset_indices(n_total: int, n_images: int | None, seed: int) -> list[int]:
    """A seeded random subset of ``n_images`` indices (all when ``None`` or too many), sorted."""
    if n_images is None or n_images >= n_total:
        return list(range(n_total))
    g = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(n_total, generator=g)[:n_images].tolist())


def _subset(ws: Workspace, split: str, n_images: int | None) -> tuple[Any, list[int]]:
    ds = ws.datamodule.dataset(split)
    return ds, subset_indices(len(ds), n_images, ws.seed)  # type: ignore[arg-type]


def n_batches(ws: Workspace, split: str, n_images: int | None, batch_size: int) -> int:
    """Number of batches of the seeded evaluation subset."""
    _, idx = _subset(ws, split, n_images)
    return -(-len(idx) // batch_size)


def eval_batch(
    ws: Workspace,
    number: int,
    split: str = "test",
    n_images: int | None = None,
    batch_size: int = 32,
    target: str = "predicted",
) -> EvalBatch:
    """Batch ``number`` of a seeded subset of ``split``, with the class to explain per image.

    ``target='predicted'`` explains the model's argmax class (spec §0 for most benchmarks),
    ``'label'`` the ground-truth label (multi-label data always uses the prediction).
    """
    check_target(target)
    ds, idx = _subset(ws, split, n_images)
    chunk = idx[number * batch_size : (number + 1) * batch_size]
    if not chunk:
        raise IndexError(f"batch {number} is past the end of the {len(idx)}-image subset")
    sample = collate_samples([ds[i] for i in chunk])
    x = sample["image"].to(ws.device)
    with torch.no_grad():
        logits = ws.model(x)
    if target == "label" and not ws.meta.multilabel:
        t = sample["label"].to(ws.device)
    else:
        t = logits.argmax(1)
    return EvalBatch(number, x, t, logits, sample)


def eval_batches(
    ws: Workspace,
    split: str = "test",
    n_images: int | None = None,
    batch_size: int = 32,
    target: str = "predicted",
) -> Iterator[EvalBatch]:
    """Every batch of the seeded subset in order (see :func:`eval_batch`)."""
    for number in range(n_batches(ws, split, n_images, batch_size)):
        yield eval_batch(ws, number, split, n_images, batch_size, target)


Job = tuple[str, Callable[[EvalBatch], pd.DataFrame]]


def batch_chunks(
    ws: Workspace,
    store: PartialStore,
    jobs: Sequence[Job],
    split: str = "test",
    n_images: int | None = None,
    batch_size: int = 32,
    target: str = "predicted",
) -> list[tuple[str, int, pd.DataFrame]]:
    """Rows of every (batch, job) chunk, data-parallel over the run's ``trainer`` ranks.

    ``jobs`` are ``(name, compute)`` pairs (e.g. one per method); ``compute(batch)`` returns the
    rows of one batch. A chunk is keyed ``<name>/batch=<n>`` in the resumable ``store``: missing
    chunks are computed (with a DDP trainer preset, batch ``n`` by rank ``n % world``), then all
    chunks are read back from disk, so every rank and a single-process run see the same table.
    ``store.computed`` lists the chunks this process computed, ``store.loaded`` all others.

    Returns:
        ``(name, batch number, rows)`` in batch order, jobs in the given order within a batch.
    """
    keys = [f"{name}/batch={{}}" for name, _ in jobs]

    def done(number: int) -> bool:
        return all(store.has(k.format(number)) for k in keys)

    def work(number: int) -> None:
        batch = eval_batch(ws, number, split, n_images, batch_size, target)
        for key, (_, compute) in zip(keys, jobs, strict=True):
            store.cached(key.format(number), partial(compute, batch))

    numbers = range(n_batches(ws, split, n_images, batch_size))
    distributed_map(numbers, work, ws.trainer_kwargs, done)
    seen = set(store.computed) | set(store.loaded)
    out = []
    for n in numbers:
        for key, (name, _) in zip(keys, jobs, strict=True):
            if key.format(n) not in seen:  # finished earlier, or by another rank
                store.loaded.append(key.format(n))
            out.append((name, n, store.get(key.format(n))))
    return out


def method_names(ws: Workspace, methods: Sequence[str]) -> list[str]:
    """The methods a benchmark compares: the given config names, or the run's own method."""
    return list(methods) or [str(ws.cfg.method.name)]


def explainers(
    ws: Workspace, methods: Sequence[str]
) -> Iterator[tuple[str, Explainer | None, str]]:
    """``(name, explainer, note)`` per method; ``explainer`` is ``None`` with the reason in
    ``note`` when the method does not fit the model."""
    for name in method_names(ws, methods):
        try:
            yield name, ws.explainer_named(name), ""
        except MethodNotApplicableError as err:
            yield name, None, str(err)


def partial_store(ws: Workspace, params: dict[str, Any]) -> PartialStore:
    """A :class:`PartialStore` fingerprinted by the benchmark parameters and the run's model,
    data, weights and seed (everything that changes the numbers)."""
    cfg = ws.cfg
    fingerprint = {
        "params": params,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "seed": ws.seed,
    }
    if cfg.model.weights == "trained":  # the checkpoint key covers the training recipe
        fingerprint["checkpoint"] = ws.checkpoint_dir.name
    return PartialStore(ws.run_dir, fingerprint)


def method_config(ws: Workspace, name: str) -> dict[str, Any]:
    """The resolved config of a method by name (to key cached chunks by it)."""
    if name == str(ws.cfg.method.name):
        return OmegaConf.to_container(ws.cfg.method, resolve=False)  # type: ignore[return-value]
    return OmegaConf.to_container(OmegaConf.load(option_path("method", name)))  # type: ignore[return-value]
