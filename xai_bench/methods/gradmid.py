"""GradMid (Khakzar et al., positive aggregation, POSAGG §3): |gradient| at a middle layer."""

from __future__ import annotations

from torch import Tensor

from xai_bench.methods.cam_base import CAM


class GradMid(CAM):
    """GradMid (Khakzar et al., "Rethinking positive aggregation"): ``sum_k |dF_c/dA^k|``.

    No activation weighting; the channel sum of absolute gradients at ``layer`` is upsampled
    bilinearly to the input size. Non-negative, so ``relu`` has no effect; arguments as in
    :class:`~xai_bench.methods.cam_base.CAM`.
    """

    name = "gradmid"

    def combine(self, acts: Tensor, grads: Tensor | None) -> Tensor:  # -> [B,1,h,w]
        return grads.abs().sum(dim=1, keepdim=True)
