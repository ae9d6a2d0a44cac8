"""Batched similarity of saliency maps on the device: Spearman, SSIM, HOG.

Every function takes batches ``[B, ...]`` and returns one value per sample ``[B]``. The
references are SciPy's ``spearmanr`` (average ranks for ties), scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, data_range=...)`` and ``hog``
(``orientations=9, cells_per_block=(3, 3), block_norm='L2-Hys'``); ``tests/test_similarity.py``
checks each against them on random data.

Map views of the sanity checks (Adebayo et al. 2018; PRUNE §4.2):

* :func:`abs_view`: sum of ``|.|`` over channels, clipped at the 99th percentile, in [0, 1];
* :func:`diverging_view`: signed channel sum divided by the 99th percentile of ``|.|``,
  clipped to [-1, 1];
* :func:`maxabs_view`: per pixel the channel value of largest ``|.|`` (sign kept), divided
  by the largest ``|.|``, in [-1, 1] (PathwayGrad/PRUNE).

Constant maps: a Spearman correlation is undefined when one side is constant (SciPy returns
NaN). With ``defined=True`` (default) two constant maps score 1 (identical, all-tied rankings)
and a constant map against a non-constant one scores 0 (a constant ranking carries no order);
with ``defined=False`` both cases give NaN as in SciPy.

Non-finite maps: a sample with a NaN or an infinite value gives NaN in every function here,
whatever the other map: the views turn it into an all-NaN view (never into a finite one: an
``inf`` pixel is not clipped to 1 and a NaN map is not a constant map), :func:`hog` gives an
all-NaN vector, and :func:`spearman`, :func:`ssim` and :func:`hog_spearman` give NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from xai_bench.metrics.postprocess import (
    channel_max_abs,
    clip_percentile,
    maxabs,
    minmax,
    nonfinite_maps,
    poison,
)

HOG_EPS = 1e-5  # skimage's block-normalisation epsilon


# --------------------------------------------------------------------------- views
def abs_view(attr: Tensor, q: float = 99.0) -> Tensor:
    """Adebayo's abs view ``[B, C, H, W] -> [B, 1, H, W]``: sum ``|.|`` over channels, divide by
    the ``q``-th percentile and clip to [0, 1] (a map whose percentile is 0 is only clipped)."""
    return clip_percentile(attr.abs().sum(1, keepdim=True), q)


def diverging_view(attr: Tensor, q: float = 99.0) -> Tensor:
    """Adebayo's diverging view ``[B, C, H, W] -> [B, 1, H, W]``: signed channel sum divided by
    the ``q``-th percentile of its ``|.|``, clipped to [-1, 1]."""
    return clip_percentile(attr.sum(1, keepdim=True), q)


def maxabs_view(attr: Tensor) -> Tensor:
    """PRUNE's signed view ``[B, C, H, W] -> [B, 1, H, W]`` in [-1, 1]: the channel value of
    largest magnitude per pixel, divided by the largest magnitude of the map."""
    return maxabs(channel_max_abs(attr))


def minmax_view(attr: Tensor) -> Tensor:
    """Per-sample min-max scaling to [0, 1] (constant maps become 0)."""
    return minmax(attr)


# --------------------------------------------------------------------------- Spearman
def rankdata(x: Tensor) -> Tensor:
    """Ranks ``[B, N] -> [B, N]`` (float64, 1-based) per row, ties given their average rank
    (``scipy.stats.rankdata(method='average')``). Non-finite values rank last."""
    n = x.shape[1]
    values, order = torch.sort(x, dim=1, stable=True)
    idx = torch.arange(n, device=x.device).expand_as(values)
    new = torch.ones_like(values, dtype=torch.bool)
    new[:, 1:] = values[:, 1:] != values[:, :-1]
    last = torch.ones_like(new)
    last[:, :-1] = new[:, 1:]
    first_pos = torch.where(new, idx, torch.zeros_like(idx)).cummax(1).values
    last_pos = torch.where(last, idx, torch.full_like(idx, n)).flip(1).cummin(1).values.flip(1)
    avg = (first_pos + last_pos).double() / 2.0 + 1.0
    return torch.empty_like(avg).scatter_(1, order, avg)


def _finite(a: Tensor) -> Tensor:
    return torch.isfinite(a.flatten(1)).all(1)


def spearman(a: Tensor, b: Tensor, defined: bool = True) -> Tensor:
    """Spearman rank correlation per sample of two batches ``[B, ...] -> [B]`` (float64).

    Args:
        a, b: batches of the same shape; each sample is flattened.
        defined: give constant maps a value (1 if both are constant, 0 if one is) instead of
            SciPy's NaN; see the module docstring.
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    a2, b2 = a.flatten(1), b.flatten(1)
    ra, rb = rankdata(a2), rankdata(b2)
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    va, vb = (ra * ra).sum(1), (rb * rb).sum(1)
    denom = (va * vb).sqrt()
    rho = (ra * rb).sum(1) / torch.where(denom > 0, denom, torch.ones_like(denom))
    rho = rho.clamp(-1.0, 1.0)
    const_a, const_b = va == 0, vb == 0
    if defined:
        rho = torch.where(const_a & const_b, torch.ones_like(rho), rho)
        rho = torch.where(const_a ^ const_b, torch.zeros_like(rho), rho)
    else:
        rho = torch.where(const_a | const_b, torch.full_like(rho, math.nan), rho)
    return torch.where(_finite(a) & _finite(b), rho, torch.full_like(rho, math.nan))


