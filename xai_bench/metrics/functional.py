"""Score your own maps: one config-free function per evaluation benchmark (tensors in, scores out).

No Hydra config and no run context: pass the maps (and, where the metric needs them, the model,
its inputs and the explained classes) and get the scores per image. The defaults are the
benchmarks' defaults, and each function is the computation its benchmark runs on every batch
(the benchmarks call these functions or the same helpers), so the same maps and inputs give the
benchmark's numbers (``tests/test_functional_metrics.py`` checks both).

============================  =========================================  ========================
function                      benchmark                                  paper
============================  =========================================  ========================
:func:`pointing_game`         ``pointing_game`` (``restricted=True``:    Zhang et al. 2016/2018
                              ``pointing_game_restricted``)              (TorchRay's protocol)
:func:`deletion_insertion`    ``deletion_insertion``                     Petsiuk et al. 2018
:func:`pixel_perturbation`    ``pixel_perturbation``                     Samek et al. 2017, OPPSD
:func:`sanity_similarity`     ``sanity_checks`` (one stage's metric)     Adebayo et al. 2018
:func:`class_sensitivity`     ``class_sensitivity``                      Rebuffi et al. 2020
:func:`input_invariance`      ``input_invariance`` (one shift)           Kindermans et al. 2019
============================  =========================================  ========================

Conventions: ``maps`` are raw attributions ``[B, C, H, W]`` (or ``[B, H, W]``), one per image,
at the input's size; any batch size, on any device (the results are on the maps' or the
inputs' device unless stated). Sizes that the papers fix in pixels of 224 px inputs (the
pointing tolerance, HOG cells, the SSIM window, the blur, the deletion step) are, when left
``None``, the paper's value scaled to the maps' shorter side, as the benchmarks' ``auto``
(:mod:`xai_bench.utils.resolution`). A map with a NaN or an infinite value scores NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from xai_bench.metrics.aggregate import check_constant_maps
from xai_bench.metrics.invariance import TOLERANCE, compare_maps
from xai_bench.metrics.perturbation import (
    FILLS,
    ORDERS,
    SCORES,
    batch_saliency,
    check_choice,
    fill_values,
    fraction_counts,
    mask_nonfinite,
    order_rank,
    perturbation_scores,
    pixel_order,
    preset_blur,
    relative_change,
    step_counts,
    step_size,
    target_score,
    trapezoid_auc,
)
from xai_bench.metrics.pointing import (
    build_pairs,
    class_accuracies,
    map_points,
    mean_class_accuracy,
    orig_sizes,
    score_pairs,
)
from xai_bench.metrics.postprocess import Postprocess
from xai_bench.metrics.similarity import (
    SANITY_METRICS,
    compare_views,
    hog_spearman,
    map_views,
    spearman,
)
from xai_bench.utils.resolution import (
    AUTO,
    HOG_CELL,
    POINTING_TOLERANCE,
    SSIM_SIGMA,
    resolve_float,
    resolve_px,
)

#: postprocess steps, as in the benchmark configs (names or ``{name: argument}``), or a pipeline
Steps = Sequence[str | Mapping[str, Any]] | Postprocess
CLASS_METRICS = ("spearman", "hog_spearman")


def pipeline(steps: Steps) -> Postprocess:
    """``steps`` as a :class:`~xai_bench.metrics.postprocess.Postprocess` pipeline."""
    return steps if isinstance(steps, Postprocess) else Postprocess(list(steps))


def as_maps(maps: Tensor) -> Tensor:
    """Maps ``[B, H, W]`` or ``[B, C, H, W]`` as ``[B, C, H, W]``."""
    if maps.dim() == 3:
        return maps.unsqueeze(1)
    if maps.dim() != 4:
        raise ValueError(f"expected maps [B, C, H, W] or [B, H, W], got {tuple(maps.shape)}")
    return maps


def _keys(keys: Tensor | None, n: int) -> Tensor:
    return torch.arange(n) if keys is None else torch.as_tensor(keys).long().reshape(-1)


def _mean_std(
    x: Tensor, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[Sequence[float], Sequence[float]]:
    c = x.shape[1]
    return (0.0,) * c if mean is None else mean, (1.0,) * c if std is None else std


# --------------------------------------------------------------------------- pointing game
@dataclass
class PointingScores:
    """What :func:`pointing_game` returns.

    Attributes:
        hits: per (map, class) pair ``[P]`` float64 on the maps' device: 1 hit, 0 miss, NaN
            (non-finite map).
        image: the row of ``maps`` of each pair ``[P]`` (int64, CPU).
        cls: the class of each pair ``[P]`` (int64, CPU).
        points: each map's maximum ``(u, v)`` (column, row) in original-image pixels
            ``[B, 2]``; ``(0, 0)`` for a constant map, NaN for a non-finite one.
        degenerate: the map is constant ``[B]`` (its pairs count as misses).
        accuracy: TorchRay's mean over classes of ``hits / pairs`` (the headline).
        hit_rate: the mean over pairs.
        tolerance: the hit radius used, in original-image pixels.
    """

    hits: Tensor
    image: Tensor
    cls: Tensor
    points: Tensor
    degenerate: Tensor
    accuracy: float
    hit_rate: float
    tolerance: float


def _per_map(values: Tensor | Sequence[Tensor], n: int, what: str, width: int) -> list[Tensor]:
    """Per-map ground truth as a list of ``[M_i, width]`` CPU tensors."""
    if isinstance(values, Tensor):
        values = list(values.reshape(n, -1, width)) if n else []
    out = [torch.as_tensor(v).detach().cpu().reshape(-1, width) for v in values]
    if len(out) != n:
        raise ValueError(f"{what}: {len(out)} entries for {n} maps")
    return out


def pointing_game(
    maps: Tensor,
    boxes: Tensor | Sequence[Tensor],
    targets: Tensor | None = None,
    box_labels: Sequence[Tensor] | None = None,
    *,
    restricted: bool = False,
    tolerance: float | None = None,
    sizes: Tensor | Sequence[Sequence[int]] | None = None,
    difficult: Sequence[Tensor] | None = None,
    exclude_difficult: bool = False,
    masks: Sequence[Tensor] | None = None,
    smooth_sigma: float | None = None,
    postprocess: Steps = ("channel_max_abs", "abs"),
    num_classes: int | None = None,
    class_mean: str = "present",
) -> PointingScores:
    """Pointing game (Zhang et al., "Top-down neural attention by excitation backprop", ECCV
    2016 / IJCV 2018), with TorchRay's protocol (Fong et al. 2019), as ``benchmark=
    pointing_game``.

    Each map is collapsed to one channel (``postprocess``, then the channel mean), resized to
    its image's original size (bilinear), optionally blurred, and its first maximum is the
    point. A pair hits when a ground-truth pixel of its class (union of boxes, or of
    ``masks``) lies at Euclidean distance ``< tolerance``.

    Args:
        maps: ``[B, C, H, W]`` or ``[B, H, W]``, at the model's input size.
        boxes: per map, the image's boxes ``[M_i, 4]`` as ``x0, y0, x1, y1`` (x1/y1
            exclusive) in original-image pixels; a tensor ``[B, 4]`` is one box per map.
        targets: the class each map explains ``[B]``; ``None``: class 0 (every box belongs to
            the explained object when ``box_labels`` is ``None``).
        box_labels: per map, the class of each box ``[M_i]``; ``None``: every box is of the
            map's target.
        restricted: the restricted game of POSAGG (Khakzar et al. 2020, positive
            aggregation): each map (of the image's top-scoring class) is scored against every
            class in ``box_labels``; no targets.
        tolerance: hit radius in original-image pixels (strict); ``None``: TorchRay's 15 px at
            224 px maps, scaled to the maps' shorter side (the benchmark's ``auto``).
        sizes: original ``(H, W)`` per image ``[B, 2]``; ``None``: the maps' size.
        difficult: per map, VOC difficult flags ``[M_i]`` (a class with only difficult boxes
            is skipped; difficult boxes count unless ``exclude_difficult``).
        exclude_difficult: drop difficult boxes from the ground truth.
        masks: per map, instance masks ``[M_i, H0, W0]`` in the order of the boxes: the hit
            test uses them instead of the boxes.
        smooth_sigma: Gaussian blur of the resized map, sigma as a fraction of
            ``max(H0, W0)`` (TorchRay: 0.02 for gradients); ``None``: no blur.
        postprocess: steps that collapse a map (default: TorchRay's max over channels of
            ``|.|``).
        num_classes: classes for ``class_mean='all'`` (default: the largest class + 1).
        class_mean: ``present`` (classes with pairs) or ``all`` (TorchRay: the others count 0).

    Returns:
        :class:`PointingScores`: the hit of each (map, class) pair (one per map and class
        present: a map whose target has no box forms no pair), the accuracy and hit rate.
    """
    maps = as_maps(maps)
    n = len(maps)
    if restricted and targets is not None:
        raise ValueError("the restricted game scores each map against every class: no targets")
    if box_labels is not None and targets is None and not restricted:
        raise ValueError("with box_labels, give the class each map explains (targets)")
    box_list = _per_map(boxes, n, "boxes", 4)
    t = torch.zeros(n, dtype=torch.long) if targets is None else torch.as_tensor(targets)
    t = t.detach().long().reshape(-1).cpu()
    if box_labels is None:
        labels = [torch.full((len(b),), int(c), dtype=torch.long) for b, c in zip(box_list, t)]
    else:
        labels = [v.long().reshape(-1) for v in _per_map(box_labels, n, "box_labels", 1)]
    if any(len(v) != len(b) for v, b in zip(labels, box_list)):
        raise ValueError("box_labels: one class per box")
    sample: dict[str, Any] = {"boxes": box_list, "box_labels": labels}
    if difficult is not None:
        sample["difficult"] = [v.bool().reshape(-1) for v in _per_map(difficult, n, "difficult", 1)]
    if masks is not None:
        sample["masks"] = [torch.as_tensor(m).bool() for m in masks]
    if sizes is not None:
        sample["orig_size"] = [tuple(int(v) for v in s) for s in sizes]
    top = max([int(t.max()) if n else 0, *(int(v.max()) for v in labels if len(v))])
    k = top + 1 if num_classes is None else int(num_classes)
    keep = None
    if not restricted:
        keep = torch.zeros(n, k, dtype=torch.bool)
        keep[torch.arange(n), t] = True
    pairs = build_pairs(sample, k, exclude_difficult, keep)
    size = orig_sizes(sample, maps)
    side = min(maps.shape[-2:])
    tol = resolve_float(AUTO if tolerance is None else tolerance, POINTING_TOLERANCE, side)
    points, degenerate = map_points(maps, size, pipeline(postprocess), smooth_sigma)
    gt = "boxes" if masks is None else "masks"
    hits = score_pairs(points[pairs.image.to(maps.device)], pairs, sample, size, tol, gt)
    _, counts, acc = class_accuracies(hits.cpu(), pairs.cls, k)
    return PointingScores(
        hits=hits,
        image=pairs.image,
        cls=pairs.cls,
        points=points,
        degenerate=degenerate,
        accuracy=mean_class_accuracy(acc, counts, class_mean),
        hit_rate=float(hits.mean()) if len(hits) else math.nan,
        tolerance=tol,
    )


# --------------------------------------------------------------------------- perturbation curves
@dataclass
class DeletionInsertionScores:
    """What :func:`deletion_insertion` returns (``[B, S]`` curves, ``[B]`` per image).

    Attributes:
        deletion: target score after ``n_pixels[s]`` pixels deleted ``[B, S]``.
        insertion: target score after ``n_pixels[s]`` pixels inserted ``[B, S]``.
        n_pixels: pixels changed at each point ``[S]`` (CPU).
        deletion_auc: trapezoid AUC on [0, 1] of the deletion curve (lower is better).
        insertion_auc: that of the insertion curve (higher is better).
        overall: ``insertion_auc - deletion_auc`` (Group-CAM).
        nonfinite: the map held a NaN or an infinite value ``[B]`` (its values are NaN).
    """

    deletion: Tensor
    insertion: Tensor
    n_pixels: Tensor
    deletion_auc: Tensor
    insertion_auc: Tensor
    overall: Tensor
    nonfinite: Tensor


def deletion_insertion(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    maps: Tensor,
    *,
    step: int | None = None,
    deletion_fill: str = "dataset_mean",
    insertion_fill: str = "blur",
    blur: str = "gcam",
    blur_kernel_size: int | str | None = None,
    blur_sigma: float | str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    score: str = "softmax",
    multilabel: bool = False,
    postprocess: Steps = ("channel_mean", "abs"),
    tie_break: str = "random",
    keys: Tensor | None = None,
    seed: int = 0,
    internal_batch_size: int | None = 256,
) -> DeletionInsertionScores:
    """Deletion and insertion (Petsiuk et al., "RISE: Randomized input sampling for
    explanation of black-box models", BMVC 2018), with Group-CAM's defaults, as
    ``benchmark=deletion_insertion``.

    Deletion replaces the most salient pixels, ``step`` at a time (all channels together), by
    ``deletion_fill``; insertion starts from ``insertion_fill`` and puts the original pixels
    back in the same order. After each step (``ceil(N / step) + 1`` points) the target's score
    is recorded; each curve's AUC is the trapezoid on [0, 1].

    Args:
        model: the classifier, in eval mode (it is only called, under ``no_grad``).
        x: its (normalised) inputs ``[B, C, H, W]``.
        target: the class scored per image ``[B]`` (the benchmark: the predicted class).
        maps: raw maps ``[B, C', H, W]`` or ``[B, H, W]`` at the inputs' size.
        step: pixels per step; ``None``: 448 px at 224 px inputs, scaled by ``H W / 224**2``.
        deletion_fill: ``dataset_mean`` (zeros in normalised space), ``image_mean``, ``zero``
            (black: needs ``mean``/``std``) or ``blur``.
        insertion_fill: the start image of insertion (same choices; default ``blur``).
        blur: blur preset, ``gcam`` (51 px, sigma 50, reflect) or ``rise`` (11 px, sigma 5).
        blur_kernel_size: kernel in px; ``None``: the preset's at 224 px, scaled to the input.
        blur_sigma: sigma in px; ``None``: the preset's at 224 px, scaled.
        mean: the normalisation's mean per channel (``None``: 0, inputs not normalised).
        std: its standard deviation per channel (``None``: 1).
        score: ``softmax`` (sigmoid with ``multilabel``) or ``logit``.
        multilabel: the model is multi-label.
        postprocess: steps that collapse a map to one value per pixel (left channels averaged).
        tie_break: ``random`` (seeded per image by ``keys``) or ``index`` (RISE's order).
        keys: one int per image for the random tie-break (the benchmark: the dataset index);
            ``None``: ``0 .. B-1``.
        seed: seed of the random tie-break (the benchmark: the run's seed).
        internal_batch_size: perturbed images per forward pass (``None``: all at once).
    """
    check_choice(deletion_fill, FILLS, "deletion_fill")
    check_choice(insertion_fill, FILLS, "insertion_fill")
    check_choice(score, SCORES, "score")
    saliency, nonfinite = batch_saliency(as_maps(maps).to(x.device), x, pipeline(postprocess))
    order = pixel_order(saliency, True, tie_break, keys=_keys(keys, len(x)), seed=seed)
    rank = order_rank(order)
    n_pixels = rank.shape[1]
    counts = step_counts(n_pixels, step_size(n_pixels) if step is None else int(step))
    mean, std = _mean_std(x, mean, std)
    blurring = preset_blur(blur, blur_kernel_size, blur_sigma, min(x.shape[-2:]))
    pairs = {
        "deletion": (x, fill_values(x, deletion_fill, mean, std, *blurring)),
        "insertion": (fill_values(x, insertion_fill, mean, std, *blurring), x),
    }
    target = target.to(x.device)
    curves = {}
    for curve, (base, substitute) in pairs.items():
        scores = perturbation_scores(
            model, base, substitute, rank, counts, target, score, multilabel, internal_batch_size
        )
        curves[curve] = mask_nonfinite(scores, nonfinite)
    deletion_auc = trapezoid_auc(curves["deletion"])
    insertion_auc = trapezoid_auc(curves["insertion"])
    return DeletionInsertionScores(
        deletion=curves["deletion"],
        insertion=curves["insertion"],
        n_pixels=counts,
        deletion_auc=deletion_auc,
        insertion_auc=insertion_auc,
        overall=insertion_auc - deletion_auc,
        nonfinite=nonfinite,
    )


@dataclass
class PixelPerturbationScores:
    """What :func:`pixel_perturbation` returns.

    Attributes:
        change: ``|y' - y| / |y|`` per image and fraction ``[B, F]`` (NaN where ``y = 0``).
        auc: trapezoid area of ``change`` over the fractions, divided by their span ``[B]``
            (the change itself for one fraction); lower is better for ``least_first``.
        fractions: the fractions, sorted.
        n_pixels: pixels removed per fraction ``[F]`` (CPU).
        nonfinite: the map held a NaN or an infinite value ``[B]`` (its values are NaN).
    """

    change: Tensor
    auc: Tensor
    fractions: list[float]
    n_pixels: Tensor
    nonfinite: Tensor


def pixel_perturbation(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    maps: Tensor,
    *,
    fractions: Sequence[float] = (0.001, 0.01, 0.03, 0.05, 0.1),
    order: str = "least_first",
    fill: str = "image_mean",
    output: str = "logit",
    logits: Tensor | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    multilabel: bool = False,
    postprocess: Steps = ("channel_mean", "abs"),
    tie_break: str = "random",
    blur_kernel_size: int | str | None = None,
    blur_sigma: float | str | None = None,
    keys: Tensor | None = None,
    seed: int = 0,
    internal_batch_size: int | None = 256,
) -> PixelPerturbationScores:
    """Pixel perturbation, remove least salient first (Samek et al., "Evaluating the
    visualization of what a deep neural network has learned", IEEE TNNLS 2017; FullGrad's and
    OPPSD's variant), as ``benchmark=pixel_perturbation``.

    The ``k = max(1, int(N p))`` least salient pixels (all channels together) are replaced by
    ``fill`` and the target output is compared with the clean one, ``|y' - y| / |y|``, for each
    fraction ``p``. A faithful map puts unimportant pixels first, so lower is better.

    Args:
        model: the classifier, in eval mode (only called, under ``no_grad``).
        x: its (normalised) inputs ``[B, C, H, W]``.
        target: the class measured per image ``[B]``.
        maps: raw maps ``[B, C', H, W]`` or ``[B, H, W]`` at the inputs' size.
        fractions: shares of pixels removed, in (0, 1].
        order: ``least_first`` (spec) or ``most_first``.
        fill: ``image_mean`` (OPPSD), ``dataset_mean`` (zeros), ``zero`` (black: needs
            ``mean``/``std``) or ``blur`` (Group-CAM's 51 px / sigma 50 at 224 px, scaled).
        output: ``logit`` or ``softmax`` (sigmoid with ``multilabel``).
        logits: the model's clean logits on ``x`` ``[B, K]`` (``None``: computed).
        mean: the normalisation's mean per channel (``None``: 0).
        std: its standard deviation per channel (``None``: 1).
        multilabel: the model is multi-label.
        postprocess: steps that collapse a map to one value per pixel (OPPSD: channel mean,
            abs).
        tie_break: ``random`` (seeded per image by ``keys``) or ``index``.
        blur_kernel_size: the ``blur`` fill's kernel in px (``None``: scaled preset).
        blur_sigma: its sigma in px (``None``: scaled preset).
        keys: one int per image for the random tie-break (``None``: ``0 .. B-1``).
        seed: seed of the random tie-break.
        internal_batch_size: perturbed images per forward pass (``None``: all at once).
    """
    check_choice(order, ORDERS, "order")
    check_choice(fill, FILLS, "fill")
    check_choice(output, SCORES, "output")
    ps = sorted(float(f) for f in fractions)
    saliency, nonfinite = batch_saliency(as_maps(maps).to(x.device), x, pipeline(postprocess))
    ranked = pixel_order(saliency, order == "most_first", tie_break, _keys(keys, len(x)), seed)
    counts = fraction_counts(ranked.shape[1], ps)
    k, sigma, _ = preset_blur("gcam", blur_kernel_size, blur_sigma, min(x.shape[-2:]))
    mean, std = _mean_std(x, mean, std)
    substitute = fill_values(x, fill, mean, std, k, sigma)
    target = target.to(x.device)
    if logits is None:
        with torch.no_grad():
            logits = model(x)
    y0 = target_score(logits, target, output, multilabel)
    y = perturbation_scores(
        model, x, substitute, order_rank(ranked), counts, target, output, multilabel,
        internal_batch_size,
    )  # fmt: skip
    change = relative_change(y, y0)  # [B, F]
    auc = trapezoid_auc(change, torch.tensor(ps)) if len(counts) > 1 else change[:, 0]
    return PixelPerturbationScores(
        change=mask_nonfinite(change, nonfinite),
        auc=mask_nonfinite(auc, nonfinite),
        fractions=ps,
        n_pixels=counts,
        nonfinite=nonfinite,
    )


# --------------------------------------------------------------------------- similarity of maps
def sanity_similarity(
    maps_a: Tensor,
    maps_b: Tensor,
    metric: str = "spearman_abs",
    *,
    hog_cell: int | None = None,
    ssim_sigma: float | None = None,
    constant_maps: str = "define",
) -> Tensor:
    """Similarity per image ``[B]`` (float64) of two batches of maps, as one metric of
    ``benchmark=sanity_checks`` (Adebayo et al., "Sanity checks for saliency maps", NeurIPS
    2018): typically the maps of a model with randomised parameters (``maps_a``) against
    those of the trained model (``maps_b``). A method that depends on the parameters scores
    low.

    Args:
        maps_a: raw maps ``[B, C, H, W]`` or ``[B, H, W]``.
        maps_b: raw maps of the same shape (the benchmark's reference, the trained model's).
        metric: ``spearman_abs`` (Spearman of Adebayo's abs views: ``sum |.|`` over channels,
            clipped at the 99th percentile), ``spearman_signed`` (diverging views), ``ssim``
            (SSIM of the min-max abs views), ``hog_spearman`` (Spearman of the HOG features of
            the abs views, as Khakzar et al.'s positive-aggregation paper, POSAGG), or PRUNE's
            ``prune_spearman_abs``, ``prune_spearman_signed``, ``prune_ssim`` (signed
            max-``|.|`` views in [-1, 1]).
        hog_cell: HOG cell size in px; ``None``: 16 px at 224 px, scaled (at least 2).
        ssim_sigma: SSIM's Gaussian window sigma in px; ``None``: 1.5 at 224 px, scaled (at
            least 0.5).
        constant_maps: ``define`` (Spearman 1 for two constant maps, 0 for one) or ``nan``.
    """
    if metric not in SANITY_METRICS:
        raise ValueError(f"unknown metric '{metric}' (known: {sorted(SANITY_METRICS)})")
    a, b = as_maps(maps_a), as_maps(maps_b)
    side = min(a.shape[-2:])
    cell = resolve_px(AUTO if hog_cell is None else hog_cell, HOG_CELL, side, minimum=2)
    sigma = resolve_float(AUTO if ssim_sigma is None else ssim_sigma, SSIM_SIGMA, side, 0.5)
    views = [SANITY_METRICS[metric][0]]
    defined = check_constant_maps(constant_maps) == "define"
    return compare_views(map_views(a, views, cell), map_views(b, views, cell), metric, defined,
                         sigma)  # fmt: skip


def class_sensitivity(
    maps_a: Tensor,
    maps_b: Tensor,
    metric: str = "spearman",
    *,
    postprocess: Steps = (),
    hog_postprocess: Steps = ("channel_max_abs", "maxabs"),
    hog_cell: int | None = None,
    constant_maps: str = "nan",
) -> Tensor:
    """Similarity per image ``[B]`` (float64) of the maps of two classes of the same images,
    as ``benchmark=class_sensitivity`` (Rebuffi et al., "There and back again: revisiting
    backpropagation saliency methods", CVPR 2020; HOG variant: POSAGG). The benchmark
    compares the maps of the most and the least likely class; lower is more class-sensitive.

    Args:
        maps_a: raw maps of one class ``[B, C, H, W]`` or ``[B, H, W]``.
        maps_b: raw maps of the other class, same shape.
        metric: ``spearman`` (Spearman of the flattened maps after ``postprocess``) or
            ``hog_spearman`` (Spearman of the HOG features after ``hog_postprocess``).
        postprocess: steps before ``spearman`` (default none: raw signed maps).
        hog_postprocess: steps before HOG (default: PathwayGrad's signed max-``|.|`` channel,
            scaled to [-1, 1]).
        hog_cell: HOG cell size in px; ``None``: 16 px at 224 px, scaled (at least 2).
        constant_maps: ``nan`` (Rebuffi: a constant map gives NaN) or ``define``.
    """
    if metric not in CLASS_METRICS:
        raise ValueError(f"unknown metric '{metric}' (known: {list(CLASS_METRICS)})")
    a, b = as_maps(maps_a), as_maps(maps_b)
    defined = check_constant_maps(constant_maps) == "define"
    if metric == "spearman":
        steps = pipeline(postprocess)
        return spearman(steps(a), steps(b), defined)
    cell = resolve_px(AUTO if hog_cell is None else hog_cell, HOG_CELL, min(a.shape[-2:]), 2)
    steps = pipeline(hog_postprocess)
    return hog_spearman(steps(a), steps(b), cell, defined=defined)


@dataclass
class InvarianceScores:
    """What :func:`input_invariance` returns (per image ``[B]``, float64).

    Attributes:
        max_abs_diff: ``max |a - b|``.
        rel_diff: ``max |a - b| / max |a|`` (0 if both are zero, ``inf`` if only ``a`` is).
        invariant: 1 where ``rel_diff <= tolerance``, else 0 (NaN for non-finite maps).
    """

    max_abs_diff: Tensor
    rel_diff: Tensor
    invariant: Tensor


def input_invariance(
    maps: Tensor, maps_shifted: Tensor, tolerance: float | None = None
) -> InvarianceScores:
    """Input invariance (Kindermans et al., "The (un)reliability of saliency methods", 2019)
    of one shift, per image, as ``benchmark=input_invariance``: ``maps`` of a network ``f1``
    on ``x`` against ``maps_shifted`` of its twin ``f2`` on ``x + m2``, where ``f2(x + m2) ==
    f1(x)`` (build the twin with :func:`xai_bench.models.shift.shifted_twin`). The benchmark
    reports the largest ``rel_diff`` over the images.

    Args:
        maps: ``[B, ...]`` maps of the original network.
        maps_shifted: the twin's maps on the shifted inputs, same shape.
        tolerance: the largest ``rel_diff`` that counts as invariant; ``None``: the
            benchmark's 1e-4 for float64 maps, 1e-3 otherwise (float32 rounding alone
            reaches about 1e-4).
    """
    dtype = str(maps.dtype).removeprefix("torch.")
    tol = TOLERANCE.get(dtype, TOLERANCE["float32"]) if tolerance is None else float(tolerance)
    diff, rel = compare_maps(maps, maps_shifted.to(maps.device))
    invariant = (rel <= tol).double().where(~rel.isnan(), math.nan)
    return InvarianceScores(max_abs_diff=diff, rel_diff=rel, invariant=invariant)
