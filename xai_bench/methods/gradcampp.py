"""Grad-CAM++ (Chattopadhyay et al., WACV 2018): pixel-wise weighted gradients."""

from __future__ import annotations

import torch
from torch import Tensor

from xai_bench.methods.cam_base import CAM


class GradCAMPlusPlus(CAM):
    """Grad-CAM++ (Chattopadhyay et al. 2018): ``w_k = sum_ij alpha_ij^k ReLU(dF_c/dA_ij^k)``.

    The closed-form coefficients for the logit (as in pytorch-grad-cam)::

        alpha = g^2 / (2 g^2 + sum_ij(A^k) g^3 + eps),  alpha = 0 where g = 0,

    with ``g = dF_c/dA`` and ``eps = 1e-6``. Arguments as in
    :class:`~xai_bench.methods.cam_base.CAM`.
    """

    name = "gradcampp"
    eps: float = 1e-6

    def weights(self, acts: Tensor, grads: Tensor) -> Tensor:  # [B,K,h,w] -> [B,K]
        g2 = grads.pow(2)
        g3 = g2 * grads
        sum_acts = acts.sum(dim=(2, 3), keepdim=True)
        alpha = g2 / (2 * g2 + sum_acts * g3 + self.eps)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return (alpha * grads.clamp_min(0)).sum(dim=(2, 3))
