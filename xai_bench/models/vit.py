"""timm ViTs that take images of any size by resizing them to their own first (OPPSD's ViT-B/16).

OPPSD's CIFAR-100 ViT-B/16 is timm's ``vit_base_patch16_224`` behind a bilinear x7 upsampling
(32 -> 224 px) inside the model's forward, so the images, the gradients and the saliency maps
stay at 32 px. :func:`timm_vit` does the same in the patch embedding (the ViT's first
operation), which keeps the module names and state-dict keys of the plain timm model: layer
paths (``blocks.11.norm1``) and published weights work unchanged.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from timm.layers import PatchEmbed
from torch import Tensor, nn

from xai_bench.utils.errors import UserInputError


class ResizingPatchEmbed(PatchEmbed):
    """timm's patch embedding that first resizes inputs of another size to ``img_size``
    (bilinear, ``align_corners=False``: ``torch.nn.Upsample(mode="bilinear")`` as in OPPSD)."""

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, N, D]
        size = tuple(self.img_size) if self.img_size is not None else None
        if size is not None and tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return super().forward(x)


class StrictPatchEmbed(PatchEmbed):
    """timm's patch embedding that refuses inputs of another size in one line naming the fix."""

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, N, D]
        size = tuple(self.img_size) if self.img_size is not None else None
        if size is not None and tuple(x.shape[-2:]) != size:
            h, w = size
            raise UserInputError(
                f"the ViT takes {h}x{w} inputs but got {x.shape[-2]}x{x.shape[-1]}: set "
                f"dataset.image_size={h} (resize the images) or model.net.resize_input=true "
                "(resize inside the model, as OPPSD)"
            )
        return super().forward(x)


def timm_vit(
    model_name: str,
    num_classes: int,
    pretrained: bool = False,
    resize_input: bool = True,
    **kwargs: Any,
) -> nn.Module:
    """``timm.create_model(model_name, ...)`` whose patch embedding resizes other input sizes.

    Args:
        model_name: a timm ViT with a patch embedding (``vit_base_patch16_224``).
        num_classes: outputs.
        pretrained: let timm fetch published weights (the configs keep ``false`` and load
            them from the local cache through ``model.weights=pretrained``).
        resize_input: resize inputs of another size to the model's own (OPPSD's CIFAR-100
            ViT-B/16: 32 -> 224 px); ``false`` refuses them with a one-line error.
        **kwargs: further arguments of the timm model.
    """
    if not isinstance(resize_input, bool):
        raise UserInputError(f"model.net.resize_input must be true or false, got {resize_input!r}")
    import timm

    embed = ResizingPatchEmbed if resize_input else StrictPatchEmbed
    return timm.create_model(
        model_name, pretrained=pretrained, num_classes=num_classes, embed_layer=embed, **kwargs
    )
