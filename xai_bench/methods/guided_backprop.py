"""Guided backpropagation (Springenberg et al., 2015)."""

from __future__ import annotations

from torch import Tensor

from xai_bench.methods.modified_relu import ModifiedReluGradient


class GuidedBackprop(ModifiedReluGradient):
    """Guided backpropagation (Springenberg et al., 2015).

    At each ReLU, the gradient passes only where the unit is active and the gradient is
    positive: ``R * (a > 0) * (R > 0)``.
    """

    name = "guided_backprop"

    def rule(self, a: Tensor, grad: Tensor) -> Tensor:
        return grad.clamp_min(0) * (a > 0)
