"""RectGrad (Kim et al., 2019) and RectGrad_Mod (Khakzar et al., POSAGG): thresholded gradients."""

from __future__ import annotations

import math

from torch import Tensor, nn

from xai_bench.methods.modified_relu import ModifiedReluGradient
from xai_bench.models.meta import ModelMeta


def percentile(values: Tensor, q: float) -> Tensor:  # [B, N] -> [B, 1]
    """Per-row ``q``-th percentile with linear interpolation (``numpy.percentile``'s default).

    Uses ``kthvalue``, which, unlike ``torch.quantile``, has no input-size limit.
    """
    n = values.shape[1]
    pos = q / 100.0 * (n - 1)
    lo = math.floor(pos)
    frac = pos - lo
    low = values.kthvalue(lo + 1, dim=1, keepdim=True).values
    if frac == 0.0:
        return low
    high = values.kthvalue(min(lo + 2, n), dim=1, keepdim=True).values
    return low + frac * (high - low)


class RectGrad(ModifiedReluGradient):
    """RectGrad (Kim et al., 2019), in Khakzar et al.'s PyTorch form.

    At each ReLU call the importance ``a * R`` (output times incoming gradient) is compared
    with ``tau``, its ``q``-th percentile over all units of that call, per sample (conv: over
    C, H, W); the gradient passes only where the importance exceeds ``tau`` strictly (and, as
    in the ReLU derivative, the unit is active). The output is the raw input gradient; Kim's
    border trick for padded convolutions is not applied.

    Args:
        model: a ReLU network.
        meta: model facts (``relu_only`` must hold).
        q: percentile in [0, 100] (98, Kim et al.'s code default).
        multiply_by_input: return gradient x input (Kim et al.'s final attribution) instead of
            the raw gradient (Khakzar et al., the default).
    """

    name = "rectgrad"

    def __init__(
        self,
        model: nn.Module,
        meta: ModelMeta | None = None,
        q: float = 98.0,
        multiply_by_input: bool = False,
    ) -> None:
        super().__init__(model, meta)
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"q must be a percentile in [0, 100], got {q}")
        self.q = float(q)
        self.multiply_by_input = multiply_by_input

    def importance(self, a: Tensor, grad: Tensor) -> Tensor:
        """Importance of each unit: ``a * R``."""
        return a * grad

    def rule(self, a: Tensor, grad: Tensor) -> Tensor:
        score = self.importance(a, grad).flatten(1)  # [B, units]
        keep = (score > percentile(score, self.q)) & (a.flatten(1) > 0)
        return grad * keep.view_as(grad)

    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:  # [B,C,H,W] -> [B,C,H,W]
        grad = super()._attribute(x, target)
        return x.detach() * grad if self.multiply_by_input else grad


class RectGradMod(RectGrad):
    """RectGrad_Mod (Khakzar et al., POSAGG): RectGrad with importance ``|a * R|``.

    Large negative contributions pass too (Khakzar: ``a * |R|``, the same since ``a >= 0``).
    """

    name = "rectgrad_mod"

    def importance(self, a: Tensor, grad: Tensor) -> Tensor:
        return (a * grad).abs()
