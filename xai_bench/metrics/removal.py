"""ROAR removal (Hooker et al. 2019): replace the most salient pixels or values.

Three published variants differ in what is ranked and what fills the hole:

* Hooker et al.: every (pixel, channel) value ranked separately (``ranking='value'``, squared
  attributions), filled with the ImageNet mean (``fill='imagenet_mean'``);
* OPPSD: pixels ranked by ``|channel mean|`` (``ranking='pixel'``), filled with each image's
  channel mean (``fill='image_mean'``);
* RoarTorch (PRUNE): pixels ranked, filled with the dataset mean (``fill='dataset_mean'``).

Ties (a constant map, a CAM upsampled from few cells) are broken in a seeded random order per
image, keyed by the image's dataset index, so a constant map removes random pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from xai_bench.metrics.perturbation import check_choice, order_rank, pixel_order

RANKINGS = ("pixel", "value")
ROAR_FILLS = ("image_mean", "dataset_mean", "imagenet_mean")
IMAGENET_MEAN = (0.485, 0.456, 0.406)


def removal_count(n: int, fraction: float) -> int:
    """Number of pixels (or values) removed: ``int(n * fraction)`` (Hooker: t% of 224x224x3)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"a removal fraction lies in [0, 1], got {fraction}")
    return int(n * fraction)


def removal_mask(
    saliency: Tensor, fraction: float, keys: Tensor | None = None, seed: int = 0
) -> Tensor:
    """Boolean mask of the ``fraction`` most salient entries of each map.

    Args:
        saliency: ``[B, H, W]`` (per-pixel ranking) or ``[B, C, H, W]`` (per-value ranking).
        fraction: share of entries to remove, in [0, 1].
        keys: one int per image (its dataset index) for the random tie-break.
        seed: seed of the tie-break.

    Returns:
        ``[B, 1, H, W]`` for per-pixel maps, ``[B, C, H, W]`` for per-value maps.
    """
    b = saliency.shape[0]
    flat = torch.nan_to_num(saliency.reshape(b, -1).float(), nan=-torch.inf)
    k = removal_count(flat.shape[1], fraction)
    rank = order_rank(pixel_order(flat, descending=True, keys=keys, seed=seed))
    mask = rank < k
    shape = (b, 1, *saliency.shape[1:]) if saliency.dim() == 3 else saliency.shape
    return mask.view(shape)


def roar_fill(
    x: Tensor, fill: str, mean: Sequence[float], std: Sequence[float]
) -> Tensor:  # [B,C,H,W] -> [B,C,H,W]
    """The substitute for normalised inputs ``x``: per-image channel mean, the dataset mean
    (0 after normalisation), or the ImageNet mean in [0, 1] pixel space, normalised."""
    check_choice(fill, ROAR_FILLS, "fill")
    if fill == "image_mean":
        return x.mean((2, 3), keepdim=True).expand_as(x)
    if fill == "dataset_mean":
        return torch.zeros_like(x)
    c = x.shape[1]
    pixel = torch.tensor(IMAGENET_MEAN if c == 3 else [sum(IMAGENET_MEAN) / 3] * c)
    m = torch.as_tensor(mean, dtype=x.dtype).view(-1)
    s = torch.as_tensor(std, dtype=x.dtype).view(-1)
    value = ((pixel.to(x.dtype) - m) / s).to(x.device)
    return value.view(1, c, 1, 1).expand_as(x)


def remove(
    x: Tensor,
    saliency: Tensor,
    fraction: float,
    fill: str,
    mean: Sequence[float],
    std: Sequence[float],
    keys: Tensor | None = None,
    seed: int = 0,
) -> Tensor:
    """``x`` with its ``fraction`` most salient pixels (or values) replaced by ``fill``."""
    if saliency.dim() == 4 and saliency.shape[1] not in (1, x.shape[1]):
        raise ValueError(f"per-value saliency {tuple(saliency.shape)} does not match {x.shape}")
    if saliency.dim() == 4 and saliency.shape[1] == 1:
        saliency = saliency[:, 0]
    mask = removal_mask(saliency, fraction, keys, seed).to(x.device)
    return torch.where(mask, roar_fill(x, fill, mean, std), x)
