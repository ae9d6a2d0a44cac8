"""Score-CAM (Wang et al., CVPR-W 2020): activation maps weighted by masked-input scores."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xai_bench.methods.base import target_logits
from xai_bench.methods.cam_base import CAM, minmax, upsample
from xai_bench.models.meta import ModelMeta
from xai_bench.utils.batching import chunked

WEIGHTINGS = ("channel_softmax", "class_softmax")


class ScoreCAM(CAM):
    """Score-CAM (Wang et al. 2020): gradient-free CAM, ``ReLU(sum_k w_k A^k)``.

    Each channel ``A^k`` is upsampled to the input size and min-max normalised to a mask
    ``H^k``; the masked input is ``x * H^k`` (zero baseline in normalised space, no blur), and
    ``s_k`` is the target logit of that input. The weights are, by ``weighting``:

    * ``channel_softmax`` (default): ``w = softmax_k(s_k)``, the paper's Algorithm 1 and
      pytorch-grad-cam. The paper's baseline score ``f_c(X_b)`` is omitted: subtracting one
      constant per sample does not change a softmax over channels.
    * ``class_softmax``: ``w_k = softmax_classes(f(x * H^k))[c]``, the authors' released code
      (also run by Group-CAM's comparisons); constant channels get weight 0 (skipped there).

    Args:
        layer, reshape, num_prefix_tokens, relu: as in :class:`~xai_bench.methods.cam_base.CAM`.
        weighting: ``channel_softmax`` or ``class_softmax``.
        mask_align_corners: upsample the masks with ``align_corners=True`` (pytorch-grad-cam's
            ``UpsamplingBilinear2d``) instead of ``False`` (the authors' code).
        internal_batch_size: masked inputs per forward pass (``None``: all ``B*K`` at once).
    """

    name = "scorecam"
    uses_gradients = False
    mask_eps: float = 1e-8  # (m - min) / (max - min + eps), as both reference codes

    def __init__(
        self,
        model: nn.Module,
        meta: ModelMeta | None = None,
        layer: str | nn.Module | None = None,
        reshape: str | None = None,
        num_prefix_tokens: int = 0,
        relu: bool = True,
        weighting: str = "channel_softmax",
        mask_align_corners: bool = False,
        internal_batch_size: int | None = 64,
    ) -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got '{weighting}'")
        self.weighting = weighting
        self.mask_align_corners = bool(mask_align_corners)
        self.internal_batch_size = internal_batch_size
        super().__init__(model, meta, layer, reshape, num_prefix_tokens, relu)

    def scores(self, x: Tensor, target: Tensor, acts: Tensor) -> Tensor:  # -> [B,K]
        """Target score ``s_k`` of every masked input (softmax probability for
        ``class_softmax``, logit otherwise), batched over samples and channels."""
        b, k = acts.shape[:2]
        flat = acts.flatten(0, 1).unsqueeze(1)  # [B*K,1,h,w]

        def score(idx: Tensor) -> Tensor:  # [n] flat (sample, channel) indices -> [n]
            up = upsample(flat[idx], x.shape[-2:], align_corners=self.mask_align_corners)
            masks = minmax(up, eps=self.mask_eps)
            sample = torch.div(idx, k, rounding_mode="floor")
            out = self.model(x[sample] * masks)
            if self.weighting == "class_softmax":
                out = out.softmax(dim=1)
            return target_logits(out, target[sample])

        idx = torch.arange(b * k, device=x.device)
        with torch.no_grad():
            return chunked(score, idx, self.internal_batch_size).view(b, k)

    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:  # [B,C,H,W] -> [B,1,H,W]
        acts, _ = self.layer_maps(x, target)
        s = self.scores(x.detach(), target, acts)
        if self.weighting == "channel_softmax":
            w = s.softmax(dim=1)
        else:
            w = s * (acts.amax(dim=(2, 3)) > acts.amin(dim=(2, 3)))
        return self.finish((w[:, :, None, None] * acts).sum(dim=1, keepdim=True), x)
