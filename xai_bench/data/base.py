"""DataModule base: seeded splits, subsets, dict samples and a collate for boxes and masks.

A sample is a dict with ``image`` (normalised float ``[C, H, W]``), ``label`` (int64 class or
float multi-hot ``[K]``), ``index`` (int) and, where the dataset has them, ``boxes``
(float ``[n, 4]`` as x0, y0, x1, y1 in original-image pixels, x1/y1 exclusive), ``box_labels``
(int64 ``[n]``), ``difficult`` (bool ``[n]``), ``masks`` (bool ``[n, H0, W0]``) and
``orig_size`` (``(H0, W0)``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

SPLITS = ("train", "val", "test")
STACKED = ("image", "label", "index")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk; the message names the expected path and layout."""


def require(path: Path, dataset: str, layout: str) -> Path:
    """Return ``path`` if it exists, else raise with the expected layout and how to fix it."""
    if not path.exists():
        raise DatasetNotFoundError(
            f"dataset '{dataset}' not found: {path} does not exist.\n"
            f"Expected layout:\n{layout}\n"
            "Put the files there, point paths.data_dir (or dataset.datamodule.root) at them, "
            "or set dataset.datamodule.download=true where the dataset can be downloaded."
        )
    return path


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack ``image``, ``label`` and ``index``; keep variable-size entries as lists."""
    out: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key in STACKED:
            out[key] = torch.stack([torch.as_tensor(v) for v in values])
        else:
            out[key] = values
    return out


class MappedDataset(Dataset):
    """Apply ``fn(item, index) -> sample`` to each item of a base dataset."""

    def __init__(self, base: Dataset, fn: Callable[[Any, int], dict[str, Any]]) -> None:
        self.base = base
        self.fn = fn

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.fn(self.base[i], i)


def classification_sample(transform: Any, item: tuple[Any, int], index: int) -> dict[str, Any]:
    """``(PIL image, class)`` -> sample dict with the transformed image."""
    image, target = item
    return {
        "image": transform(image),
        "label": torch.tensor(target, dtype=torch.long),
        "index": index,
    }


def seeded_split(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` into (train, val) index lists with a fixed seed."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = round(n * val_fraction)
    return sorted(perm[n_val:]), sorted(perm[:n_val])


class EpochShuffle(Sampler[int]):
    """A random order of ``range(n)`` that depends only on ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every epoch, so a resumed training run draws the
    same batches as an uninterrupted one, whatever happened to the global random state.
    """

    def __init__(self, n: int, seed: int = 0, resume: ResumePoint | None = None) -> None:
        self.n = int(n)
        self.seed = int(seed)
        self.epoch = 0
        self.resume = resume

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        skip = self.resume.take(self.epoch) if self.resume is not None else 0
        return iter(order[skip:])


class ResumePoint:
    """Where an interrupted epoch stopped: the first ``samples`` indices of ``epoch`` were
    trained on. :class:`EpochShuffle` skips them once, so a run resumed from a mid-epoch
    checkpoint sees exactly the batches an uninterrupted run would have seen next."""

    def __init__(self, epoch: int = -1, samples: int = 0) -> None:
        self.epoch, self.samples = int(epoch), int(samples)

    def take(self, epoch: int) -> int:
        """The samples to skip in ``epoch`` (once; 0 for any other epoch)."""
        if epoch != self.epoch:
            return 0
        skip, self.epoch, self.samples = self.samples, -1, 0
        return skip


class ImageDataModule(pl.LightningDataModule, ABC):
    """Base DataModule: subclasses implement :meth:`build_split`; everything else is shared.

    Args:
        root: folder that holds the dataset files.
        mean: normalisation mean (the model's, so inputs match its training).
        std: normalisation std.
        image_size: side of the square model input.
        batch_size: loader batch size.
        num_workers: loader worker processes.
        seed: seed of the train/val split and of ``limit`` subsets.
        val_fraction: share of the training set held out when there is no official val split.
        limit: keep at most this many samples per split (seeded random subset), or ``None``.
        augment: use the training augmentation on the train split.
        download: allow torchvision to download the dataset (never the default).
    """

    def __init__(
        self,
        root: str,
        mean: Sequence[float],
        std: Sequence[float],
        image_size: int,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.1,
        limit: int | None = None,
        augment: bool = False,
        download: bool = False,
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.val_fraction = float(val_fraction)
        self.limit = None if limit is None else int(limit)
        self.augment = bool(augment)
        self.resume = ResumePoint()  # set by the fit loop when it resumes mid-epoch
        self.download = bool(download)
        self._cache: dict[str, Dataset] = {}

    @property
    def class_names(self) -> list[str] | None:
        """Human-readable class names in label order, where the dataset defines them."""
        return None

    @abstractmethod
    def build_split(self, split: str) -> Dataset:
        """Return the dataset of sample dicts for ``split`` in ``SPLITS``."""

    def dataset(self, split: str) -> Dataset:
        """The (cached, optionally limited) dataset of one split."""
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}' (one of {SPLITS})")
        if split not in self._cache:
            ds = self.build_split(split)
            if self.limit is not None and len(ds) > self.limit:  # type: ignore[arg-type]
                g = torch.Generator().manual_seed(self.seed + SPLITS.index(split))
                idx = torch.randperm(len(ds), generator=g)[: self.limit]  # type: ignore[arg-type]
                ds = Subset(ds, sorted(idx.tolist()))
            self._cache[split] = ds
        return self._cache[split]

    def setup(self, stage: str | None = None) -> None:
        """Build the splits a Lightning stage needs (fails early if files are missing)."""
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for split in needed.get(stage or "", SPLITS):
            self.dataset(split)

    def dataloader(
        self, split: str, shuffle: bool = False, batch_size: int | None = None
    ) -> DataLoader:
        """A loader over one split with :func:`collate_samples`."""
        return DataLoader(
            self.dataset(split),
            batch_size=batch_size or self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate_samples,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset("train")
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=EpochShuffle(len(ds), self.seed, self.resume),  # type: ignore[arg-type]
            num_workers=self.num_workers,
            collate_fn=collate_samples,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test")

    def normalize(self, x: Tensor) -> Tensor:
        """[0, 1] images ``[B, C, H, W]`` -> model inputs."""
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std

    def denormalize(self, x: Tensor) -> Tensor:
        """Model inputs ``[B, C, H, W]`` -> images in [0, 1] (for figures)."""
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return x * std + mean
