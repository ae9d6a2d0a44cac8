"""Food-101 (Bossard et al. 2014) through torchvision's loader: 101 dishes, 750/250 per class."""

from __future__ import annotations

from functools import partial

from torch.utils.data import Dataset, Subset
from torchvision.datasets import Food101

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
└── food-101/
    ├── images/<class>/<id>.jpg
    └── meta/
        ├── classes.txt
        ├── train.json
        └── test.json"""


class Food101DataModule(ImageDataModule):
    """Food-101: official train (val = seeded ``val_fraction`` of it) and test lists.

    Classes are indexed in sorted order of the meta json keys (torchvision's convention).
    """

    source_dir = "food-101"

    def build_split(self, split: str) -> Dataset:
        tv_split = "test" if split == "test" else "train"
        if not self.download:
            layout = LAYOUT.format(root=self.root)
            require(self.root / "food-101" / "images", "food101", layout)
            require(self.root / "food-101" / "meta" / f"{tv_split}.json", "food101", layout)
        base = Food101(str(self.root), split=tv_split, download=self.download, loader=open_image)
        if split == "train" and self.augment:
            tf = train_transform(self.image_size, self.mean, self.std)
        else:
            tf = eval_transform(self.image_size, self.mean, self.std, crop=True)
        if split != "test":
            train_idx, val_idx = seeded_split(len(base), self.val_fraction, self.seed)
            base = Subset(base, train_idx if split == "train" else val_idx)
        return MappedDataset(base, partial(classification_sample, tf))
