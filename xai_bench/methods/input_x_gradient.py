"""Gradient x input (Shrikumar et al., 2016): x * d logit_c / d x."""

from __future__ import annotations

from torch import Tensor

from xai_bench.methods.base import Explainer, input_gradient


class InputXGradient(Explainer):
    """Gradient x input (Shrikumar et al., 2016), both in the normalised input space.

    One backward pass; equals integrated gradients with a zero baseline for a linear model.
    """

    name = "input_x_gradient"

    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:  # [B,C,H,W] -> [B,C,H,W]
        return x * input_gradient(self.model, x, target)[0]
