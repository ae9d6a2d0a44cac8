"""Baselines given as values, as Captum takes them: a number or a tensor broadcast to the input.

Used by integrated gradients (the path start ``x0``) and occlusion (the fill of a window).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

BaselineLike = str | float | Tensor
"""A named baseline (``zero``, ``blur``... per method), a number, or a tensor."""

_SHAPES = "[C, H, W], [1, C, H, W], [B, C, H, W] (or any shape broadcastable to x) or a number"


def check_baseline(
    value: BaselineLike, names: Sequence[str] = (), what: str = "baseline"
) -> str | float | Tensor:
    """``value`` validated: one of ``names``, or a value (:func:`check_baseline_value`).
    ``what`` names the argument in error messages."""
    if isinstance(value, str):
        if value not in names:
            known = f"one of {tuple(names)}, " if names else ""
            raise ValueError(f"{what} must be {known}a number or a tensor, got {value!r}")
        return value
    return check_baseline_value(value, what)


def check_baseline_value(value: float | Tensor, what: str = "baseline") -> float | Tensor:
    """``value`` validated: a finite number (as ``float``), or a finite floating-point tensor of
    at most 4 dims (detached; its shape is checked against the input per call)."""
    if isinstance(value, str):
        raise ValueError(f"{what} must be a number or a tensor, got {value!r}")
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{what} must be finite, got {value}")
        return float(value)
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise ValueError(f"a {what} tensor must be floating point, got {value.dtype}")
        if value.dim() > 4:
            raise ValueError(f"{what} tensor of shape {tuple(value.shape)}: expected {_SHAPES}")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{what} tensor has NaN or infinite values")
        return value.detach()
    raise ValueError(f"{what} must be a number or a tensor, not {type(value).__name__}")


def expand_baseline(value: float | Tensor, x: Tensor, what: str = "baseline") -> Tensor:
    """The baseline as a tensor of ``x``'s shape ``[B,C,H,W]``, dtype and device (a view)."""
    if not isinstance(value, Tensor):
        return torch.full_like(x, float(value))
    try:
        fits = torch.broadcast_shapes(value.shape, x.shape) == x.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"{what} of shape {tuple(value.shape)} does not fit inputs of shape "
            f"{tuple(x.shape)}: expected {_SHAPES}"
        )
    return value.to(device=x.device, dtype=x.dtype).expand_as(x)