# --------------------------------------------------------------------------- SSIM
def _gaussian_kernel(
    sigma: float, truncate: float, dtype: torch.dtype, device: torch.device
) -> Tensor:
    radius = int(truncate * sigma + 0.5)  # scipy.ndimage's radius
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def _blur_valid(x: Tensor, k: Tensor) -> Tensor:
    """Separable Gaussian filter of ``[N, 1, H, W]`` keeping only the pixels whose window lies
    inside the image (skimage crops exactly this border before averaging)."""
    r = k.numel()
    x = F.conv2d(x, k.view(1, 1, r, 1))
    return F.conv2d(x, k.view(1, 1, 1, r))


def ssim(
    a: Tensor,
    b: Tensor,
    data_range: float = 1.0,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    use_sample_covariance: bool = True,
) -> Tensor:
    """Mean SSIM per sample ``[B, C, H, W] -> [B]`` with Gaussian weights (Wang et al. 2004).

    Matches ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=sigma,
    data_range=data_range, channel_axis=0)`` (its defaults: truncate 3.5, an 11-tap window for
    sigma 1.5, sample covariance, the window-radius border excluded, channels averaged).
    """
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"expected two [B, C, H, W] batches, got {a.shape} and {b.shape}")
    n, c, h, w = a.shape
    k = _gaussian_kernel(sigma, 3.5, a.dtype, a.device)
    win = k.numel()
    if min(h, w) < win:
        raise ValueError(f"SSIM needs maps of at least {win}x{win} pixels for sigma={sigma}")
    x, y = a.reshape(n * c, 1, h, w), b.reshape(n * c, 1, h, w)
    stats = _blur_valid(torch.cat([x, y, x * x, y * y, x * y]), k).split(n * c)
    ux, uy, uxx, uyy, uxy = stats
    cov_norm = win * win / (win * win - 1) if use_sample_covariance else 1.0
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    out = s.double().flatten(1).mean(1).view(n, c).mean(1)
    return torch.where(_finite(a) & _finite(b), out, torch.full_like(out, math.nan))


