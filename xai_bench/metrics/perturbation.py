"""Perturbation curves: pixel orders from saliency, fill substrates, batched scoring, AUC.

Shared by ``pixel_perturbation`` (FullGrad / OPPSD / PRUNE LeRF) and
``deletion_insertion`` (RISE / Group-CAM). Everything runs batched on the inputs'
device: a pixel order becomes a rank per pixel, and the image after ``n`` changes is
``where(rank < n, substitute, base)``, built for many (image, step) pairs at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xai_bench.metrics.postprocess import Postprocess
from xai_bench.utils.blur import gaussian_blur
from xai_bench.utils.resolution import AUTO, resolve_blur

FILLS = ("image_mean", "dataset_mean", "zero", "blur")
TIE_BREAKS = ("random", "index")
SCORES = ("logit", "softmax")
ORDERS = ("least_first", "most_first")  # pixel perturbation: LeRF or MoRF
# Blur presets: RISE = 11 px, sigma 5, scipy kernel, zero padding;
# Group-CAM = kornia 51 px, sigma 50, reflect padding.
BLUR_PRESETS: dict[str, tuple[int, float]] = {"rise": (11, 5.0), "gcam": (51, 50.0)}

_MASK62 = (1 << 62) - 1


def check_choice(value: str, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise ValueError(f"{what} must be one of {tuple(choices)}, got '{value}'")
    return value


# --------------------------------------------------------------------------- saliency -> order
def saliency_2d(attr: Tensor, postprocess: Postprocess) -> Tensor:
    """Collapse raw attributions ``[B, C, H, W]`` to one value per pixel ``[B, H, W]``.

    The ``postprocess`` steps run first; a map that still has several channels is averaged
    over them. A map with a NaN or an infinite value comes out of the steps all NaN and is
    returned all ``-inf``, so that it still sorts (as a constant map, in the tie-break order);
    its results are meaningless and the benchmarks report them as NaN (see
    :func:`batch_saliency`, :func:`mask_nonfinite`).
    """
    s = postprocess(attr.float())
    if s.dim() != 4:
        raise ValueError(f"expected maps [B, C, H, W], got shape {tuple(s.shape)}")
    s = s.mean(1) if s.shape[1] > 1 else s[:, 0]
    return torch.nan_to_num(s, nan=-math.inf)


def _mix(z: Tensor) -> Tensor:
    """A splitmix64-style hash on int64 tensors (62-bit state, wrapping arithmetic)."""
    z = z & _MASK62
    z = ((z ^ (z >> 30)) * 0x3F58476D1CE4E5B9) & _MASK62
    z = ((z ^ (z >> 27)) * 0x14D049BB133111EB) & _MASK62
    return z ^ (z >> 31)


def random_order(keys: Tensor, n_pixels: int, seed: int) -> Tensor:
    """A seeded random permutation of ``n_pixels`` per image ``[B, N]``.

    It depends only on the image's key (e.g. its dataset index) and ``seed``, never on the
    batch it is in, so per-image and batched runs agree.
    """
    keys = keys.long().view(-1, 1)
    counter = torch.arange(n_pixels, device=keys.device).view(1, -1)
    h = _mix(_mix(keys * 0x2545F4914F6CDD1D + seed * 1_000_003) + counter + 1)
    return torch.argsort(h, dim=1, stable=True)


def pixel_order(
    saliency: Tensor,
    descending: bool = True,
    tie_break: str = "random",
    keys: Tensor | None = None,
    seed: int = 0,
) -> Tensor:
    """Flat pixel indices ``[B, H*W]`` from the first to the last pixel to change.

    Args:
        saliency: ``[B, H, W]`` (or ``[B, 1, H, W]``) one value per pixel.
        descending: most salient first (deletion/insertion) or least salient first (LeRF).
        tie_break: ``random`` sorts equal values in a seeded random order per image (a
            constant map gives exactly :func:`random_order`); ``index`` is numpy's order:
            ``np.argsort(s, kind="stable")`` ascending, its flip descending (RISE's
            ``np.flip(np.argsort(s))``).
        keys: one int per image for the random tie-break (default: 0 for all images).
        seed: seed of the random tie-break.
    """
    check_choice(tie_break, TIE_BREAKS, "tie_break")
    s = saliency.flatten(1)
    if tie_break == "index":
        order = torch.argsort(s, dim=1, stable=True)
        return order.flip(1) if descending else order
    if keys is None:
        keys = torch.zeros(s.shape[0], dtype=torch.long, device=s.device)
    perm = random_order(keys.to(s.device), s.shape[1], seed)
    idx = torch.argsort(s.gather(1, perm), dim=1, descending=descending, stable=True)
    return perm.gather(1, idx)


def order_rank(order: Tensor) -> Tensor:
    """Inverse permutation: ``rank[b, p]`` = position of pixel ``p`` in ``order[b]``."""
    pos = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, pos)


# --------------------------------------------------------------------------- fills
def rise_kernel1d(size: int, sigma: float, device=None, dtype=torch.float32) -> Tensor:
    """RISE's kernel (``gkern``): scipy ``gaussian_filter`` (reflect, truncate 4) of a delta.

    On a grid of ``size`` pixels the Gaussian's tails fold back at the borders, so the kernel is
    flatter than a truncated Gaussian; it sums to 1. The 2-D kernel is its outer product.
    """
    radius = int(4.0 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    weights = weights / weights.sum()
    pos = torch.arange(size, device=device).view(-1, 1) + offsets.long().view(1, -1)
    m = pos % (2 * size)
    m = torch.where(m >= size, 2 * size - 1 - m, m)  # scipy 'reflect': d c b a | a b c d
    kernel = torch.where(m == size // 2, weights, torch.zeros_like(weights)).sum(1)
    return kernel.to(dtype)


def blur_image(x: Tensor, kernel_size: int, sigma: float, style: str = "gcam") -> Tensor:
    """Gaussian blur of ``[B, C, H, W]`` per channel.

    ``style='gcam'``: kornia's normalised Gaussian with reflect borders (Group-CAM);
    ``style='rise'``: RISE's scipy-folded kernel with zero padding (``conv2d(padding=k//2)``).
    """
    if style == "gcam":
        return gaussian_blur(x, kernel_size, sigma)
    check_choice(style, tuple(BLUR_PRESETS), "blur style")
    if kernel_size % 2 == 0:
        raise ValueError("kernel_size must be odd")
    b, c, h, w = x.shape
    k = rise_kernel1d(kernel_size, sigma, x.device, x.dtype)
    pad = kernel_size // 2
    y = x.reshape(b * c, 1, h, w)
    y = F.conv2d(y, k.view(1, 1, 1, -1), padding=(0, pad))
    y = F.conv2d(y, k.view(1, 1, -1, 1), padding=(pad, 0))
    return y.reshape(b, c, h, w)


def fill_values(
    x: Tensor,
    fill: str,
    mean: Sequence[float],
    std: Sequence[float],
    blur_kernel_size: int = 51,
    blur_sigma: float = 50.0,
    blur_style: str = "gcam",
) -> Tensor:
    """The substitute image ``[B, C, H, W]`` for normalised inputs ``x``.

    ``image_mean``: each image's per-channel mean (OPPSD ``fill_mask``); ``dataset_mean``:
    zeros in normalised space (RISE/GCAM deletion, RoarTorch); ``zero``: black, i.e. pixel
    value 0 normalised, ``-mean/std``; ``blur``: :func:`blur_image` of ``x``.
    """
    check_choice(fill, FILLS, "fill")
    if fill == "image_mean":
        return x.mean((2, 3), keepdim=True).expand_as(x)
    if fill == "dataset_mean":
        return torch.zeros_like(x)
    if fill == "zero":
        m = torch.as_tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        s = torch.as_tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (-m / s).expand_as(x)
    return blur_image(x, blur_kernel_size, blur_sigma, blur_style)


# --------------------------------------------------------------------------- scoring
def target_score(logits: Tensor, target: Tensor, score: str, multilabel: bool = False) -> Tensor:
    """Each sample's target logit, or its probability (softmax; sigmoid for multi-label)."""
    check_choice(score, SCORES, "score")
    if score == "softmax":
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        logits = torch.sigmoid(logits) if multilabel else torch.softmax(logits, 1)
    return logits.gather(1, target.view(-1, 1)).squeeze(1)


