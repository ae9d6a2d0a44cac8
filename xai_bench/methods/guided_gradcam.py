"""Guided Grad-CAM (Selvaraju et al., ICCV 2017): guided backprop times the Grad-CAM map."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xai_bench.methods.base import MethodNotApplicableError, target_logits
from xai_bench.methods.gradcam import GradCAM
from xai_bench.methods.hooks import relu_rule
from xai_bench.models.meta import ModelMeta


def last_conv(model: nn.Module) -> str | None:
    """Dotted path of the last ``nn.Conv2d`` in module order (OPPSD's layer), or ``None``."""
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return names[-1] if names else None


def _guided_rule(a: Tensor, grad: Tensor) -> Tensor:
    """Guided backprop at a ReLU: pass positive gradients where the unit is active."""
    return grad.clamp_min(0) * (a > 0)


def guided_backprop(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """Guided backpropagation (Springenberg et al. 2015) of the target logit: ``[B,C,H,W]``."""
    x = x.detach().requires_grad_(True)
    with relu_rule(model, _guided_rule), torch.enable_grad():
        logits = model(x)
        (grad,) = torch.autograd.grad(target_logits(logits, target).sum(), x)
    return grad


class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop ``*`` upsampled Grad-CAM.

    Two passes: a plain one for Grad-CAM (its gradients must not be guided) and a guided one
    for the input gradient. Needs a ReLU-only convolutional network.

    Args:
        layer: the Grad-CAM layer; ``None`` takes the last ``nn.Conv2d`` in module order (what
            OPPSD's baseline uses). The configs pass ``model.cam_layer``.
        reshape: must be ``None``; token models are refused.
        num_prefix_tokens: unused (kept so that configs can pass the model facts).
        relu: Grad-CAM's ReLU on the map.

    Output: ``[B, C, H, W]``.
    """

    name = "guided_gradcam"
    needs_relu = True
    needs_conv = True

    def __init__(
        self,
        model: nn.Module,
        meta: ModelMeta | None = None,
        layer: str | nn.Module | None = None,
        reshape: str | None = None,
        num_prefix_tokens: int = 0,
        relu: bool = True,
    ) -> None:
        super().__init__(
            model, meta, layer if layer is not None else last_conv(model), reshape,
            num_prefix_tokens, relu,
        )  # fmt: skip

    def check_applicable(self) -> None:
        if self.reshape is not None:
            raise MethodNotApplicableError(
                f"{self.name} propagates through ReLUs of a CNN; layer outputs that need the "
                f"'{self.reshape}' reshape (transformer tokens) are not supported"
            )
        super().check_applicable()

    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:  # [B,C,H,W] -> [B,C,H,W]
        cam = super()._attribute(x, target)
        return guided_backprop(self.model, x, target) * cam
