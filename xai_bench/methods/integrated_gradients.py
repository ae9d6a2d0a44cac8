"""Integrated gradients (Sundararajan et al., 2017): named or tensor baselines, two quadratures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from xai_bench.methods.base import Explainer, input_gradient
from xai_bench.methods.baselines import BaselineLike, check_baseline, expand_baseline
from xai_bench.models.meta import ModelMeta
from xai_bench.utils.blur import gaussian_blur
from xai_bench.utils.resolution import float_option, px_option, resolve_blur

BASELINES = ("zero", "black", "blur", "mean")
INTEGRATIONS = ("riemann_trapezoid", "gausslegendre")


def quadrature(integration: str, steps: int) -> tuple[list[float], list[float]]:
    """Nodes ``alpha`` in [0, 1] and weights (summing to 1) of the path integral.

    ``riemann_trapezoid`` is the trapezoid rule on ``linspace(0, 1, steps)`` (weights
    ``1/(steps-1)``, halved at both ends). Captum's version uses ``1/steps`` instead, so its
    weights sum to ``(steps-1)/steps``; ours sum to 1 and satisfy completeness.
    ``gausslegendre`` is Gauss-Legendre on [0, 1], as in Captum (its default).
    """
    if integration == "riemann_trapezoid":
        if steps < 2:
            raise ValueError("riemann_trapezoid needs steps >= 2")
        alphas = np.linspace(0.0, 1.0, steps)
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
    elif integration == "gausslegendre":
        if steps < 1:
            raise ValueError("gausslegendre needs steps >= 1")
        nodes, w = np.polynomial.legendre.leggauss(steps)
        alphas, weights = 0.5 * (nodes + 1.0), 0.5 * w
    else:
        raise ValueError(f"integration must be one of {INTEGRATIONS}, got {integration!r}")
    return alphas.tolist(), weights.tolist()


class IntegratedGradients(Explainer):
    """Integrated gradients (Sundararajan et al., 2017): (x - x0) * mean path gradient.

    ``attr = (x - x0) * sum_s w_s * grad f_c(x0 + alpha_s (x - x0))`` in the normalised input
    space, so that ``attr.sum() ~= f_c(x) - f_c(x0)`` (completeness).

    Args:
        model: the classifier.
        meta: model facts; the ``black`` baseline reads ``mean``/``std`` from it.
        steps: number of points on the path (50; OPPSD used 32 with ``gausslegendre``).
        baseline: ``zero`` (zeros in normalised space), ``black`` (the data minimum, see
            ``black_value``), ``blur`` (Gaussian blur of x), ``mean`` (per-image,
            per-channel mean of x), a number, or a tensor broadcastable to x (``[C, H, W]``,
            ``[1, C, H, W]``, ``[B, C, H, W]``; normalised space). ``attribute(...,
            baselines=...)`` overrides it for one call, as Captum's ``baselines``.
        black_value: the black pixel in normalised units, one value or one per channel;
            ``None`` maps pixel value 0 through the model's normalisation, ``(0 - mean) / std``.
        blur_kernel: kernel size of the ``blur`` baseline in px; ``auto``: 51 px at 224 px
            inputs, scaled to the input (:mod:`~xai_bench.utils.resolution`).
        blur_sigma: standard deviation of the ``blur`` baseline in px; ``auto``: 50 px at
            224 px, scaled.
        integration: ``riemann_trapezoid`` or ``gausslegendre`` (see :func:`quadrature`).
        multiply_by_inputs: multiply the path gradient by ``x - x0`` (the method); ``False``
            returns the averaged path gradient.
        internal_batch_size: how many path points go through the model at once
            (``None``: all ``steps * B`` together).
    """

    name = "integrated_gradients"

    def __init__(
        self,
        model: nn.Module,
        meta: ModelMeta | None = None,
        steps: int = 50,
        baseline: BaselineLike = "zero",
        black_value: float | Sequence[float] | None = None,
        blur_kernel: int | str = "auto",
        blur_sigma: float | str = "auto",
        integration: str = "riemann_trapezoid",
        multiply_by_inputs: bool = True,
        internal_batch_size: int | None = None,
    ) -> None:
        super().__init__(model, meta)
        self.baseline = check_baseline(baseline, BASELINES)
        if internal_batch_size is not None and internal_batch_size < 1:
            raise ValueError("internal_batch_size must be >= 1 or None")
        self.alphas, self.weights = quadrature(integration, int(steps))
        self.steps, self.integration = int(steps), integration
        self.blur_kernel = px_option(blur_kernel, "blur_kernel")
        self.blur_sigma = float_option(blur_sigma, "blur_sigma")
        self.multiply_by_inputs = multiply_by_inputs
        self.internal_batch_size = internal_batch_size
        self._black = black_value
        is_black = isinstance(self.baseline, str) and self.baseline == "black"
        self.black_value = self._black_value(black_value) if is_black else None  # fail early

    def blur(self, x: Tensor) -> tuple[int, float]:
        """``(kernel size, sigma)`` of the blur for inputs ``x`` (``auto``: 51 px / sigma 50 at
        224 px, scaled to the input's shorter side)."""
        return resolve_blur(self.blur_kernel, self.blur_sigma, (51, 50.0), min(x.shape[-2:]))

    def _black_value(self, value: float | Sequence[float] | None) -> list[float]:
        if value is not None:
            return [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
        if self.meta is None:
            raise ValueError("baseline='black' with black_value=None needs meta (mean, std)")
        return [(0.0 - m) / s for m, s in zip(self.meta.mean, self.meta.std)]

    def make_baseline(self, x: Tensor, baseline: BaselineLike | None = None) -> Tensor:
        """The baseline ``x0`` ``[B,C,H,W]`` for each image of ``x`` (``baseline``: this call's
        override of the constructor's)."""
        what = "baseline" if baseline is None else "baselines"
        value = self.baseline if baseline is None else check_baseline(baseline, BASELINES, what)
        if not isinstance(value, str):
            return expand_baseline(value, x, what)
        if value == "zero":
            return torch.zeros_like(x)
        if value == "black":
            value = torch.tensor(self._black_value(self._black), device=x.device, dtype=x.dtype)
            if value.numel() not in (1, x.shape[1]):
                raise ValueError(
                    f"black_value has {value.numel()} entries for {x.shape[1]} channels"
                )
            return value.view(1, -1, 1, 1).expand_as(x).clone()
        if value == "blur":
            return gaussian_blur(x, *self.blur(x))
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()

    def path_gradient(self, x: Tensor, x0: Tensor, target: Tensor) -> Tensor:
        """``sum_s w_s grad f_c(x0 + alpha_s (x - x0))``: ``[B,C,H,W]``, chunked over points."""
        b = x.shape[0]
        alphas = torch.tensor(self.alphas, device=x.device, dtype=x.dtype)
        weights = torch.tensor(self.weights, device=x.device, dtype=x.dtype)
        total = torch.zeros_like(x)
        n = self.steps * b
        size = self.internal_batch_size or n
        for start in range(0, n, size):
            idx = torch.arange(start, min(start + size, n), device=x.device)
            step, i = idx // b, idx % b  # point s of image i (step-major order)
            points = x0[i] + alphas[step].view(-1, 1, 1, 1) * (x[i] - x0[i])
            grad = input_gradient(self.model, points, target[i])[0]
            total.index_add_(0, i, grad * weights[step].view(-1, 1, 1, 1))
        return total

    def _attribute(
        self, x: Tensor, target: Tensor, *, baselines: BaselineLike | None = None
    ) -> Tensor:  # [B,C,H,W] -> [B,C,H,W]
        x = x.detach()
        x0 = self.make_baseline(x, baselines)
        grad = self.path_gradient(x, x0, target)
        return (x - x0) * grad if self.multiply_by_inputs else grad
