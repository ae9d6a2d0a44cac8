"""BIRDS 250 (Kaggle "100-bird-species", 250-class release) read with ``ImageFolder``."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import find_classes

from xai_bench.data.base import (
    ImageDataModule,
    MappedDataset,
    classification_sample,
    open_image,
    require,
)
from xai_bench.data.transforms import eval_transform, train_transform

LAYOUT = """{root}/
└── birds250/
    ├── train/<CLASS NAME>/*.jpg
    ├── valid/<CLASS NAME>/*.jpg
    └── test/<CLASS NAME>/*.jpg"""

FOLDERS = {"train": ("train",), "val": ("valid",), "test": ("valid", "test")}


class BirdsDataModule(ImageDataModule):
    """Birds: ``train`` = train, ``val`` = valid and ``test`` = valid + test (reproduction spec).

    Every folder must list the same class folders (same ``class_to_idx``), else labels of the
    splits would disagree; this is checked against ``train`` too when it is present.
    """

    source_dir = "birds250"

    def build_split(self, split: str) -> Dataset:
        base = self.root / "birds250"
        layout = LAYOUT.format(root=self.root)
        for name in FOLDERS[split]:
            require(base / name, "birds250", layout)
        parts = [ImageFolder(str(base / name), loader=open_image) for name in FOLDERS[split]]
        ref_name = "train" if (base / "train").is_dir() else FOLDERS[split][0]
        reference = find_classes(base / ref_name)[1]
        for name, part in zip(FOLDERS[split], parts):
            _check_same_classes(base, (ref_name, reference), (name, part.class_to_idx))
        if split == "train" and self.augment:
            tf = train_transform(self.image_size, self.mean, self.std)
        else:
            tf = eval_transform(self.image_size, self.mean, self.std, crop=True)
        data = parts[0] if len(parts) == 1 else ConcatDataset(parts)
        return MappedDataset(data, partial(classification_sample, tf))


def _check_same_classes(
    base: Path, a: tuple[str, dict[str, int]], b: tuple[str, dict[str, int]]
) -> None:
    """Raise if two split folders index their classes differently."""
    if a[1] != b[1]:
        only_a, only_b = sorted(set(a[1]) - set(b[1])), sorted(set(b[1]) - set(a[1]))
        raise ValueError(
            f"birds250: class folders of {base / a[0]} and {base / b[0]} differ "
            f"({len(a[1])} vs {len(b[1])} classes; only in {a[0]}: {only_a[:5]}, "
            f"only in {b[0]}: {only_b[:5]}); the splits must list the same class folders."
        )
