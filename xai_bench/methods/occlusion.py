"""Occlusion (Zeiler & Fergus, ECCV 2014): drop of the target logit when a window is hidden."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xai_bench.methods.base import Explainer, target_logits
from xai_bench.methods.baselines import check_baseline_value, expand_baseline
from xai_bench.models.meta import ModelMeta
from xai_bench.utils.batching import chunked


def n_windows(size: int, window: int, stride: int) -> int:
    """Number of window positions along a side of ``size`` pixels (Captum's shift count).

    Windows start at ``0, stride, 2 * stride, ...`` until one reaches the border; the last one
    may stick out and is cropped, so that every pixel is covered at least once.
    """
    if window > size:
        raise ValueError(f"occlusion window {window} is larger than the image side {size}")
    return math.ceil((size - window) / stride) + 1


class Occlusion(Explainer):
    """Occlusion (Zeiler & Fergus 2014) with Captum's ``Occlusion`` semantics.

    A square ``window`` slides over the image with ``stride``; inside it every channel is set to
    ``fill`` (0 is the dataset mean in normalised space). Each pixel gets the mean, over the
    windows that cover it, of ``f_c(x) - f_c(x_occluded)`` (target logit). The value is the
    same for every channel: the output is ``[B, C, H, W]``, as Captum's.

    Args:
        model: the classifier.
        meta: model facts (unused apart from the applicability check).
        window: side of the occluding square in pixels (8 for 32 px images; 16 for 224 px).
        stride: step between windows in pixels.
        fill: value written into the window (normalised space): a number, or a tensor
            broadcastable to the input (``[C, H, W]``, ``[1, C, H, W]``, ``[B, C, H, W]``) whose
            values replace the window's. ``attribute(..., baselines=...)`` overrides it for one
            call, as Captum's ``baselines``.
        internal_batch_size: occluded images per forward pass (``None``: all ``B * P`` at once,
            ``P`` windows per image).
    """

    name = "occlusion"

    def __init__(
        self,
        model: nn.Module,
        meta: ModelMeta | None = None,
        window: int = 8,
        stride: int = 4,
        fill: float | Tensor = 0.0,
        internal_batch_size: int | None = 64,
    ) -> None:
        if window < 1 or stride < 1:
            raise ValueError(f"window and stride must be >= 1, got {window} and {stride}")
        if internal_batch_size is not None and internal_batch_size < 1:
            raise ValueError("internal_batch_size must be >= 1 or None")
        super().__init__(model, meta)
        self.window, self.stride = int(window), int(stride)
        self.fill = check_baseline_value(fill, what="fill")
        self.internal_batch_size = internal_batch_size

    def window_masks(self, p: Tensor, height: int, width: int) -> Tensor:
        """Boolean masks ``[n, 1, H, W]`` of the windows with flat indices ``p [n]``."""
        n_cols = n_windows(width, self.window, self.stride)
        top = torch.div(p, n_cols, rounding_mode="floor") * self.stride
        left = (p % n_cols) * self.stride
        rows = torch.arange(height, device=p.device)
        cols = torch.arange(width, device=p.device)
        in_rows = (rows >= top[:, None]) & (rows < top[:, None] + self.window)  # [n, H]
        in_cols = (cols >= left[:, None]) & (cols < left[:, None] + self.window)  # [n, W]
        return (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)

    def drops(
        self, x: Tensor, target: Tensor, fill: float | Tensor | None = None
    ) -> Tensor:  # [B,C,H,W] -> [B, nh, nw]
        """``f_c(x) - f_c(x with window p hidden)`` for every image and window position
        (``fill``: this call's override of :attr:`fill`)."""
        b, _, h, w = x.shape
        what = "fill" if fill is None else "baselines"
        fill = self.fill if fill is None else check_baseline_value(fill, what=what)
        # a number broadcasts from [1,C,H,W]; a tensor is indexed per image like x
        if isinstance(fill, float):
            values = torch.full_like(x[:1], fill)
        else:
            values = expand_baseline(fill, x, what)
        nh = n_windows(h, self.window, self.stride)
        nw = n_windows(w, self.window, self.stride)

        def occluded_scores(idx: Tensor) -> Tensor:  # flat (image, window) indices -> [n]
            i = idx % b
            mask = self.window_masks(torch.div(idx, b, rounding_mode="floor"), h, w)
            occluded = torch.where(mask, values if len(values) == 1 else values[i], x[i])
            return target_logits(self.model(occluded), target[i])

        with torch.no_grad():
            full = target_logits(self.model(x), target)  # [B]
            idx = torch.arange(b * nh * nw, device=x.device)
            scores = chunked(occluded_scores, idx, self.internal_batch_size)  # window-major
        return (full[None, :] - scores.view(nh * nw, b)).t().reshape(b, nh, nw)

    def _attribute(
        self, x: Tensor, target: Tensor, *, baselines: float | Tensor | None = None
    ) -> Tensor:  # [B,C,H,W] -> [B,C,H,W]
        x = x.detach()
        b, c, h, w = x.shape
        drop = self.drops(x, target, baselines).unsqueeze(1)  # [B, 1, nh, nw]
        kernel = x.new_ones(1, 1, self.window, self.window)
        total = F.conv_transpose2d(drop, kernel, stride=self.stride)[..., :h, :w]
        count = F.conv_transpose2d(torch.ones_like(drop[:1]), kernel, stride=self.stride)
        return (total / count[..., :h, :w]).expand(b, c, h, w).contiguous()
