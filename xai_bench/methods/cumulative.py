"""Cumulative GradCAM / GradMid (Khakzar et al., positive aggregation, POSAGG §4): all layers.

Each per-layer map is upsampled to the input size, min-max normalised per sample (our
choice; the paper leaves it open) and the maps are summed. A layer map that is constant
(within :func:`~xai_bench.methods.cam_base.minmax`'s relative tolerance) adds 0: GradMid at a
layer feeding global average pooling is constant by definition, and min-max with ``span > 0``
turned its float32 upsampling ripple into a [0, 1] noise map (float32 against float64 rank
correlation 0.65 on a random ResNet-8 before, 1.0 now).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from xai_bench.methods.base import Explainer
from xai_bench.methods.cam_base import layer_maps, minmax, upsample
from xai_bench.models.layers import layer_path
from xai_bench.models.meta import ModelMeta


class _Cumulative(Explainer):
    """Sum of per-layer maps over ``layers``; subclasses define :meth:`layer_map`.

    Args:
        model: the classifier.
        meta: model facts; used only to refuse inapplicable models.
        layers: dotted layer paths or submodules of ``model``, or a mapping (e.g.
            ``model.block_layers``) whose values are taken in order. An empty list is refused
            (the MLP has no block layers).
        reshape: how each layer output becomes ``[B, K, h, w]`` (``None`` or ``vit_tokens``).
        num_prefix_tokens: class/register tokens dropped before the token-to-grid reshape.

    Output: ``[B, 1, H, W]``, values in ``[0, len(layers)]``.
    """

    needs_layer = True

    def __init__(
        self,
        model: nn.Module,
        meta: ModelMeta | None = None,
        layers: Sequence[str | nn.Module] | Mapping[str, str | nn.Module] = (),
        reshape: str | None = None,
        num_prefix_tokens: int = 0,
    ) -> None:
        values = layers.values() if isinstance(layers, Mapping) else layers
        self.layers = [layer_path(model, v) for v in values]
        self.reshape = reshape
        self.num_prefix_tokens = int(num_prefix_tokens)
        super().__init__(model, meta)

    def layers_read(self) -> list[str | None]:
        return list(self.layers)

    def layer_map(self, acts: Tensor, grads: Tensor) -> Tensor:  # [B,K,h,w] x2 -> [B,1,h,w]
        """One layer's non-negative map at feature resolution."""
        raise NotImplementedError

    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:  # [B,C,H,W] -> [B,1,H,W]
        acts, grads, _ = layer_maps(
            self.model, x, target, self.layers, self.reshape, self.num_prefix_tokens
        )
        total = torch.zeros(x.shape[0], 1, *x.shape[-2:], device=x.device, dtype=x.dtype)
        for a, g in zip(acts, grads):
            total = total + minmax(upsample(self.layer_map(a, g), x.shape[-2:]))
        return total


class CumulativeGradCAM(_Cumulative):
    """Cumulative GradCAM (Khakzar et al., "Rethinking positive aggregation"): all-layer sum.

    The paper defines it as the all-layer aggregation of GradCAM_Pos, so each layer's map is
    ``sum_k |w_k A^k|``; ``absolute=False`` sums plain Grad-CAM maps ``ReLU(sum_k w_k A^k)``
    instead. Other arguments as in :class:`_Cumulative`.
    """

    name = "cumulative_gradcam"

    def __init__(
        self,
        model: nn.Module,
        meta: ModelMeta | None = None,
        layers: Sequence[str | nn.Module] | Mapping[str, str | nn.Module] = (),
        reshape: str | None = None,
        num_prefix_tokens: int = 0,
        absolute: bool = True,
    ) -> None:
        self.absolute = bool(absolute)
        super().__init__(model, meta, layers, reshape, num_prefix_tokens)

    def layer_map(self, acts: Tensor, grads: Tensor) -> Tensor:  # -> [B,1,h,w]
        weighted = grads.mean(dim=(2, 3), keepdim=True) * acts
        if self.absolute:
            return weighted.abs().sum(dim=1, keepdim=True)
        return weighted.sum(dim=1, keepdim=True).clamp_min(0)


class CumulativeGradMid(_Cumulative):
    """Cumulative GradMid (Khakzar et al., "Rethinking positive aggregation"): all-layer sum of
    GradMid maps ``sum_k |dF_c/dA^k|``. Arguments as in :class:`_Cumulative`."""

    name = "cumulative_gradmid"

    def layer_map(self, acts: Tensor, grads: Tensor) -> Tensor:  # -> [B,1,h,w]
        return grads.abs().sum(dim=1, keepdim=True)
