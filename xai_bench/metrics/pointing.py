"""Pointing-game hit tests (Zhang et al., EBP 2016; TorchRay's protocol), batched.

Conventions shared by every function here:

* a point is ``(u, v)`` = (column, row) in pixel-index coordinates of the original image, as
  TorchRay's ``_saliency_to_point``; it may be fractional (the centre baseline);
* a pixel ``(col, row)`` is within the tolerance of the point when
  ``(col - u)^2 + (row - v)^2 < tolerance^2`` (strict, Euclidean), as TorchRay's
  ``PointingGame.evaluate``; a hit is any ground-truth pixel within the tolerance;
* a box ``x0, y0, x1, y1`` (x1/y1 exclusive, possibly fractional) covers the pixels it
  overlaps: columns ``floor(x0) .. ceil(x1) - 1`` and rows ``floor(y0) .. ceil(y1) - 1``,
  clipped to the image. For VOC's integer boxes this is TorchRay's ``voc_as_mask``.

The batch-level functions take a collated sample dict (:func:`xai_bench.data.base.
collate_samples`: ``box_labels``, ``boxes``, ``difficult``, ``masks``, ``orig_size`` as lists).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from xai_bench.metrics.postprocess import Postprocess

CONSTANT_RTOL = 1e-6  # a map whose values span less than this x its largest |value| is constant


def argmax_points(maps: Tensor, rtol: float = CONSTANT_RTOL) -> tuple[Tensor, Tensor]:
    """The maximum of each map as a point, and whether the map was degenerate.

    Args:
        maps: ``[N, H, W]`` (any float dtype).
        rtol: a map is constant when ``max - min <= rtol * max |value|`` over its finite
            values; the default treats float32 rounding noise (e.g. the spatially uniform
            gradient at the last layer of a global-average-pooled network) as constant.

    Returns:
        ``points`` float ``[N, 2]`` as ``(u, v)``: the **first** maximum in row-major order
        (``torch.argmax``), i.e. the top-most, then left-most, of tied maxima; and
        ``degenerate`` bool ``[N]``: the map has no finite value or is constant. Non-finite
        values never win; a degenerate map points at ``(0, 0)``.
    """
    flat = maps.flatten(1)
    finite = torch.isfinite(flat)
    clean = torch.where(finite, flat, -math.inf)
    hi = clean.amax(1)
    lo = torch.where(finite, flat, math.inf).amin(1)
    any_finite = finite.any(1)
    span = torch.where(any_finite, hi - lo, torch.zeros_like(hi))
    top = torch.where(any_finite, torch.maximum(hi.abs(), lo.abs()), torch.zeros_like(hi))
    degenerate = ~any_finite | (span <= rtol * top)
    idx = torch.where(degenerate, torch.zeros_like(hi, dtype=torch.long), clean.argmax(1))
    w = maps.shape[-1]
    points = torch.stack([idx % w, torch.div(idx, w, rounding_mode="floor")], 1)
    return points.to(torch.float32), degenerate


def box_hits(points: Tensor, boxes: Tensor, sizes: Tensor, tolerance: float) -> Tensor:
    """Hit test of each point against its own box, analytically (no mask is drawn).

    Args:
        points: ``[N, 2]`` as ``(u, v)``.
        boxes: ``[N, 4]`` as ``x0, y0, x1, y1`` (x1/y1 exclusive) in original pixels.
        sizes: ``[N, 2]`` original ``(H, W)`` of each box's image (boxes are clipped to it).
        tolerance: radius in pixels (strict).

    Returns:
        bool ``[N]``: the box has a pixel at distance ``< tolerance`` from the point (empty
        boxes never hit).
    """
    b = boxes.to(torch.float64)
    h, w = sizes[:, 0].to(torch.float64), sizes[:, 1].to(torch.float64)
    c0 = torch.floor(b[:, 0]).clamp(min=0)
    r0 = torch.floor(b[:, 1]).clamp(min=0)
    c1 = torch.minimum(torch.ceil(b[:, 2]) - 1, w - 1)  # last covered column
    r1 = torch.minimum(torch.ceil(b[:, 3]) - 1, h - 1)
    u, v = points[:, 0].to(torch.float64), points[:, 1].to(torch.float64)
    du = (c0 - u).clamp(min=0) + (u - c1).clamp(min=0)
    dv = (r0 - v).clamp(min=0) + (v - r1).clamp(min=0)
    nonempty = (c1 >= c0) & (r1 >= r0)
    return nonempty & (du * du + dv * dv < float(tolerance) ** 2)


def mask_hits(points: Tensor, masks: Tensor, tolerance: float) -> Tensor:
    """Hit test of each point against its own mask, looking only at a window around the point.

    Args:
        points: ``[N, 2]`` as ``(u, v)``, on the masks' device.
        masks: bool ``[N, H, W]``.
        tolerance: radius in pixels (strict).

    Returns:
        bool ``[N]``: some mask pixel lies at distance ``< tolerance`` from the point.
    """
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros(0, dtype=torch.bool, device=masks.device)
    reach = math.ceil(tolerance) + 1
    offsets = torch.arange(-reach, reach + 1, device=masks.device)
    u, v = points[:, 0].to(torch.float64), points[:, 1].to(torch.float64)
    rows = torch.floor(v).long()[:, None] + offsets  # [N, S]
    cols = torch.floor(u).long()[:, None] + offsets
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    window = masks[
        torch.arange(n, device=masks.device)[:, None, None],
        rows.clamp(0, h - 1)[:, :, None],
        cols.clamp(0, w - 1)[:, None, :],
    ]  # [N, S, S]
    d2 = (rows - v[:, None]).pow(2)[:, :, None] + (cols - u[:, None]).pow(2)[:, None, :]
    return (window & inside & (d2 < float(tolerance) ** 2)).flatten(1).any(1)


def boxes_to_masks(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Rasterise boxes ``[M, 4]`` into bool masks ``[M, H, W]`` with the pixel convention above."""
    h, w = size
    rows = torch.arange(h, device=boxes.device, dtype=torch.float64)
    cols = torch.arange(w, device=boxes.device, dtype=torch.float64)
    b = boxes.to(torch.float64)
    in_r = (rows >= torch.floor(b[:, 1:2])) & (rows <= torch.ceil(b[:, 3:4]) - 1)
    in_c = (cols >= torch.floor(b[:, 0:1])) & (cols <= torch.ceil(b[:, 2:3]) - 1)
    return in_r[:, :, None] & in_c[:, None, :]


