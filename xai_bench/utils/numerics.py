"""When a map counts as constant: one rule for the methods and the metrics, in every dtype."""

from __future__ import annotations

import torch
from torch import Tensor

CONSTANT_RTOL = 1e-5  # span <= CONSTANT_RTOL * max|value|: a constant map


def constant_maps(lo: Tensor, hi: Tensor, rtol: float = CONSTANT_RTOL) -> Tensor:
    """Elementwise: a map with minimum ``lo`` and maximum ``hi`` is constant, ``hi - lo <=
    rtol * max(|lo|, |hi|)`` (so an all-zero map is constant, and a span of rounding noise)."""
    return (hi - lo) <= rtol * torch.maximum(lo.abs(), hi.abs())
