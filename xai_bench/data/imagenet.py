"""ImageNet ILSVRC-2012 (Russakovsky et al. 2015) read with ``ImageFolder`` over wnid folders."""

from __future__ import annotations

from functools import partial

from torch.utils.data import Dataset, Subset
from torchvision.datasets import ImageFolder

from xai_bench.data.base import (
    ImageDataModule,
    MappedDataset,
    classification_sample,
    open_image,
    require,
    seeded_split,
)
from xai_bench.data.transforms import eval_transform, train_transform

LAYOUT = """{root}/
└── imagenet/
    ├── train/<wnid>/*.JPEG   (optional for evaluation)
    └── val/<wnid>/*.JPEG     (the 50k official validation images, sorted into wnid folders)"""


class ImageNetDataModule(ImageDataModule):
    """ImageNet: ``test`` = the official val folder; ``val`` = seeded split of train if present.

    Class indices follow the sorted wnids (the standard synset order), as ``ImageFolder`` gives.
    Without a train folder, ``val`` is the official val folder too.
    """

    source_dir = "imagenet"

    def build_split(self, split: str) -> Dataset:
        base = self.root / "imagenet"
        layout = LAYOUT.format(root=self.root)
        use_train = split == "train" or (split == "val" and (base / "train").is_dir())
        folder = require(base / ("train" if use_train else "val"), "imagenet", layout)
        data: Dataset = ImageFolder(str(folder), loader=open_image)
        if split == "train" and self.augment:
            tf = train_transform(self.image_size, self.mean, self.std)
        else:
            tf = eval_transform(self.image_size, self.mean, self.std, crop=True)
        if use_train:
            train_idx, val_idx = seeded_split(len(data), self.val_fraction, self.seed)
            data = Subset(data, train_idx if split == "train" else val_idx)
        return MappedDataset(data, partial(classification_sample, tf))
