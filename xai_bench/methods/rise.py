"""RISE (Petsiuk et al., BMVC 2018): saliency from randomly masked inputs."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xai_bench.methods.base import Explainer, target_logits
from xai_bench.models.meta import ModelMeta

SCORES = ("softmax", "logit")


class RISE(Explainer):
    """RISE (Petsiuk et al. 2018): ``S = sum_i score(x * M_i) M_i / (N p1)``.

    The masks follow the RISE recipe (``eclique/RISE:explanations.py``): a binary ``s x s`` grid
    whose cells are kept with probability ``p1`` is upsampled bilinearly (``align_corners=False``;
    RISE uses skimage's ``resize`` with reflected borders, which differs only in the outer
    half-cell) to ``(s + 1) * cell`` with ``cell = ceil(H / s)``, and cropped to ``H x W`` at a
    random shift in ``[0, cell)``. The masked input is ``x * M`` (zero = dataset mean in
    normalised space). The score is the target's softmax probability (RISE, whose model ends
    in a softmax) or its logit (Group-CAM's RISE baseline, ``Group-CAM:cam/rise.py``).

    The grids and shifts are drawn on every call from ``torch.Generator().manual_seed(seed)``,
    the same for every image of the batch, so a batch equals per-sample calls.

    Args:
        model: the classifier.
        meta: model facts (unused apart from the applicability check).
        n_masks: number of random masks ``N``.
        s: grid size.
        p1: probability that a grid cell is kept.
        score: ``softmax`` or ``logit``.
        internal_batch_size: masked images per forward pass (``None``: all ``N * B`` at once).
        seed: seed of the masks.
    """

    name = "rise"

    def __init__(
        self,
        model: nn.Module,
        meta: ModelMeta | None = None,
        n_masks: int = 4000,
        s: int = 7,
        p1: float = 0.1,
        score: str = "softmax",
        internal_batch_size: int | None = 256,
        seed: int = 0,
    ) -> None:
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        if n_masks < 1 or s < 1 or not 0.0 < p1 <= 1.0:
            raise ValueError(f"need n_masks >= 1, s >= 1 and 0 < p1 <= 1, got {n_masks, s, p1}")
        if internal_batch_size is not None and internal_batch_size < 1:
            raise ValueError("internal_batch_size must be >= 1 or None")
        super().__init__(model, meta)
        self.n_masks, self.s, self.p1, self.score = int(n_masks), int(s), float(p1), score
        self.internal_batch_size = internal_batch_size
        self.seed = int(seed)

    def draw(self, height: int, width: int) -> tuple[Tensor, Tensor]:
        """This call's random grids ``[N, s, s]`` (0/1) and crop shifts ``[N, 2]`` (CPU)."""
        generator = torch.Generator().manual_seed(self.seed)
        grid = torch.rand((self.n_masks, self.s, self.s), generator=generator) < self.p1
        cell_h, cell_w = math.ceil(height / self.s), math.ceil(width / self.s)
        dy = torch.randint(0, cell_h, (self.n_masks,), generator=generator)
        dx = torch.randint(0, cell_w, (self.n_masks,), generator=generator)
        return grid.float(), torch.stack([dy, dx], dim=1)

    def masks(self, grid: Tensor, shift: Tensor, height: int, width: int) -> Tensor:
        """Upsample-and-crop masks ``[n, 1, H, W]`` from grids ``[n, s, s]``, shifts ``[n, 2]``."""
        cell_h, cell_w = math.ceil(height / self.s), math.ceil(width / self.s)
        size = ((self.s + 1) * cell_h, (self.s + 1) * cell_w)
        up = F.interpolate(grid.unsqueeze(1), size=size, mode="bilinear", align_corners=False)
        rows = shift[:, :1] + torch.arange(height, device=grid.device)  # [n, H]
        cols = shift[:, 1:] + torch.arange(width, device=grid.device)  # [n, W]
        n = torch.arange(grid.shape[0], device=grid.device)[:, None, None]
        return up[:, 0][n, rows[:, :, None], cols[:, None, :]].unsqueeze(1)

    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:  # [B,C,H,W] -> [B,1,H,W]
        x = x.detach()
        b, _, h, w = x.shape
        grid, shift = self.draw(h, w)
        grid, shift = grid.to(device=x.device, dtype=x.dtype), shift.to(x.device)
        total = b * self.n_masks
        size = self.internal_batch_size or total
        saliency = x.new_zeros(b, h * w)
        with torch.no_grad():
            for start in range(0, total, size):
                idx = torch.arange(start, min(start + size, total), device=x.device)
                k, i = torch.div(idx, b, rounding_mode="floor"), idx % b  # mask k, image i
                first, last = int(k[0]), int(k[-1]) + 1  # contiguous: upsample each once
                m = self.masks(grid[first:last], shift[first:last], h, w)[k - first]
                out = self.model(x[i] * m)
                if self.score == "softmax":
                    out = out.softmax(dim=1)
                saliency.index_add_(0, i, target_logits(out, target[i])[:, None] * m.flatten(1))
        return (saliency / (self.n_masks * self.p1)).view(b, 1, h, w)
