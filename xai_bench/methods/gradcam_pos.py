"""GradCAM_Pos (Khakzar et al., positive aggregation, POSAGG §3): Grad-CAM with |.| inside."""

from __future__ import annotations

from torch import Tensor

from xai_bench.methods.gradcam import GradCAM


class GradCAMPos(GradCAM):
    """GradCAM_Pos (Khakzar et al., "Rethinking positive aggregation"): ``sum_k |w_k A^k|``.

    ``w_k`` is Grad-CAM's spatial mean of the gradients. The map is non-negative, so the
    ``relu`` option has no effect; arguments as in :class:`~xai_bench.methods.cam_base.CAM`.
    """

    name = "gradcam_pos"

    def combine(self, acts: Tensor, grads: Tensor | None) -> Tensor:  # -> [B,1,h,w]
        w = self.weights(acts, grads)
        return (w[:, :, None, None] * acts).abs().sum(dim=1, keepdim=True)
