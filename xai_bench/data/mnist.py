"""MNIST (LeCun et al. 1998) through torchvision's loader, read from the raw IDX files."""

from __future__ import annotations

from functools import partial

from torch.utils.data import Dataset, Subset
from torchvision.datasets import MNIST

from xai_bench.data.base import (
    ImageDataModule,
    MappedDataset,
    classification_sample,
    require,
    seeded_split,
)
from xai_bench.data.transforms import eval_transform

LAYOUT = """{root}/
└── MNIST/raw/
    ├── train-images-idx3-ubyte
    ├── train-labels-idx1-ubyte
    ├── t10k-images-idx3-ubyte
    └── t10k-labels-idx1-ubyte"""


class MNISTDataModule(ImageDataModule):
    """MNIST: 60k train (val = seeded ``val_fraction`` of it) and the 10k test images.

    Images are 1-channel, resized to ``image_size`` when it is not 28. ``augment`` is ignored:
    the shared training augmentation flips images, which digits are not invariant to.
    """

    source_dir = "MNIST"

    def build_split(self, split: str) -> Dataset:
        if not self.download:
            require(self.root / "MNIST" / "raw", "mnist", LAYOUT.format(root=self.root))
        base = MNIST(str(self.root), train=split != "test", download=self.download)
        tf = eval_transform(self.image_size, self.mean, self.std, crop=False)
        if split != "test":
            train_idx, val_idx = seeded_split(len(base), self.val_fraction, self.seed)
            base = Subset(base, train_idx if split == "train" else val_idx)
        return MappedDataset(base, partial(classification_sample, tf))