def gaussian_smooth(maps: Tensor, sigma: float) -> Tensor:
    """Gaussian blur ``[N, 1, H, W]`` with standard deviation ``sigma`` pixels.

    As TorchRay's ``imsmooth``: separable kernel over ``[-ceil(4 sigma), ceil(4 sigma)]``,
    normalised to sum 1, replicate padding. ``sigma <= 0`` returns the maps unchanged.
    """
    if sigma <= 0:
        return maps
    radius = math.ceil(4 * sigma)
    t = torch.arange(-radius, radius + 1, device=maps.device, dtype=maps.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = F.pad(maps, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return F.conv2d(x, kernel.view(1, 1, -1, 1))


def class_accuracies(
    hits: Tensor, classes: Tensor, num_classes: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-class hits, pair counts and accuracy ``hits / pairs`` (NaN where a class has none,
    or has a NaN pair: a pair whose map held a non-finite value is neither hit nor miss).

    Args:
        hits: bool or 0/1 ``[P]``, one per (image, class) pair; NaN for an undefined pair.
        classes: int64 ``[P]``.
        num_classes: number of classes ``K``.

    Returns:
        ``hits`` ``[K]``, ``counts`` ``[K]`` (int64) and ``accuracy`` ``[K]`` (float64).
    """
    counts = torch.bincount(classes, minlength=num_classes)
    hit = torch.bincount(classes, weights=hits.to(torch.float64), minlength=num_classes)
    hit = hit.double()  # bincount of no pair is int64
    acc = torch.where(counts > 0, hit / counts.clamp(min=1), torch.full_like(hit, math.nan))
    return hit.nan_to_num(0.0).round().long(), counts, acc


CLASS_MEANS = ("present", "all")


def mean_class_accuracy(acc: Tensor, counts: Tensor, over: str = "present") -> float:
    """TorchRay's ``PointingGame.accuracy``: the mean over classes of ``hits / (hits + misses)``.

    Args:
        acc: per-class accuracy ``[K]`` (:func:`class_accuracies`; NaN where a class has no
            pair or a NaN pair).
        counts: pairs per class ``[K]``.
        over: ``present``: the classes with at least one pair; ``all``: all ``K`` classes, a
            class without pairs counting 0 (TorchRay's ``hits / (hits + misses).clamp(min=1)``).
            The two agree whenever every class has a pair (full VOC07 test, COCO val2014).

    Returns:
        The mean (NaN if a counted class is NaN, or if no class has a pair with ``present``).
    """
    if over not in CLASS_MEANS:
        raise ValueError(f"over must be one of {CLASS_MEANS}, got {over!r}")
    present = counts > 0
    if over == "all":
        return float(torch.where(present, acc, torch.zeros_like(acc)).mean())
    return float(acc[present].mean()) if bool(present.any()) else math.nan


@dataclass
class Pairs:
    """The evaluated (image, class) pairs of a batch and the ground-truth instances of each.

    Attributes:
        image: position of each pair's image in the batch ``[P]``.
        cls: class of each pair ``[P]``.
        inst: positions of the counted instances in the batch's concatenated boxes ``[I]``.
        inst_pair: the pair each counted instance belongs to ``[I]``.
        n_inst: number of instances in the batch (counted or not).
    """

    image: Tensor
    cls: Tensor
    inst: Tensor
    inst_pair: Tensor
    n_inst: int


def build_pairs(
    sample: Mapping[str, Any],
    num_classes: int,
    exclude_difficult: bool = False,
    keep: Tensor | None = None,
) -> Pairs:
    """Pairs of a collated batch (CPU), as TorchRay: one per class with a box in the image; a
    class whose boxes are all difficult is skipped; difficult boxes count towards the ground
    truth unless ``exclude_difficult``. ``keep`` ``[B, K]`` (subset flags) drops pairs."""
    labels = [torch.as_tensor(v).long().reshape(-1) for v in sample["box_labels"]]
    counts = torch.tensor([len(v) for v in labels], dtype=torch.long)
    inst_img = torch.repeat_interleave(torch.arange(len(labels)), counts)
    cls = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    if "difficult" in sample:
        difficult = torch.cat([torch.as_tensor(d).bool().reshape(-1) for d in sample["difficult"]])
    else:
        difficult = torch.zeros(len(cls), dtype=torch.bool)
    keys, inverse = torch.unique(inst_img * num_classes + cls, return_inverse=True)
    easy = torch.zeros(len(keys), dtype=torch.long).index_add_(0, inverse, (~difficult).long())
    ok = easy > 0
    if keep is not None:
        ok &= keep[keys // num_classes, keys % num_classes]
    pair_id = torch.cumsum(ok.long(), 0) - 1
    counted = ok[inverse] & ~(difficult & exclude_difficult)
    inst = counted.nonzero().flatten()
    return Pairs(
        image=keys[ok] // num_classes,
        cls=keys[ok] % num_classes,
        inst=inst,
        inst_pair=pair_id[inverse[inst]],
        n_inst=len(cls),
    )


def orig_sizes(sample: Mapping[str, Any], x: Tensor) -> Tensor:
    """Original ``(H0, W0)`` per image ``[B, 2]`` (int64, on ``x``'s device); the input size for
    datasets without ``orig_size``."""
    if "orig_size" in sample:
        sizes = torch.tensor([list(s) for s in sample["orig_size"]], dtype=torch.long)
    else:
        sizes = torch.tensor([list(x.shape[-2:])] * len(x), dtype=torch.long)
    return sizes.to(x.device)


def maps_to_points(
    maps: Tensor, sizes: Tensor, smooth_sigma: float | None = None
) -> tuple[Tensor, Tensor]:
    """Maps at input size -> argmax points at each image's original size.

    Args:
        maps: ``[N, h, w]``.
        sizes: original ``(H0, W0)`` per map ``[N, 2]`` (int64).
        smooth_sigma: Gaussian blur after resizing, sigma = ``smooth_sigma * max(H0, W0)``.

    Returns:
        ``points`` ``[N, 2]`` (:func:`argmax_points` of the bilinearly resized maps, one resize
        per distinct size) and ``degenerate`` ``[N]`` (a constant map at input size: the point
        is ``(0, 0)``). A map with a NaN or an infinite value has no point: ``(NaN, NaN)``,
        not degenerate (its pairs score NaN, never a hit or a miss).
    """
    m = maps.float()
    nonfinite = ~torch.isfinite(m.flatten(1)).all(1)
    _, degenerate = argmax_points(m)
    finite = torch.isfinite(m)
    fill = torch.where(finite, m, math.inf).flatten(1).amin(1)
    fill = torch.where(torch.isfinite(fill), fill, torch.zeros_like(fill))
    m = torch.where(finite, m, fill.view(-1, 1, 1)).unsqueeze(1)
    points = torch.zeros(len(m), 2, device=m.device)
    uniq, group = torch.unique(sizes, dim=0, return_inverse=True)
    for g, (h0, w0) in enumerate(uniq.tolist()):
        idx = (group == g).nonzero().flatten()
        r = m[idx]
        if (h0, w0) != tuple(r.shape[-2:]):
            r = F.interpolate(r, size=(h0, w0), mode="bilinear", align_corners=False)
        if smooth_sigma:
            r = gaussian_smooth(r, smooth_sigma * max(h0, w0))
        points[idx] = argmax_points(r[:, 0])[0]
    points[degenerate] = 0.0
    points[nonfinite] = math.nan
    return points, degenerate & ~nonfinite


def map_points(
    attr: Tensor, sizes: Tensor, postprocess: Postprocess, smooth_sigma: float | None = None
) -> tuple[Tensor, Tensor]:
    """Raw maps ``[N, C, h, w]`` -> points and degenerate flags (:func:`maps_to_points`) after
    ``postprocess``; maps left with several channels are averaged over channels."""
    m = postprocess(attr)
    m = m.mean(1) if m.shape[1] > 1 else m[:, 0]
    return maps_to_points(m, sizes, smooth_sigma)


def pair_hits(
    points: Tensor,
    pairs: Pairs,
    sample: Mapping[str, Any],
    sizes: Tensor,
    tolerance: float,
    gt: str = "boxes",
) -> Tensor:
    """Hit of each pair ``[P]``: any counted instance of its class within the tolerance.

    Args:
        points: ``[P]`` points ``(u, v)``, one per pair.
        pairs: the batch's :class:`Pairs`.
        sample: the collated sample dict.
        sizes: original ``(H0, W0)`` per image of the batch ``[B, 2]``.
        tolerance: radius in pixels (strict).
        gt: ``boxes`` (analytic box test) or ``masks`` (instance masks, one stack per size).
    """
    dev = points.device
    inst = pairs.inst.to(dev)
    inst_pair = pairs.inst_pair.to(dev)
    counts = torch.tensor([len(b) for b in sample["box_labels"]], dtype=torch.long)
    inst_img = torch.repeat_interleave(torch.arange(len(counts)), counts).to(dev)
    if gt == "boxes":
        boxes = torch.cat([torch.as_tensor(b).reshape(-1, 4) for b in sample["boxes"]]).to(dev)
        hit = box_hits(points[inst_pair], boxes[inst], sizes[inst_img[inst]], tolerance)
    else:
        all_points = torch.zeros(pairs.n_inst, 2, device=dev)
        all_points[inst] = points[inst_pair]
        all_hits = torch.zeros(pairs.n_inst, dtype=torch.bool, device=dev)
        masks = sample["masks"]
        offsets = [0, *torch.cumsum(torch.tensor([len(m) for m in masks]), 0).tolist()]
        uniq, group = torch.unique(sizes.cpu(), dim=0, return_inverse=True)
        for g in range(len(uniq)):  # one stack of masks per distinct original size
            images = (group == g).nonzero().flatten().tolist()
            pos = torch.cat([torch.arange(offsets[i], offsets[i + 1]) for i in images]).to(dev)
            if len(pos):
                stack = torch.cat([torch.as_tensor(masks[i]) for i in images]).to(dev).bool()
                all_hits[pos] = mask_hits(all_points[pos], stack, tolerance)
        hit = all_hits[inst]
    total = torch.zeros(len(pairs.cls), dtype=torch.long, device=dev)
    return total.index_add_(0, inst_pair, hit.long()).gt(0)


def score_pairs(
    points: Tensor,
    pairs: Pairs,
    sample: Mapping[str, Any],
    sizes: Tensor,
    tolerance: float,
    gt: str = "boxes",
) -> Tensor:
    """:func:`pair_hits` as float64 ``[P]``: 1 (hit), 0 (miss), or NaN for a pair whose point
    is NaN (its map held a non-finite value: neither hit nor miss)."""
    nonfinite = points.isnan().any(1)
    hits = pair_hits(points.nan_to_num(0.0), pairs, sample, sizes, tolerance, gt)
    return hits.double().masked_fill(nonfinite, float("nan"))