@torch.no_grad()
def perturbation_scores(
    model: nn.Module,
    base: Tensor,
    substitute: Tensor,
    rank: Tensor,
    counts: Tensor,
    target: Tensor,
    score: str = "softmax",
    multilabel: bool = False,
    internal_batch_size: int | None = None,
) -> Tensor:
    """Scores ``[B, S]`` of the images after ``counts[s]`` pixel changes each.

    The image of (b, s) takes the ``counts[s]`` first pixels of its order (``rank < n``, all
    channels together) from ``substitute`` and the rest from ``base``. The ``B*S`` images are
    built and scored ``internal_batch_size`` at a time (``None``: all in one forward pass).
    """
    b, _, h, w = base.shape
    counts = counts.to(base.device).long()
    n_steps = counts.numel()
    total = b * n_steps
    chunk = total if internal_batch_size is None else int(internal_batch_size)
    if chunk < 1:
        raise ValueError("internal_batch_size must be >= 1")
    image = torch.arange(b, device=base.device).repeat_interleave(n_steps)
    step = torch.arange(n_steps, device=base.device).repeat(b)
    out = []
    for lo in range(0, total, chunk):
        i, s = image[lo : lo + chunk], step[lo : lo + chunk]
        mask = (rank[i] < counts[s].view(-1, 1)).view(-1, 1, h, w)
        xin = torch.where(mask, substitute[i], base[i])
        out.append(target_score(model(xin), target[i], score, multilabel))
    return torch.cat(out).view(b, n_steps)


