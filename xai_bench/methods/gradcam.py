"""Grad-CAM (Selvaraju et al., ICCV 2017): gradient-weighted class activation mapping."""

from __future__ import annotations

from torch import Tensor

from xai_bench.methods.cam_base import CAM


class GradCAM(CAM):
    """Grad-CAM (Selvaraju et al. 2017): ``ReLU(sum_k w_k A^k)``, ``w_k`` = spatial mean of
    ``dF_c/dA^k``; arguments as in :class:`~xai_bench.methods.cam_base.CAM`."""

    name = "gradcam"

    def weights(self, acts: Tensor, grads: Tensor) -> Tensor:  # [B,K,h,w] -> [B,K]
        return grads.mean(dim=(2, 3))
