"""Image transforms: the evaluation and training pipelines of the papers (spec §0)."""

from __future__ import annotations

from collections.abc import Sequence

from torchvision import transforms as T


def eval_transform(
    image_size: int, mean: Sequence[float], std: Sequence[float], crop: bool = True
) -> T.Compose:
    """Resize-then-centre-crop (shorter side ``image_size * 256/224``) or a plain square resize.

    ``crop=True`` is the ImageNet evaluation pipeline (256 -> 224); ``crop=False`` resizes to
    ``image_size x image_size`` so that boxes map back to the original image by scaling alone.
    """
    if crop:
        resize = [T.Resize(round(image_size * 256 / 224)), T.CenterCrop(image_size)]
    else:
        resize = [T.Resize((image_size, image_size))]
    return T.Compose([*resize, T.ToTensor(), T.Normalize(mean, std)])


def train_transform(
    image_size: int, mean: Sequence[float], std: Sequence[float], small: bool = False
) -> T.Compose:
    """Standard augmentation: random-resized crop and flip, or pad-4 crop and flip for 32 px."""
    if small:
        geometry = [
            T.Resize(image_size),
            T.RandomCrop(image_size, padding=4),
            T.RandomHorizontalFlip(),
        ]
    else:
        geometry = [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip()]
    return T.Compose([*geometry, T.ToTensor(), T.Normalize(mean, std)])
