"""Facts about a model that methods and benchmarks need (preprocessing travels with the model)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelMeta:
    """What a method or benchmark may ask of a model without inspecting its code.

    Attributes:
        name: config name of the model (``resnet8``, ``vgg16`` ...).
        num_classes: size of the output layer.
        input_size: ``(C, H, W)`` of the inputs the model expects.
        mean: per-channel normalisation mean applied to inputs in [0, 1].
        std: per-channel normalisation std.
        cam_layer: dotted path of the default CAM layer, or ``None`` (MLP).
        blocks: dotted paths in cascading-randomisation order, output to input.
        block_layers: named layers for layer-wise CAM variants (``B1`` .. ``B5``).
        convolutional: the network is a CNN (FullGrad, CAMs without reshape).
        relu_only: every non-linearity is a ReLU (guided backprop, RectGrad, LRP).
        reshape: how to turn a layer's output into ``[B, C, h, w]``: ``None`` or ``vit_tokens``.
        num_prefix_tokens: class/register tokens to drop before the token-to-grid reshape.
        multilabel: outputs are independent sigmoids rather than one softmax.
    """

    name: str
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    cam_layer: str | None = None
    blocks: tuple[str, ...] = ()
    block_layers: Mapping[str, str] = field(default_factory=dict)
    convolutional: bool = True
    relu_only: bool = True
    reshape: str | None = None
    num_prefix_tokens: int = 0
    multilabel: bool = False

    @classmethod
    def create(
        cls,
        name: str,
        num_classes: int,
        input_size: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        cam_layer: str | None = None,
        blocks: Sequence[str] = (),
        block_layers: Mapping[str, str] | None = None,
        convolutional: bool = True,
        relu_only: bool = True,
        reshape: str | None = None,
        num_prefix_tokens: int = 0,
        multilabel: bool = False,
    ) -> ModelMeta:
        """Build from plain sequences (e.g. values of a resolved config)."""
        c, h, w = (int(v) for v in input_size)
        if len(mean) != c or len(std) != c:
            raise ValueError(
                f"model {name}: mean/std have {len(mean)}/{len(std)} entries "
                f"but the input has {c} channels"
            )
        return cls(
            name=name,
            num_classes=int(num_classes),
            input_size=(c, h, w),
            mean=tuple(float(v) for v in mean),
            std=tuple(float(v) for v in std),
            cam_layer=cam_layer,
            blocks=tuple(blocks),
            block_layers=dict(block_layers or {}),
            convolutional=bool(convolutional),
            relu_only=bool(relu_only),
            reshape=reshape,
            num_prefix_tokens=int(num_prefix_tokens),
            multilabel=bool(multilabel),
        )
