"""The noise-tunnel family base (Captum NoiseTunnel): a base explainer on noisy input copies."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from xai_bench.methods.base import Explainer
from xai_bench.methods.gradient import Gradient
from xai_bench.models.meta import ModelMeta

SIGMA_MODES = ("range", "absolute")


class NoiseTunnel(Explainer):
    """Base explainer applied to noisy copies ``x + s * eps`` of the input (Captum NoiseTunnel).

    The noise ``eps [n_samples, C, H, W]`` is standard normal, drawn on every call in float32
    on the CPU from ``torch.Generator().manual_seed(seed)``, then cast to the input's dtype and
    device: the same seed gives the same noise (up to that cast) for float32, float64 or half
    inputs, on any device. It is shared by all images of the batch. Subclasses
    reduce the ``n_samples`` attributions of each image (:meth:`reduce`).

    Args:
        model: the classifier.
        meta: model facts, passed on to the base explainer.
        base: factory of the wrapped explainer, called as ``base(model=model, meta=meta)``
            (a class or a ``functools.partial``); its applicability check applies.
        n_samples: number of noisy copies per image.
        sigma: noise level. ``range``: ``s = sigma * (x.max() - x.min())`` per image (the
            SmoothGrad paper's noise level); ``absolute``: ``s = sigma`` in normalised units.
        sigma_mode: ``range`` or ``absolute``.
        internal_batch_size: how many noisy copies go through the base explainer at once
            (``None``: all ``n_samples * B`` together).
        seed: seed of the noise.
    """

    name = "noise_tunnel"

    def __init__(
        self,
        model: nn.Module,
        meta: ModelMeta | None = None,
        base: Callable[..., Explainer] = Gradient,
        n_samples: int = 50,
        sigma: float = 0.15,
        sigma_mode: str = "range",
        internal_batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model, meta)
        if sigma_mode not in SIGMA_MODES:
            raise ValueError(f"sigma_mode must be one of {SIGMA_MODES}, got {sigma_mode!r}")
        if n_samples < 1:
            raise ValueError("n_samples must be >= 1")
        if internal_batch_size is not None and internal_batch_size < 1:
            raise ValueError("internal_batch_size must be >= 1 or None")
        self.base = base(model=model, meta=meta)
        self.n_samples, self.sigma, self.sigma_mode = int(n_samples), float(sigma), sigma_mode
        self.internal_batch_size = internal_batch_size
        self.seed = int(seed)

    def noise(self, x: Tensor) -> Tensor:  # [B,C,H,W] -> [n_samples,C,H,W]
        """The standard-normal noise of this call (the same on every call, for every image and
        whatever ``x``'s dtype: drawn in float32, then cast)."""
        generator = torch.Generator().manual_seed(self.seed)
        shape = (self.n_samples, *x.shape[1:])
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        return noise.to(device=x.device, dtype=x.dtype)

    def scale(self, x: Tensor) -> Tensor:  # [B,C,H,W] -> [B]
        """The noise standard deviation of each image."""
        if self.sigma_mode == "absolute":
            return torch.full((x.shape[0],), self.sigma, device=x.device, dtype=x.dtype)
        return self.sigma * (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)))

    def moments(self, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and (population) variance over the noisy copies: two ``[B, C', H, W]``.

        Sums are shifted by each image's first noisy attribution (numerically stable, and exact
        when all copies agree, e.g. ``sigma = 0``).
        """
        x = x.detach()
        b, n = x.shape[0], self.n_samples * x.shape[0]
        eps, s = self.noise(x), self.scale(x)
        size = self.internal_batch_size or n
        shift = s1 = s2 = torch.empty(0)
        for start in range(0, n, size):
            idx = torch.arange(start, min(start + size, n), device=x.device)
            k, i = idx // b, idx % b  # noise sample k of image i (k-major order)
            attr = self.base.attribute_unchecked(x[i] + s[i].view(-1, 1, 1, 1) * eps[k], target[i])
            if start == 0:
                shift = attr.new_zeros((b, *attr.shape[1:]))
                s1, s2 = torch.zeros_like(shift), torch.zeros_like(shift)
            first = max(0, min(b - start, len(idx)))  # rows with k == 0 lead the chunk
            shift[start : start + first] = attr[:first]
            d = attr - shift[i]
            s1.index_add_(0, i, d)
            s2.index_add_(0, i, d * d)
        mean = s1 / self.n_samples
        return shift + mean, (s2 / self.n_samples - mean * mean).clamp_min(0)

    def reduce(self, mean: Tensor, var: Tensor) -> Tensor:
        """The attribution from the per-image mean and variance over noisy copies."""
        raise NotImplementedError

    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:  # [B,C,H,W] -> [B,C',H,W]
        return self.reduce(*self.moments(x, target))
