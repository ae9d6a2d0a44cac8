"""Image transforms: the evaluation and training pipelines of the papers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
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


class TensorResize:
    """TorchRay's resize of the Caffe models' inputs (``benchmark/models.py``, ``get_transform``).

    Bilinear :func:`torch.nn.functional.interpolate` (``align_corners=False``, no antialiasing)
    of a ``[C, H, W]`` tensor, to ``size = (H', W')``, or for an int ``size`` to the shorter side
    ``size`` and the longer side ``int(size * long / short)`` (aspect kept, truncated).
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size: int | tuple[int, int] = (
            int(size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        )

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(H', W')`` of an image of ``height x width``."""
        if not isinstance(self.size, int):
            return self.size
        if width < height:
            return int(self.size * height / width), self.size
        return self.size, int(self.size * width / height)

    def __call__(self, x: Tensor) -> Tensor:  # [C, H, W] -> [C, H', W']
        size = self.output_size(x.shape[-2], x.shape[-1])
        with torch.no_grad():
            return F.interpolate(x[None], size, mode="bilinear", align_corners=False)[0]


def torchray_transform(
    size: int | Sequence[int], mean: Sequence[float], std: Sequence[float]
) -> T.Compose:
    """TorchRay's pointing-game preprocessing for its Caffe models: ``ToTensor``,
    :class:`TensorResize` (224: shorter side 224, aspect kept), ``Normalize(mean, std)``.

    With the ``mean``/``std`` of the ``*_torchray`` model configs (``(123.68, 116.779,
    103.939) / 255`` and ``1 / 255``) a ``[0, 1]`` RGB image becomes Caffe's input, 0-255 minus
    the mean. The VOC and COCO datamodules use it with ``dataset.resize=torchray``
    (:mod:`~xai_bench.data.resize`).
    """
    return T.Compose([T.ToTensor(), TensorResize(size), T.Normalize(mean, std)])
