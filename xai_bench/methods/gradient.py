"""Vanilla gradient saliency (Simonyan et al., 2014): d logit_c / d x."""

from __future__ import annotations

from torch import Tensor

from xai_bench.methods.base import Explainer, input_gradient


class Gradient(Explainer):
    """The gradient of the target logit w.r.t. the (normalised) input, one backward pass."""

    name = "gradient"

    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:  # [B,C,H,W] -> [B,C,H,W]
        return input_gradient(self.model, x, target)[0]
