"""Class activation maps: the shared template of the CAM family (Grad-CAM and relatives).

A CAM reads the activations ``A`` of one layer and the gradients ``dF_c/dA`` of the target
logit (one forward and one backward pass), turns them into a map at feature resolution,
optionally applies the papers' ReLU, and upsamples it bilinearly to the input size. Subclasses
implement :meth:`CAM.weights` (``[B, K]`` channel weights, map = ``sum_k w_k A^k``) or override
:meth:`CAM.combine`. Transformer tokens are folded into a grid with ``to_feature_map``, so the
family works on ViTs (``reshape="vit_tokens"``).

The module-level helpers (:func:`layer_maps`, :func:`upsample`, :func:`minmax`) are shared with
the multi-layer and perturbation members (Cumulative*, Score-CAM, Group-CAM).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xai_bench.methods.base import Explainer, target_logits
from xai_bench.methods.hooks import capture
from xai_bench.models.layers import layer_path, to_feature_map
from xai_bench.models.meta import ModelMeta
from xai_bench.utils.numerics import CONSTANT_RTOL, constant_maps


def _single_call(store: dict[str, list[Tensor]], name: str) -> Tensor:
    calls = store[name]
    if len(calls) != 1:
        raise ValueError(
            f"layer '{name}' ran {len(calls)} times in one forward pass; a CAM layer must run "
            "exactly once (pick a module that is not reused)"
        )
    return calls[0]


def layer_maps(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    layers: Sequence[str],
    reshape: str | None = None,
    num_prefix_tokens: int = 0,
    gradients: bool = True,
) -> tuple[list[Tensor], list[Tensor] | None, Tensor]:
    """Activations and target-logit gradients of ``layers`` as feature maps ``[B, K, h, w]``.

    One forward pass records every layer; with ``gradients`` one backward pass
    (``torch.autograd.grad`` w.r.t. the recorded outputs, so no parameter gradient is touched)
    gives ``dF_c/dA`` for all of them. Returns ``(acts, grads or None, logits [B, classes])``,
    all detached.
    """
    x = x.detach().requires_grad_(gradients)
    with capture(model, list(layers)) as store, torch.set_grad_enabled(gradients):
        logits = model(x)
        outputs = [_single_call(store, name) for name in layers]
        grads = None
        if gradients:
            grads = torch.autograd.grad(target_logits(logits, target).sum(), outputs)
    acts = [to_feature_map(a.detach(), reshape, num_prefix_tokens) for a in outputs]
    if grads is not None:
        grads = [to_feature_map(g.detach(), reshape, num_prefix_tokens) for g in grads]
    return acts, grads, logits.detach()


def upsample(maps: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
    """Bilinear resize of ``[B, K, h, w]`` maps to ``size`` (identity when already that size)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=align_corners)


def minmax(
    maps: Tensor, dims: Sequence[int] = (1, 2, 3), eps: float = 0.0, rtol: float = CONSTANT_RTOL
) -> Tensor:
    """Min-max scale to [0, 1] over ``dims`` (per sample by default); a constant map becomes 0.

    A map is constant when its span is at most ``rtol`` times its largest magnitude
    (:func:`~xai_bench.metrics.postprocess.constant_maps`, 1e-5 by default): the float32
    ripple of bilinear upsampling on a map that is constant by definition (GradMid at a layer
    feeding global pooling) must not be stretched into a [0, 1] noise map. With ``eps > 0``
    the scale is ``(m - min) / (max - min + eps)`` (pytorch-grad-cam's form).
    """
    dims = tuple(dims)
    lo = maps.amin(dim=dims, keepdim=True)
    hi = maps.amax(dim=dims, keepdim=True)
    span = hi - lo
    flat = constant_maps(lo, hi, rtol)
    scaled = (maps - lo) / (span + eps) if eps > 0 else (maps - lo) / torch.where(flat, 1.0, span)
    return torch.where(flat, torch.zeros_like(maps), scaled)


class CAM(Explainer):
    """Template of gradient-weighted class activation maps at one layer.

    Args:
        model: the classifier.
        meta: model facts; used only to refuse inapplicable models.
        layer: dotted path of the CAM layer (``meta.cam_layer`` in the configs), or the
            submodule itself (``model.layer4``; stored as its path). ``None`` is refused with
            :class:`MethodNotApplicableError` (e.g. the MLP has no CAM layer).
        reshape: how the layer output becomes ``[B, K, h, w]`` (``None`` or ``vit_tokens``).
        num_prefix_tokens: class/register tokens dropped before the token-to-grid reshape.
        relu: apply the papers' ReLU to the map (switchable for sanity checks).

    Output: ``[B, 1, H, W]``, the map bilinearly upsampled (``align_corners=False``).
    """

    name = "cam"
    needs_layer = True
    uses_gradients = True

    def __init__(
        self,
        model: nn.Module,
        meta: ModelMeta | None = None,
        layer: str | nn.Module | None = None,
        reshape: str | None = None,
        num_prefix_tokens: int = 0,
        relu: bool = True,
    ) -> None:
        self.layer = None if layer is None else layer_path(model, layer)
        self.reshape = reshape
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.relu = bool(relu)
        super().__init__(model, meta)

    def layer_maps(self, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        """Activations and gradients ``[B, K, h, w]`` of :attr:`layer` (grads ``None`` when
        the method needs no backward pass)."""
        acts, grads, _ = layer_maps(
            self.model, x, target, [self.layer], self.reshape, self.num_prefix_tokens,
            gradients=self.uses_gradients,
        )  # fmt: skip
        return acts[0], None if grads is None else grads[0]

    def weights(self, acts: Tensor, grads: Tensor) -> Tensor:  # [B,K,h,w] x2 -> [B,K]
        """Channel weights ``w_k``; the map is ``sum_k w_k A^k`` unless :meth:`combine` differs."""
        raise NotImplementedError(f"{type(self).__name__} implements neither weights nor combine")

    def combine(self, acts: Tensor, grads: Tensor | None) -> Tensor:  # -> [B,1,h,w]
        """The map at feature resolution, before the ReLU."""
        w = self.weights(acts, grads)
        return (w[:, :, None, None] * acts).sum(dim=1, keepdim=True)

    def finish(self, cam: Tensor, x: Tensor) -> Tensor:  # [B,1,h,w] -> [B,1,H,W]
        """Optional ReLU, then bilinear upsampling to the input size."""
        if self.relu:
            cam = cam.clamp_min(0)
        return upsample(cam, x.shape[-2:])

    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:  # [B,C,H,W] -> [B,1,H,W]
        acts, grads = self.layer_maps(x, target)
        return self.finish(self.combine(acts, grads), x)
