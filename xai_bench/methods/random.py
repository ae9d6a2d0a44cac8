"""Random attribution: the chance baseline of every benchmark."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xai_bench.methods.base import Explainer
from xai_bench.models.meta import ModelMeta


class RandomAttribution(Explainer):
    """Uniform noise ``[B, 1, H, W]``, seeded so that a rerun gives the same maps."""

    name = "random"

    def __init__(self, model: nn.Module, meta: ModelMeta | None = None, seed: int = 0) -> None:
        super().__init__(model, meta)
        self.generator = torch.Generator().manual_seed(seed)

    def attribute(self, x: Tensor, target: Tensor) -> Tensor:
        b, _, h, w = x.shape
        return torch.rand(b, 1, h, w, generator=self.generator).to(x.device)
