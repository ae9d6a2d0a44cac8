"""What the evaluation benchmarks share: a seeded image subset in batches, the target of each
image, the methods to compare, and a resumable store for finished chunks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from xai_bench.data.base import collate_samples
from xai_bench.methods.base import Explainer, MethodNotApplicableError
from xai_bench.results.partial import PartialStore
from xai_bench.utils.configs import option_path
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


def eval_batches(
    ws: Workspace,
    split: str = "test",
    n_images: int | None = None,
    batch_size: int = 32,
    target: str = "predicted",
) -> Iterator[EvalBatch]:
    """Batches of a seeded subset of ``split`` with the class to explain for each image.

    ``target='predicted'`` explains the model's argmax class (spec §0 for most benchmarks),
    ``'label'`` the ground-truth label (multi-label data always uses the prediction).
    """
    check_target(target)
    ds = ws.datamodule.dataset(split)
    idx = subset_indices(len(ds), n_images, ws.seed)  # type: ignore[arg-type]
    loader = DataLoader(
        Subset(ds, idx), batch_size=batch_size, shuffle=False, collate_fn=collate_samples
    )
    model = ws.model
    for number, sample in enumerate(loader):
        x = sample["image"].to(ws.device)
        with torch.no_grad():
            logits = model(x)
        if target == "label" and not ws.meta.multilabel:
            t = sample["label"].to(ws.device)
        else:
            t = logits.argmax(1)
        yield EvalBatch(number, x, t, logits, sample)


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
