"""Group-CAM (Zhang et al., 2021): grouped, de-noised CAM masks scored on blurred inputs.

Follows the paper and the authors' code at ``wofmanaf/Group-CAM@cc85ed2``; the
later HEAD version (no de-noising, ReLU per alpha, unnormalised maps) is not implemented.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from xai_bench.methods.base import target_logits
from xai_bench.methods.cam_base import CAM, minmax, upsample
from xai_bench.models.meta import ModelMeta
from xai_bench.utils.batching import chunked
from xai_bench.utils.blur import gaussian_blur
from xai_bench.utils.resolution import float_option, px_option, resolve_blur


class GroupCAM(CAM):
    """Group-CAM (Zhang et al. 2021): ``ReLU(sum_l alpha_l M'_l)``, min-max scaled to [0, 1].

    Steps per sample, with ``A`` the layer's activations ``[K, h, w]``:

    1. ``w_k A^k`` with Grad-CAM weights ``w_k`` (or raw ``A^k`` if ``forward_only``), split
       into ``groups`` contiguous channel chunks as ``torch.chunk`` does (``ceil(K/G)`` channels
       each, so fewer groups when ``G`` does not divide ``K``); ``M_l`` = ReLU of each chunk sum.
    2. De-noise: keep values strictly above the ``theta``-th percentile of ``M_l`` at feature
       resolution (linear interpolation), zero the rest (skipped if ``theta`` is ``None``).
    3. Bilinear upsampling (``align_corners=False``), per-group min-max to ``M'_l``; a constant
       group is skipped (its mask is zero, so it adds nothing).
    4. ``alpha_l = p_c(x M'_l + blur(x)(1 - M'_l)) - p_c(blur(x))`` with softmax probabilities
       ``p`` and a Gaussian blur of the (normalised) input.

    A constant final map stays zero (the authors' code returns ``None`` there).

    Args:
        layer, reshape, num_prefix_tokens: as in :class:`~xai_bench.methods.cam_base.CAM`.
        groups: number of channel groups ``G`` (paper: 32).
        theta: de-noising percentile in [0, 100] (paper: 70), ``None`` to skip.
        blur_kernel: odd Gaussian kernel size of the baseline in px; ``auto``: the paper's 51
            px at 224 px inputs, scaled to the input (:mod:`~xai_bench.utils.resolution`).
        blur_sigma: its standard deviation in px; ``auto``: the paper's 50 px, scaled.
        forward_only: the fine-tuning variant: groups of raw activations, no
            gradient weights and no backward pass (combine with ``theta=None``, ``groups=16``).
        internal_batch_size: perturbed inputs per forward pass (``None``: all at once).
    """

    name = "groupcam"

    def __init__(
        self,
        model: nn.Module,
        meta: ModelMeta | None = None,
        layer: str | nn.Module | None = None,
        reshape: str | None = None,
        num_prefix_tokens: int = 0,
        groups: int = 32,
        theta: float | None = 70.0,
        blur_kernel: int | str = "auto",
        blur_sigma: float | str = "auto",
        forward_only: bool = False,
        internal_batch_size: int | None = 64,
    ) -> None:
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        if theta is not None and not 0 <= theta <= 100:
            raise ValueError(f"theta is a percentile in [0, 100], got {theta}")
        self.groups = int(groups)
        self.theta = None if theta is None else float(theta)
        self.blur_kernel = px_option(blur_kernel, "blur_kernel")
        self.blur_sigma = float_option(blur_sigma, "blur_sigma")
        self.forward_only = bool(forward_only)
        self.uses_gradients = not self.forward_only
        self.internal_batch_size = internal_batch_size
        super().__init__(model, meta, layer, reshape, num_prefix_tokens, relu=True)

    def blur(self, x: Tensor) -> tuple[int, float]:
        """``(kernel size, sigma)`` of the blur for inputs ``x`` (``auto``: 51 px / sigma 50 at
        224 px, scaled to the input's shorter side)."""
        return resolve_blur(self.blur_kernel, self.blur_sigma, (51, 50.0), min(x.shape[-2:]))

    def group_masks(self, acts: Tensor, grads: Tensor | None, size: tuple[int, int]) -> Tensor:
        """Initial masks ``M'_l`` ``[B, G', H, W]`` in [0, 1] (``G'`` chunks as torch.chunk)."""
        if not self.forward_only:
            acts = grads.mean(dim=(2, 3), keepdim=True) * acts
        b, k, h, w = acts.shape
        per_group = math.ceil(k / self.groups)
        n = math.ceil(k / per_group)
        group_of = torch.div(torch.arange(k, device=acts.device), per_group, rounding_mode="floor")
        maps = acts.new_zeros(b, n, h, w).index_add_(1, group_of, acts).clamp_min(0)
        if self.theta is not None:
            flat = maps.flatten(2)  # [B,G',h*w]
            threshold = torch.quantile(flat, self.theta / 100.0, dim=2, keepdim=True)
            maps = torch.where(flat > threshold, flat, torch.zeros_like(flat)).view_as(maps)
        return minmax(upsample(maps, size), dims=(2, 3))

    def alphas(self, x: Tensor, target: Tensor, masks: Tensor) -> Tensor:  # -> [B,G']
        """Confidence gains ``p_c(I'_l) - p_c(blur(x))``, batched over samples and groups."""
        b, n = masks.shape[:2]
        blurred = gaussian_blur(x, *self.blur(x))
        flat = masks.flatten(0, 1).unsqueeze(1)  # [B*G',1,H,W]

        def prob(inputs: Tensor, sample: Tensor) -> Tensor:  # -> [n]
            return target_logits(self.model(inputs).softmax(dim=1), target[sample])

        def perturbed(idx: Tensor) -> Tensor:
            sample = torch.div(idx, n, rounding_mode="floor")
            m = flat[idx]
            return prob(x[sample] * m + blurred[sample] * (1 - m), sample)

        ibs = self.internal_batch_size
        with torch.no_grad():
            base = chunked(lambda i: prob(blurred[i], i), torch.arange(b, device=x.device), ibs)
            gains = chunked(perturbed, torch.arange(b * n, device=x.device), ibs).view(b, n)
        return gains - base[:, None]

    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:  # [B,C,H,W] -> [B,1,H,W]
        acts, grads = self.layer_maps(x, target)
        x = x.detach()
        masks = self.group_masks(acts, grads, x.shape[-2:])
        alpha = self.alphas(x, target, masks)
        saliency = (alpha[:, :, None, None] * masks).sum(dim=1, keepdim=True).clamp_min(0)
        return minmax(saliency)
