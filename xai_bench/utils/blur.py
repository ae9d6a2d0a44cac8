"""Gaussian blur of image batches (substrate of IG-blur, Group-CAM, RISE insertion)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_kernel1d(size: int, sigma: float, device=None, dtype=torch.float32) -> Tensor:
    """Normalised 1-D Gaussian of odd length ``size``."""
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: Tensor, kernel_size: int = 51, sigma: float = 50.0) -> Tensor:
    """Separable Gaussian blur of ``[B, C, H, W]`` with reflect borders (kornia's default).

    Kernels wider than the image fall back to replicate padding, where reflect is undefined.
    """
    if kernel_size % 2 == 0:
        raise ValueError("kernel_size must be odd")
    b, c, h, w = x.shape
    k = gaussian_kernel1d(kernel_size, sigma, x.device, x.dtype)
    pad = kernel_size // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    y = F.pad(x.reshape(b * c, 1, h, w), (pad, pad, pad, pad), mode=mode)
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return y.reshape(b, c, h, w)
