"""Random attribution: the chance baseline of every benchmark."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xai_bench.methods.base import Explainer
from xai_bench.models.meta import ModelMeta

_MASK62 = (1 << 62) - 1


def _mix(z: Tensor) -> Tensor:
    """A splitmix64-style integer hash on int64 tensors (wrapping arithmetic, 62-bit state)."""
    z = z & _MASK62
    z = ((z ^ (z >> 30)) * 0x3F58476D1CE4E5B9) & _MASK62
    z = ((z ^ (z >> 27)) * 0x14D049BB133111EB) & _MASK62
    return z ^ (z >> 31)


def image_keys(x: Tensor, seed: int) -> Tensor:
    """One int64 key per image from its content (exact integer arithmetic) and ``seed``."""
    q = (x.flatten(1).double() * 1000).round().long()
    pos = torch.arange(q.shape[1], device=x.device) % 1009 + 1
    return _mix((q * pos).sum(1) + seed * 1_000_003)


class RandomAttribution(Explainer):
    """Uniform noise ``[B, 1, H, W]`` in [0, 1), different for each image.

    The noise is a hash of the image's content and ``seed``, so the same image always gets the
    same map, in any batch and on any device, while different images get independent maps.
    """

    name = "random"

    def __init__(self, model: nn.Module, meta: ModelMeta | None = None, seed: int = 0) -> None:
        super().__init__(model, meta)
        self.seed = int(seed)

    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:
        b, _, h, w = x.shape
        keys = image_keys(x, self.seed)
        counter = torch.arange(h * w, device=x.device)
        bits = _mix(keys[:, None] * 0x2545F4914F6CDD1D + counter[None, :] + 1) >> 38  # 24 bits
        return (bits.float() / float(1 << 24)).view(b, 1, h, w)
