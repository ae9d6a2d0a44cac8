"""Group-CAM as a fine-tuning augmentation (Zhang et al. 2021, "Group-CAM", §5).

The paper fine-tunes a classifier on images whose unimportant regions are blurred: per
training image, the forward-only Group-CAM map ``S`` (``G = 16`` groups of raw activations, no
gradient weights, no de-noising) for the **ground-truth** class is binarised at its own mean,
``M = [S >= mean(S)]``, and the image is replaced by ``I * M + blur(I) * (1 - M)`` (Gaussian blur,
51 px kernel, sigma 50, of the normalised image). This follows the paper, not the authors'
``main.py`` (full Group-CAM with gradients and G=32, one mean over the whole batch of maps, and
a blend that adds ``1 - M`` instead of multiplying the blur by it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from xai_bench.methods.groupcam import GroupCAM
from xai_bench.training.lit import Classifier
from xai_bench.training.recipe import Recipe
from xai_bench.utils.blur import gaussian_blur

# The fine-tuning defaults (GCAM §5 fine-tunes with SGD and decays the rate by 10).
FINETUNE_RECIPE = Recipe(
    optimizer="sgd", lr=1e-3, weight_decay=1e-4, max_epochs=3, gamma=0.1, nesterov=False
)


def binarise_at_mean(saliency: Tensor) -> Tensor:
    """``[B, 1, H, W]`` maps -> float masks ``M = [S >= mean(S)]``, the mean taken per image.

    The paper binarises "with the threshold of its mean value"; the comparison is the authors'
    (``torch.where(s < mean, 0, 1)``). It matters only for pixels exactly at the mean, e.g. a
    constant map (Group-CAM found no group that raises the class score over the blurred image):
    its mask is all ones and the image stays as it is, rather than being blurred entirely.
    """
    mean = saliency.mean(dim=tuple(range(1, saliency.dim())), keepdim=True)
    return (saliency >= mean).to(saliency.dtype)


def groupcam_blend(
    x: Tensor, saliency: Tensor, blur_kernel: int = 51, blur_sigma: float = 50.0
) -> Tensor:
    """``I * M + blur(I) * (1 - M)`` with ``M`` the map binarised at its per-image mean
    (:func:`binarise_at_mean`).

    Args:
        x: normalised images ``[B, C, H, W]``.
        saliency: maps ``[B, 1, H, W]`` (any scale; only the comparison with the mean matters).
        blur_kernel: odd Gaussian kernel size (paper: 51).
        blur_sigma: its standard deviation in pixels (paper: 50).
    """
    mask = binarise_at_mean(saliency).to(x.dtype)
    return x * mask + gaussian_blur(x, blur_kernel, blur_sigma) * (1 - mask)


@contextmanager
def eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule of ``net`` in eval mode and restore each one's flag on exit (also
    on error). Only for networks the caller owns."""
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        yield net
    finally:
        for module, training in modes:
            module.training = training


class GroupCAMAugment(Classifier):
    """:class:`~xai_bench.training.lit.Classifier` whose training images are Group-CAM blends.

    With probability ``p`` per image (``p = 1``: every image, the paper), the training image is
    replaced by :func:`groupcam_blend` of its forward-only Group-CAM map for its label. The maps
    come from the network being trained, switched to eval mode (BatchNorm uses and keeps its
    running statistics) and run without gradients; each submodule's mode is restored after,
    also on error. Validation and test images are left as they are. ``p = 0`` is plain
    fine-tuning with exactly the same numbers.

    Args:
        net: the network (owned by this module).
        layer: dotted path of the Group-CAM layer (``model.cam_layer``).
        reshape: token-to-grid reshape of that layer (``None`` or ``vit_tokens``).
        num_prefix_tokens: class/register tokens dropped before the reshape.
        p: probability that a training image is replaced by its blend.
        groups: Group-CAM channel groups ``G`` (paper: 16 for fine-tuning).
        blur_kernel: Gaussian kernel size of the blur (paper: 51).
        blur_sigma: its standard deviation (paper: 50).
        internal_batch_size: Group-CAM's blended inputs per forward pass (``None``: all).
        seed: seed of the per-image draws when ``0 < p < 1`` (drawn from ``(seed, step, rank)``,
            so a resumed run draws the same images).
        recipe: the training recipe, as in ``Classifier`` (default: :data:`FINETUNE_RECIPE`).
    """

    def __init__(
        self,
        net: nn.Module,
        layer: str,
        reshape: str | None = None,
        num_prefix_tokens: int = 0,
        p: float = 1.0,
        groups: int = 16,
        blur_kernel: int = 51,
        blur_sigma: float = 50.0,
        internal_batch_size: int | None = 256,
        seed: int = 0,
        recipe: Recipe | None = None,
    ) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p is a probability in [0, 1], got {p}")
        super().__init__(net, recipe if recipe is not None else FINETUNE_RECIPE, multilabel=False)
        own = {"layer": layer, "reshape": reshape, "num_prefix_tokens": int(num_prefix_tokens),
               "p": float(p), "groups": int(groups), "blur_kernel": int(blur_kernel),
               "blur_sigma": float(blur_sigma), "internal_batch_size": internal_batch_size,
               "seed": int(seed)}  # fmt: skip
        self.save_hyperparameters({**self.hparams, **own})  # plain types only, as Classifier's
        self.explainer = GroupCAM(
            net,
            layer=layer,
            reshape=reshape,
            num_prefix_tokens=num_prefix_tokens,
            groups=groups,
            theta=None,
            blur_kernel=blur_kernel,
            blur_sigma=blur_sigma,
            forward_only=True,
            internal_batch_size=internal_batch_size,
        )

    def saliency(self, x: Tensor, labels: Tensor) -> Tensor:  # -> [B,1,H,W]
        """Forward-only Group-CAM maps of ``labels``, from the net in eval mode, no gradients."""
        with eval_mode(self.net), torch.no_grad():
            return self.explainer(x.detach(), labels)

    def chosen(self, n: int) -> Tensor:  # -> [n] bool
        """Which of ``n`` training images are replaced (all for p=1, none for p=0)."""
        p = float(self.hparams.p)
        if p >= 1.0 or p <= 0.0:
            return torch.full((n,), p >= 1.0, dtype=torch.bool)
        key = (int(self.hparams.seed) * 1_000_003 + self.global_step) * 1009 + self.global_rank
        g = torch.Generator().manual_seed(key)
        return torch.rand(n, generator=g) < p

    def augment(self, x: Tensor, labels: Tensor) -> Tensor:
        """The batch with the chosen images replaced by their Group-CAM blends."""
        chosen = self.chosen(x.shape[0]).to(x.device)
        if not bool(chosen.any()):
            return x
        xs = x[chosen]
        saliency = self.saliency(xs, labels[chosen])
        hp = self.hparams
        out = x.clone()
        out[chosen] = groupcam_blend(xs, saliency, hp.blur_kernel, hp.blur_sigma).to(x.dtype)
        if self._trainer is not None:  # share of pixels kept sharp
            area = binarise_at_mean(saliency).mean()
            self.log("train/mask_area", area, batch_size=int(chosen.sum()))
        return out

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        if float(self.hparams.p) > 0.0:
            batch = {**batch, "image": self.augment(batch["image"], batch["label"])}
        return self._step(batch, "train")
