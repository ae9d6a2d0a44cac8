"""SmoothGrad (Smilkov et al., 2017) and VarGrad (Adebayo et al., 2018) around any explainer."""

from __future__ import annotations

from torch import Tensor

from xai_bench.methods.noise_tunnel import NoiseTunnel


class SmoothGrad(NoiseTunnel):
    """SmoothGrad (Smilkov et al., 2017): mean of the base attributions over noisy copies.

    Defaults follow the paper: 50 samples, sigma = 0.15 of each image's value range.
    """

    name = "smoothgrad"

    def reduce(self, mean: Tensor, var: Tensor) -> Tensor:
        return mean


class VarGrad(NoiseTunnel):
    """VarGrad (Adebayo et al., 2018): variance of the base attributions over noisy copies.

    The population variance ``E[a^2] - E[a]^2``, as Captum's NoiseTunnel ``vargrad``. OPPSD
    ran it with 16 samples and sigma = 0.225 absolute (``vargrad.yaml``).
    """

    name = "vargrad"

    def reduce(self, mean: Tensor, var: Tensor) -> Tensor:
        return var
