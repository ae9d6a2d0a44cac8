"""FullGrad (Srinivas & Fleuret, NeurIPS 2019): input-gradient and bias-gradient maps.

Follows the authors' code (``idiap/fullgrad-saliency``): bias terms of conv/linear
layers and BatchNorm effective biases ``b - mean * gamma / sqrt(var + eps)``, each the gradient
w.r.t. the layer output times the bias; the full-gradient decomposition is complete for
piecewise-linear networks: ``sum(grad * x) + sum(bias terms) = logit``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from xai_bench.methods.base import Explainer, MethodNotApplicableError, target_logits
from xai_bench.methods.cam_base import upsample
from xai_bench.methods.hooks import capture
from xai_bench.models.meta import ModelMeta


def effective_bias(module: nn.Module) -> Tensor:  # [K]
    """The bias a layer adds: ``.bias`` for conv/linear, the folded bias for BatchNorm."""
    if isinstance(module, _BatchNorm):
        scale = torch.rsqrt(module.running_var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight
        bias = -module.running_mean * scale
        return bias + module.bias if module.bias is not None else bias
    return module.bias


EPS = 1e-6  # psi's stabiliser, relative to the image's largest term (the authors': absolute)


def psi(t: Tensor, eps: float | Tensor = EPS) -> Tensor:  # [B,K,h,w] -> [B,1,h,w]
    """FullGrad's post-processing: abs, minus per-sample min, over (max + eps), channel sum.

    ``eps`` is a number or one value per sample ``[B]``.
    """
    shape = (-1, *[1] * (t.dim() - 1))
    t = t.abs()
    t = t - t.flatten(1).amin(dim=1).view(shape)
    eps = torch.as_tensor(eps, dtype=t.dtype, device=t.device)
    t = t / (t.flatten(1).amax(dim=1).view(shape) + (eps.view(shape) if eps.dim() else eps))
    return t.sum(dim=1, keepdim=True)


class FullGrad(Explainer):
    """FullGrad (Srinivas & Fleuret 2019): ``psi(grad * x) + sum_l psi(grad_l * b_l)``.

    The sum runs over layers with 4-D outputs (conv, BatchNorm2d); bias maps are upsampled
    bilinearly with ``align_corners=True`` as in the authors' code. The stabiliser of
    :func:`psi` is ``1e-6`` times the image's largest ``|term|`` (input and 4-D bias terms),
    where the authors' code adds an absolute ``1e-6``: the same when that term is about 1, and
    invariant to a rescaling of the logits (an absolute one weighs the terms by their size once
    gradients are below ~1e-6). Linear-layer biases enter the
    decomposition (:meth:`decompose`) but not the map. Needs a convolutional network without
    token reshape; BatchNorm must be in eval mode (its running statistics define the bias).

    Output: ``[B, 1, H, W]``, non-negative.
    """

    name = "fullgrad"
    needs_conv = True

    def __init__(self, model: nn.Module, meta: ModelMeta | None = None) -> None:
        super().__init__(model, meta)

    def check_applicable(self) -> None:
        super().check_applicable()
        if self.meta is not None and self.meta.reshape is not None:
            raise MethodNotApplicableError(
                f"{self.name} needs a CNN; {self.meta.name} reshapes transformer tokens"
            )
        modules = list(self.model.modules())
        if not any(isinstance(m, nn.Conv2d) for m in modules) or any(
            isinstance(m, nn.LayerNorm) for m in modules
        ):
            raise MethodNotApplicableError(
                f"{self.name} needs a convolutional network without LayerNorm (not a ViT)"
            )
        for m in modules:
            if isinstance(m, _BatchNorm) and m.running_mean is None:
                raise MethodNotApplicableError(
                    f"{self.name} needs BatchNorm running statistics (track_running_stats)"
                )

    def bias_layers(self) -> dict[str, nn.Module]:
        """Layers that add a bias: conv/linear with ``.bias`` and every BatchNorm."""
        return {
            name: m
            for name, m in self.model.named_modules()
            if isinstance(m, _BatchNorm)
            or (isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and m.bias is not None)
        }

    def decompose(self, x: Tensor, target: Tensor) -> tuple[Tensor, list[Tensor], Tensor]:
        """Full-gradient decomposition of each target logit.

        Returns ``(input_grad [B,C,H,W], bias_terms, logits [B, classes])``; ``bias_terms``
        holds ``dF_c/dz * b`` ``[B, K, ...]`` for every call of every bias layer.
        """
        layers = self.bias_layers()
        if any(m.training for m in layers.values() if isinstance(m, _BatchNorm)):
            raise ValueError(f"{self.name} needs BatchNorm layers in eval mode")
        x = x.detach().requires_grad_(True)
        with capture(self.model, list(layers)) as store, torch.enable_grad():
            logits = self.model(x)
            outputs = [(name, out) for name in layers for out in store[name]]
            grads = torch.autograd.grad(
                target_logits(logits, target).sum(),
                [x] + [o for _, o in outputs],
                allow_unused=True,
            )
        terms = []
        for (name, out), g in zip(outputs, grads[1:]):
            if g is None:  # a layer the target logit does not depend on
                continue
            bias = effective_bias(layers[name]).detach()
            terms.append(g * bias.view(1, -1, *[1] * (out.dim() - 2)))
        return grads[0], terms, logits.detach()

    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:  # [B,C,H,W] -> [B,1,H,W]
        grad, terms, _ = self.decompose(x, target)
        maps = [grad * x] + [t for t in terms if t.dim() == 4]
        eps = EPS * torch.stack([t.abs().flatten(1).amax(1) for t in maps]).amax(0)  # [B]
        eps = torch.where(eps > 0, eps, EPS)  # all terms zero: psi gives 0, not 0 / 0
        saliency = psi(maps[0], eps)
        for t in maps[1:]:
            saliency = saliency + upsample(psi(t, eps), x.shape[-2:], align_corners=True)
        return saliency
