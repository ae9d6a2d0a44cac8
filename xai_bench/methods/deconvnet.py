"""Deconvnet (Zeiler & Fergus, 2014) as a modified ReLU gradient."""

from __future__ import annotations

from torch import Tensor

from xai_bench.methods.modified_relu import ModifiedReluGradient


class Deconvnet(ModifiedReluGradient):
    """Deconvnet (Zeiler & Fergus, 2014): each ReLU back-propagates ``relu(R)``.

    The reconstruction ignores the forward activation: the gradient passes wherever it is
    positive, whether the unit was active or not.
    """

    name = "deconvnet"

    def rule(self, a: Tensor, grad: Tensor) -> Tensor:
        return grad.clamp_min(0)
