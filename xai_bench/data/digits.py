"""scikit-learn's bundled handwritten digits (8x8, 1797 images), optionally upsampled to 28x28.

Used for the MLP experiments (input invariance, UNREL §2) where MNIST is not on disk. Pixel
values are scaled to [0, 1] before normalisation, like MNIST's ``ToTensor``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from xai_bench.data.base import ImageDataModule


class TensorClassification(Dataset):
    """Sample dicts over an image tensor ``[N, C, H, W]`` (already normalised) and labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": self.labels[i], "index": i}


class DigitsDataModule(ImageDataModule):
    """Digits with a seeded stratified-by-chance split: ``test_fraction`` test, then val.

    Args:
        test_fraction: share of the 1797 images held out for testing.
        **kwargs: :class:`ImageDataModule` arguments (``root`` is unused: the data ships with
            scikit-learn).
    """

    def __init__(self, test_fraction: float = 0.2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.test_fraction = float(test_fraction)

    def _all(self) -> tuple[torch.Tensor, torch.Tensor]:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8]
        if self.image_size != 8:
            x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
            x = x.clamp(0, 1)
        x = (x - self.mean[0]) / self.std[0]
        return x, torch.tensor(bunch.target, dtype=torch.long)

    def build_split(self, split: str) -> Dataset:
        x, y = self._all()
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.seed))
        n_test = round(len(y) * self.test_fraction)
        n_val = round((len(y) - n_test) * self.val_fraction)
        parts = {
            "test": perm[:n_test],
            "val": perm[n_test : n_test + n_val],
            "train": perm[n_test + n_val :],
        }
        idx = parts[split].sort().values
        return TensorClassification(x[idx], y[idx])