# --------------------------------------------------------------------------- HOG
def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def hog(
    x: Tensor,
    pixels_per_cell: int | Sequence[int] = 16,
    cells_per_block: int | Sequence[int] = 3,
    orientations: int = 9,
) -> Tensor:
    """HOG features ``[B, C, H, W] -> [B, F]`` as ``skimage.feature.hog`` (L2-Hys blocks).

    Batched torch version of scikit-image's algorithm: central-difference gradients (zero on
    the border rows/columns), the channel of largest gradient magnitude per pixel, unsigned
    orientations in ``orientations`` hard bins over [0, 180), cell histograms averaged over
    the cell's pixels (trailing pixels that do not fill a cell are dropped), overlapping
    blocks normalised with L2-Hys (eps 1e-5, clip 0.2), flattened as
    ``(block_row, block_col, cell_row, cell_col, orientation)``. A map with a NaN or an
    infinite value gives an all-NaN vector.
    """
    if x.dim() != 4:
        raise ValueError(f"expected a batch [B, C, H, W], got {tuple(x.shape)}")
    (cr, cc), (br, bc) = _pair(pixels_per_cell), _pair(cells_per_block)
    n, _, h, w = x.shape
    ncr, ncc = h // cr, w // cc
    if ncr - br + 1 <= 0 or ncc - bc + 1 <= 0:
        raise ValueError(
            f"maps of {h}x{w} px are too small for HOG cells of {cr}x{cc} px and blocks of "
            f"{br}x{bc} cells (need at least {br * cr}x{bc * cc} px); lower the cell size"
        )
    x = x.double()
    g_row, g_col = torch.zeros_like(x), torch.zeros_like(x)
    g_row[:, :, 1:-1, :] = x[:, :, 2:, :] - x[:, :, :-2, :]
    g_col[:, :, :, 1:-1] = x[:, :, :, 2:] - x[:, :, :, :-2]
    mag = torch.hypot(g_row, g_col)
    best = mag.argmax(1, keepdim=True)
    g_row, g_col, mag = g_row.gather(1, best), g_col.gather(1, best), mag.gather(1, best)
    angle = torch.remainder(torch.rad2deg(torch.atan2(g_row, g_col)), 180.0)
    width = 180.0 / orientations
    # bin i holds i*width <= angle < (i+1)*width (angle 180.0 after rounding falls in none)
    lower = torch.arange(orientations, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    votes = ((angle >= width * lower) & (angle < width * (lower + 1))).to(x.dtype) * mag
    cells = F.avg_pool2d(votes[:, :, : ncr * cr, : ncc * cc], (cr, cc))  # [B, O, ncr, ncc]
    blocks = cells.permute(0, 2, 3, 1).unfold(1, br, 1).unfold(2, bc, 1)  # [B,nbr,nbc,O,br,bc]
    blocks = blocks.permute(0, 1, 2, 4, 5, 3).flatten(3)  # [B, nbr, nbc, br*bc*O]
    out = blocks / (blocks.square().sum(-1, keepdim=True) + HOG_EPS**2).sqrt()
    out = out.clamp(max=0.2)
    out = out / (out.square().sum(-1, keepdim=True) + HOG_EPS**2).sqrt()
    return poison(out.reshape(n, -1), nonfinite_maps(x))


def hog_spearman(
    a: Tensor,
    b: Tensor,
    pixels_per_cell: int | Sequence[int] = 16,
    cells_per_block: int | Sequence[int] = 3,
    defined: bool = True,
) -> Tensor:
    """Spearman correlation of the HOG features of two map batches ``[B, C, H, W] -> [B]``
    (Adebayo et al. 2018; POSAGG §4). A map without gradients has an all-zero HOG vector,
    which is a constant (see :func:`spearman`)."""
    fa = hog(a, pixels_per_cell, cells_per_block)
    fb = hog(b, pixels_per_cell, cells_per_block)
    rho = spearman(fa, fb, defined=defined)
    return torch.where(_finite(a) & _finite(b), rho, torch.full_like(rho, math.nan))


# --------------------------------------------------------------------------- sanity-check metrics
#: sanity-check metric -> (view it compares, similarity of two views); see
#: :mod:`xai_bench.benchmarks.sanity_checks` for what each one is
SANITY_METRICS: dict[str, tuple[str, str]] = {
    "spearman_abs": ("abs", "spearman"),
    "spearman_signed": ("diverging", "spearman"),
    "ssim": ("abs_minmax", "ssim"),
    "hog_spearman": ("hog", "spearman"),
    "prune_spearman_abs": ("maxabs_abs", "spearman"),
    "prune_spearman_signed": ("maxabs", "spearman"),
    "prune_ssim": ("maxabs", "ssim2"),
}


def map_views(attr: Tensor, views: Sequence[str], hog_cell: int) -> dict[str, Tensor]:
    """The views of raw maps ``[B, C, H, W]`` that the sanity-check metrics compare (``hog``:
    HOG features of the abs view with cells of ``hog_cell`` px)."""
    out: dict[str, Tensor] = {}
    if {"abs", "abs_minmax", "hog"} & set(views):
        absv = abs_view(attr)
        out.update(abs=absv, abs_minmax=minmax_view(absv))
    if "hog" in views:
        out["hog"] = hog(out["abs"], hog_cell)
    if "diverging" in views:
        out["diverging"] = diverging_view(attr)
    if {"maxabs", "maxabs_abs"} & set(views):
        out["maxabs"] = maxabs_view(attr)
        out["maxabs_abs"] = out["maxabs"].abs()
    return {k: v for k, v in out.items() if k in views}


def compare_views(
    a: dict[str, Tensor], b: dict[str, Tensor], metric: str, defined: bool, sigma: float = 1.5
) -> Tensor:
    """One sanity-check metric per sample ``[B]`` between two view dicts of :func:`map_views`
    (``defined``: see :func:`spearman`; ``sigma``: the SSIM window's Gaussian sigma in px)."""
    view, kind = SANITY_METRICS[metric]
    x, y = a[view], b[view].to(a[view].device)
    if kind == "spearman":
        return spearman(x, y, defined=defined)
    return ssim(x, y, data_range=2.0 if kind == "ssim2" else 1.0, sigma=sigma)
