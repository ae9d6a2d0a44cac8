"""XRAI (Kapishnikov et al., ICCV 2019): integrated gradients aggregated over image regions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from skimage import segmentation
from skimage.morphology import dilation, disk
from skimage.transform import resize
from torch import Tensor, nn

from xai_bench.methods.base import Explainer, target_logits
from xai_bench.models.meta import ModelMeta

BASELINES = ("black_white", "min_max")


def segment_masks(
    image: np.ndarray,
    scales: Sequence[float] = (50, 100, 150, 250, 500, 1200),
    sigma: float = 0.8,
    min_size: int = 150,
    resize_to: int | None = 224,
    dilation_radius: int = 5,
) -> np.ndarray:
    """XRAI's candidate regions of one ``[H, W, C]`` image: ``[M, H, W]`` boolean masks.

    As the PAIR ``saliency`` package: the image is min-max scaled to [-1, 1] and resized
    (bicubic) to ``resize_to`` px, Felzenszwalb segments at every scale are resized back
    (nearest), every label gives a mask (possibly empty) and masks are dilated by a disk.
    """
    lo, hi = float(image.min()), float(image.max())
    im = (image - lo) / (hi - lo) * 2.0 - 1.0 if hi > lo else np.zeros_like(image)
    shape = image.shape[:2]
    if resize_to is not None:
        size = (resize_to, resize_to)
        im = resize(im, size, order=3, mode="constant", preserve_range=True, anti_aliasing=True)
    masks = []
    for scale in scales:
        seg = segmentation.felzenszwalb(im, scale=scale, sigma=sigma, min_size=min_size)
        if resize_to is not None:
            seg = resize(
                seg, shape, order=0, preserve_range=True, mode="constant", anti_aliasing=False
            ).astype(int)
        masks += [seg == label for label in range(seg.min(), seg.max() + 1)]
    if dilation_radius:
        footprint = disk(dilation_radius)
        masks = [dilation(m, footprint=footprint) for m in masks]
    return np.stack(masks)


def xrai_greedy(
    attr: Tensor, masks: Tensor, min_pixel_diff: int = 50, area_threshold: float = 1.0
) -> Tensor:  # [B, P], [B, M, P] -> [B, P]
    """XRAI's greedy region selection ("full" algorithm), batched over images.

    Repeatedly adds the candidate mask whose not-yet-covered pixels have the highest mean
    attribution (density); masks adding fewer than ``min_pixel_diff`` new pixels are dropped.
    Each pixel gets the gain of the step that covered it; pixels never covered get the mean
    attribution over them. Stops when no mask is left or the covered fraction exceeds
    ``area_threshold``. Padding masks (all zero) are never chosen.
    """
    b, m, p = masks.shape
    rows = torch.arange(b, device=attr.device)
    valid = torch.ones(b, m, dtype=torch.bool, device=attr.device)
    active = torch.ones(b, dtype=torch.bool, device=attr.device)
    current = torch.zeros(b, p, dtype=torch.bool, device=attr.device)
    out = torch.full_like(attr, -torch.inf)
    for _ in range(m):
        free = (~current).to(attr.dtype)
        stats = torch.bmm(masks, torch.stack([free, free * attr], dim=2))  # [B, M, 2]
        diff, total = stats[..., 0], stats[..., 1]
        valid &= diff >= max(min_pixel_diff, 1)
        active &= valid.any(dim=1)
        if not bool(active.any()):
            break
        gain = torch.where(valid, total / diff.clamp_min(1), -torch.inf)
        best = gain.argmax(dim=1)  # first maximum, as PAIR's strict ">" scan
        added = (masks[rows, best] > 0) & ~current & active[:, None]
        out = torch.where(added, gain[rows, best][:, None], out)
        current |= added
        valid[rows, best] = False
        active &= current.to(attr.dtype).mean(dim=1) <= area_threshold
    rest = ~current
    fill = (attr * rest).sum(dim=1) / rest.sum(dim=1).clamp_min(1)
    return torch.where(rest, fill[:, None], out)


class XRAI(Explainer):
    """XRAI (Kapishnikov et al. 2019): region-level integrated gradients.

    1. Integrated gradients of the target logit from a black and a white baseline (PAIR's
       rule: ``steps`` equally spaced points from 0 to 1 including both ends, gradient mean),
       averaged over the two baselines; channels are reduced by max, as PAIR.
    2. Candidate regions from :func:`segment_masks` (Felzenszwalb at scales 50 ... 1200 on the
       de-normalised image, min segment size 150 at 224 px, dilation 5 px). This runs per
       image on the CPU with scikit-image: it is inherently sequential and not differentiable.
    3. :func:`xrai_greedy`: each pixel gets the attribution density of the region with which
       it was added. The output ``[B, 1, H, W]`` is the PAIR ``attribution_mask``.

    Steps 1 and 3 are batched over images; step 3 holds ``B x M x H x W`` mask values for
    ``M`` candidate regions per image (a few hundred at 224 px).

    Args:
        model: the classifier.
        meta: model facts; ``black_white`` baselines and the de-normalisation use its mean/std.
        steps: integration points per baseline.
        baselines: ``black_white`` (0 and 1 in pixel space, via meta) or ``min_max`` (the
            image's own min and max, PAIR's default when no baseline is given).
        scales, sigma, min_segment_size, segment_resize, dilation_radius: segmentation, see
            :func:`segment_masks`.
        min_pixel_diff, area_threshold: greedy selection, see :func:`xrai_greedy`.
        internal_batch_size: interpolated images per forward pass (``None``: all at once).
    """

    name = "xrai"

    def __init__(
        self,
        model: nn.Module,
        meta: ModelMeta | None = None,
        steps: int = 100,
        baselines: str = "black_white",
        scales: Sequence[float] = (50, 100, 150, 250, 500, 1200),
        sigma: float = 0.8,
        min_segment_size: int = 150,
        segment_resize: int | None = 224,
        dilation_radius: int = 5,
        min_pixel_diff: int = 50,
        area_threshold: float = 1.0,
        internal_batch_size: int | None = 64,
    ) -> None:
        if baselines not in BASELINES:
            raise ValueError(f"baselines must be one of {BASELINES}, got {baselines!r}")
        if baselines == "black_white" and meta is None:
            raise ValueError("baselines='black_white' needs meta (mean/std); or use min_max")
        if steps < 2 or (internal_batch_size is not None and internal_batch_size < 1):
            raise ValueError("need steps >= 2 and internal_batch_size >= 1 or None")
        super().__init__(model, meta)
        self.steps, self.baselines = int(steps), baselines
        self.segment_kw = dict(
            scales=tuple(float(s) for s in scales), sigma=float(sigma),
            min_size=int(min_segment_size), resize_to=segment_resize,
            dilation_radius=int(dilation_radius),
        )  # fmt: skip
        self.min_pixel_diff, self.area_threshold = int(min_pixel_diff), float(area_threshold)
        self.internal_batch_size = internal_batch_size

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:  # mean, std [1, C, 1, 1]
        c = x.shape[1]
        if self.meta is None:
            return x.new_zeros(1, c, 1, 1), x.new_ones(1, c, 1, 1)
        mean = torch.tensor(self.meta.mean, dtype=x.dtype, device=x.device)
        std = torch.tensor(self.meta.std, dtype=x.dtype, device=x.device)
        return mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)

    def make_baselines(self, x: Tensor) -> Tensor:  # [B,C,H,W] -> [2, B, C, H, W]
        """The black and white baselines (or the image's min and max)."""
        if self.baselines == "min_max":
            lo = x.amin(dim=(1, 2, 3), keepdim=True).expand_as(x)
            return torch.stack([lo, x.amax(dim=(1, 2, 3), keepdim=True).expand_as(x)])
        mean, std = self._stats(x)
        return torch.stack([((v - mean) / std).expand_as(x) for v in (0.0, 1.0)])

    def integrated_gradients(self, x: Tensor, target: Tensor) -> Tensor:  # -> [B,C,H,W]
        """IG averaged over the baselines, batched over (baseline, step, image) triples."""
        x0 = self.make_baselines(x)  # [J, B, C, H, W]
        j, b = x0.shape[:2]
        alphas = torch.linspace(0, 1, self.steps, dtype=x.dtype, device=x.device)
        total = j * self.steps * b
        size = self.internal_batch_size or total
        grads = torch.zeros_like(x0).flatten(0, 1)  # [J*B, C, H, W]
        for start in range(0, total, size):
            idx = torch.arange(start, min(start + size, total), device=x.device)
            i = idx % b
            k = torch.div(idx, b, rounding_mode="floor") % self.steps
            base = torch.div(idx, b * self.steps, rounding_mode="floor")
            start_pt = x0[base, i]
            point = (start_pt + alphas[k].view(-1, 1, 1, 1) * (x[i] - start_pt)).requires_grad_()
            with torch.enable_grad():
                logit = target_logits(self.model(point), target[i])
                (g,) = torch.autograd.grad(logit.sum(), point)
            grads.index_add_(0, base * b + i, g)
        ig = (x.unsqueeze(0) - x0) * grads.view_as(x0) / self.steps
        return ig.mean(dim=0)

    def regions(self, x: Tensor) -> Tensor:  # [B,C,H,W] -> [B, M, H*W] (0/1, x's dtype)
        """Candidate masks of every image, zero-padded to the largest count ``M``."""
        mean, std = self._stats(x)
        images = (x * std + mean).permute(0, 2, 3, 1).detach().cpu().double().numpy()
        per_image = [segment_masks(im, **self.segment_kw) for im in images]
        out = np.zeros((len(per_image), max(len(m) for m in per_image), x[0, 0].numel()))
        for n, m in enumerate(per_image):
            out[n, : len(m)] = m.reshape(len(m), -1)
        return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)

    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:  # [B,C,H,W] -> [B,1,H,W]
        x = x.detach()
        attr = self.integrated_gradients(x, target).amax(dim=1).flatten(1)  # [B, H*W]
        out = xrai_greedy(attr, self.regions(x), self.min_pixel_diff, self.area_threshold)
        return out.view(x.shape[0], 1, *x.shape[-2:])