# --------------------------------------------------------------------------- curves
def trapezoid_auc(y: Tensor, x: Tensor | None = None) -> Tensor:
    """Area under ``y[..., n]`` on [0, 1]: ``(sum - first/2 - last/2) / (n - 1)`` (RISE).

    With ``x`` (increasing, ``[n]``) the trapezoid integral is divided by ``x[-1] - x[0]``,
    the curve's mean height; equal to the above for evenly spaced ``x``.
    """
    n = y.shape[-1]
    if n < 2:
        raise ValueError("an AUC needs at least two points")
    if x is None:
        return (y.sum(-1) - y[..., 0] / 2 - y[..., -1] / 2) / (n - 1)
    x = x.to(y)
    return torch.trapezoid(y, x, dim=-1) / (x[-1] - x[0])


def step_counts(n_pixels: int, step: int) -> Tensor:
    """RISE's schedule ``[0, step, 2 step, ..., n_pixels]``: ``ceil(N/step) + 1`` points."""
    if step < 1:
        raise ValueError("step must be >= 1 pixel")
    n_steps = math.ceil(n_pixels / step)
    return (torch.arange(n_steps + 1) * step).clamp(max=n_pixels)


def step_size(
    n_pixels: int,
    step_pixels: int = 448,
    reference_size: int | None = 224,
    fraction: float | None = None,
) -> int:
    """Pixels changed per deletion/insertion step for an input of ``n_pixels`` pixels.

    ``fraction``: that share of the pixels (Group-CAM's "1%"); otherwise ``step_pixels`` at
    ``reference_size`` px inputs (Group-CAM: 448 at 224), scaled by ``n_pixels /
    reference_size**2``; ``reference_size=None`` uses ``step_pixels`` as is. At least 1.
    """
    if fraction is not None:
        return max(1, round(fraction * n_pixels))
    if reference_size is None:
        return step_pixels
    scale = n_pixels / reference_size**2
    return max(1, round(step_pixels * scale))


def preset_blur(
    preset: str, kernel_size: int | str | None, sigma: float | str | None, side: int
) -> tuple[int, float, str]:
    """``(kernel size, sigma, style)`` of a :data:`BLUR_PRESETS` blur for inputs of ``side``
    px: a kernel or sigma left ``auto`` (or ``None``) is the preset's 224 px value scaled to
    ``side`` (:func:`~xai_bench.utils.resolution.resolve_blur`)."""
    check_choice(preset, tuple(BLUR_PRESETS), "blur")
    kernel = AUTO if kernel_size is None else kernel_size
    k, s = resolve_blur(kernel, AUTO if sigma is None else sigma, BLUR_PRESETS[preset], side)
    return k, s, preset


def fraction_counts(n_pixels: int, fractions: Sequence[float]) -> Tensor:
    """Pixels to change per fraction, ``max(1, int(N * p))`` (OPPSD ``fill_mask``)."""
    if any(not 0.0 < p <= 1.0 for p in fractions):
        raise ValueError(f"fractions must lie in (0, 1], got {list(fractions)}")
    return torch.tensor([max(1, int(n_pixels * p)) for p in fractions])


def batch_saliency(
    attr: Tensor, x: Tensor, postprocess: Postprocess
) -> tuple[Tensor, Tensor]:  # [B,C,H,W] -> [B,H,W], [B]
    """One value per pixel of raw maps ``attr`` for inputs ``x``, and a per-image flag of
    non-finite maps: a NaN or an infinite value in the raw map or after ``postprocess``.
    Their order is meaningless (see :func:`saliency_2d`): every result of a flagged image is
    NaN (:func:`mask_nonfinite`)."""
    if attr.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"maps of shape {tuple(attr.shape)} do not match inputs {tuple(x.shape)}; "
            "add an `upsample` postprocess step"
        )
    s = saliency_2d(attr, postprocess)
    nonfinite = ~torch.isfinite(attr.flatten(1)).all(1) | ~torch.isfinite(s.flatten(1)).all(1)
    return s, nonfinite


def mask_nonfinite(values: Tensor, nonfinite: Tensor) -> Tensor:
    """``values`` ``[B, ...]`` with every value of the images flagged in ``nonfinite`` ``[B]``
    set to NaN (a score of a non-finite map is never a number)."""
    flags = nonfinite.to(values.device).view(-1, *([1] * (values.dim() - 1)))
    return torch.where(flags, torch.nan, values)


def relative_change(y: Tensor, y0: Tensor) -> Tensor:
    """``|y - y0| / |y0|`` per column of ``y`` ``[B, F]``; NaN where ``y0 == 0`` (undefined)."""
    den = y0.abs().view(-1, 1)
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, (y - y0.view(-1, 1)).abs() / safe, torch.nan)


def flat(t: Tensor) -> np.ndarray:
    """A tensor as a flat float64 numpy array (for result rows)."""
    return t.detach().double().cpu().numpy().reshape(-1)
