"""Datasets with their most salient pixels removed, for ROAR retraining."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms as T

from xai_bench.data.base import EpochShuffle, ResumePoint, collate_samples
from xai_bench.metrics.removal import remove


def roar_augmentation(image_size: int) -> T.Compose:
    """Augmentation applied *after* removal (Hooker et al.): pad-crop and flip for small
    images, random-resized crop (area 0.08-1) and flip otherwise; on normalised tensors."""
    if image_size <= 64:
        pad = max(1, image_size // 8)
        geometry = [T.RandomCrop(image_size, padding=pad), T.RandomHorizontalFlip()]
    else:
        geometry = [T.RandomResizedCrop(image_size, antialias=True), T.RandomHorizontalFlip()]
    return T.Compose(geometry)


def subset_rows(n: int, limit: int, seed: int) -> list[int]:
    """The seeded subset of ``limit`` of ``n`` train images a retrain uses, sorted."""
    g = torch.Generator().manual_seed(int(seed))
    return sorted(torch.randperm(n, generator=g)[: int(limit)].tolist())


class SparseMaps:
    """Maps of some rows of a split, indexed by the split's row (``train_limit``: only the
    images some retrain sees are explained). ``values[j]`` is the map of row ``rows[j]``;
    any other row raises ``KeyError``."""

    def __init__(self, values: np.ndarray, rows: Sequence[int], n: int) -> None:
        if len(values) != len(rows):
            raise ValueError(f"{len(values)} maps for {len(rows)} rows")
        self.values, self.n = values, int(n)
        self.position = {int(r): j for j, r in enumerate(rows)}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.position[int(i)]]


class RemovedDataset(Dataset):
    """``base`` samples whose image loses its ``fraction`` most salient pixels (or values).

    Args:
        base: a dataset of sample dicts (``image`` normalised ``[C, H, W]``, ``index``).
        saliency: maps ``[N, H, W]`` (per pixel) or ``[N, C, H, W]`` (per value), row ``i``
            for ``base[i]`` (a memory map is read one row at a time).
        fraction: share removed, in [0, 1].
        fill: ``image_mean``, ``dataset_mean`` or ``imagenet_mean``.
        mean, std: the normalisation of ``image`` (for the ImageNet-mean fill).
        seed: seed of the random tie-break (keyed by the sample's index).
        augment: a transform applied to the image after removal, or ``None``.
    """

    def __init__(
        self,
        base: Dataset,
        saliency: np.ndarray | SparseMaps,
        fraction: float,
        fill: str,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int = 0,
        augment: Any | None = None,
    ) -> None:
        if len(saliency) != len(base):  # type: ignore[arg-type]
            raise ValueError(f"{len(saliency)} maps for {len(base)} images")  # type: ignore[arg-type]
        self.base = base
        self.saliency = saliency
        self.fraction = float(fraction)
        self.fill = fill
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.seed = int(seed)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.saliency)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = dict(self.base[i])
        image = sample["image"]
        if self.fraction > 0:
            sal = torch.from_numpy(np.array(self.saliency[i], dtype=np.float32))[None]
            key = torch.tensor([int(sample.get("index", i))])
            image = remove(image[None], sal, self.fraction, self.fill, self.mean, self.std,
                           keys=key, seed=self.seed)[0]  # fmt: skip
        if self.augment is not None:
            image = self.augment(image)
        sample["image"] = image
        return sample


class RoarDataModule(pl.LightningDataModule):
    """Train / val / test loaders over prepared datasets (seeded shuffling of the train split).

    Args:
        datasets: ``{"train": ..., "val": ..., "test": ...}``.
        batch_size: loader batch size.
        num_workers: loader worker processes.
        seed: seed of the train order (and of ``train_limit``'s subset).
        train_limit: train on a seeded random subset of this many images (``None``: all).
    """

    def __init__(
        self,
        datasets: Mapping[str, Dataset],
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        train_limit: int | None = None,
    ) -> None:
        super().__init__()
        self.datasets = dict(datasets)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.resume = ResumePoint()  # set by the fit loop when it resumes mid-epoch
        train = self.datasets["train"]
        if train_limit is not None and train_limit < len(train):  # type: ignore[arg-type]
            rows = subset_rows(len(train), int(train_limit), self.seed)  # type: ignore[arg-type]
            self.datasets["train"] = Subset(train, rows)

    def _loader(self, split: str, sampler: Any = None) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_samples,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        n = len(self.datasets["train"])  # type: ignore[arg-type]
        return self._loader("train", EpochShuffle(n, self.seed, self.resume))

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
