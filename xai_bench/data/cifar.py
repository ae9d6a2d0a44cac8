"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) through torchvision's loaders."""

from __future__ import annotations

import pickle
from functools import partial
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset, Subset
from torchvision.datasets import CIFAR10, CIFAR100

from xai_bench.data.base import (
    ImageDataModule,
    MappedDataset,
    classification_sample,
    require,
    seeded_split,
)
from xai_bench.data.transforms import eval_transform, train_transform

LAYOUTS = {
    "cifar10": """{root}/
└── cifar-10-batches-py/
    ├── data_batch_1 ... data_batch_5
    ├── test_batch
    └── batches.meta""",
    "cifar100": """{root}/
└── cifar-100-python/
    ├── train
    ├── test
    └── meta""",
}


class _FilesExist:
    """Check that the batch and meta files exist instead of verifying their md5.

    torchvision compares each file with the md5 of the official archive, which re-packed copies
    and the tiny fixtures of the tests fail; the pickles are still read by torchvision's code.
    """

    root: str
    base_folder: str
    train_list: list[list[str]]
    test_list: list[list[str]]
    meta: dict[str, str]

    def _check_integrity(self) -> bool:
        names = [name for name, _ in self.train_list + self.test_list] + [self.meta["filename"]]
        return all((Path(self.root) / self.base_folder / name).is_file() for name in names)

    def _load_meta(self) -> None:
        with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class CIFAR10Files(_FilesExist, CIFAR10):
    """:class:`~torchvision.datasets.CIFAR10` with an existence-only integrity check."""


class CIFAR100Files(_FilesExist, CIFAR100):
    """:class:`~torchvision.datasets.CIFAR100` with an existence-only integrity check."""


VARIANTS = {"cifar10": CIFAR10Files, "cifar100": CIFAR100Files}


class CIFARDataModule(ImageDataModule):
    """CIFAR-10/100: 50k train (val = seeded ``val_fraction`` of it) and 10k test images.

    Args:
        variant: ``"cifar10"`` or ``"cifar100"``.
        **kwargs: :class:`ImageDataModule` arguments.
    """

    def __init__(self, variant: str = "cifar10", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ValueError(f"unknown CIFAR variant '{variant}' (one of {sorted(VARIANTS)})")
        self.variant = variant

    def sources(self) -> list[Path]:
        return [self.root / VARIANTS[self.variant].base_folder]

    def build_split(self, split: str) -> Dataset:
        cls = VARIANTS[self.variant]
        if not self.download:
            layout = LAYOUTS[self.variant].format(root=self.root)
            require(self.root / cls.base_folder, self.variant, layout)
        base = cls(str(self.root), train=split != "test", download=self.download)
        if split == "train" and self.augment:
            tf = train_transform(self.image_size, self.mean, self.std, small=True)
        else:
            tf = eval_transform(self.image_size, self.mean, self.std, crop=False)
        if split != "test":
            train_idx, val_idx = seeded_split(len(base), self.val_fraction, self.seed)
            base = Subset(base, train_idx if split == "train" else val_idx)
        return MappedDataset(base, partial(classification_sample, tf))
