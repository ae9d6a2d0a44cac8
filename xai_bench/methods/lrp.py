"""Layer-wise relevance propagation (Bach et al., 2015): LRP-0 and LRP-gamma as modified gradients.

Each ``nn.Linear`` / ``nn.ConvNd`` call (and each ``BatchNorm``) returns a tensor whose value is
the layer's true output ``z`` but whose gradient is that of the rule's modified output ``z'``,
scaled by ``z / z'`` (the zennit formulation)::

    out = z.detach() + (z' - z'.detach()) * (z / stab(z')).detach()

With ``g = R / z`` flowing backwards, the layer's input then receives ``R_i = x_i * grad_i =
sum_j x_i w'_ij R_j / z'_j``, the LRP rule; ReLUs, max pooling and flattening pass the plain
gradient, average pooling and residual additions split relevance in proportion to their inputs
(gradient x input of a linear map), and the relevance of the input is ``x * grad`` of the target
logit, so the relevance put on the output is the logit itself.

A ``BatchNorm`` applied straight to the output of a linear layer (the eval-mode affine map
``s * z + t`` from its running statistics) is merged into that layer, as zennit's canonizers do,
without copying the model: its hook recomputes ``z'`` from the linear layer's input with the
merged weights ``s * w`` and bias ``s * b + t``, which cuts the unmerged path out of the
gradient. Any other ``BatchNorm`` is treated as a linear layer of its own (diagonal weight ``s``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from xai_bench.methods.base import Explainer, MethodNotApplicableError, input_gradient
from xai_bench.methods.modified_relu import OTHER_ACTIVATIONS
from xai_bench.models.meta import ModelMeta

LinearFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]  # (x, weight, bias) -> z
# Layers whose relevance the rules cannot propagate (normalisations with sample statistics).
UNSUPPORTED = (
    *OTHER_ACTIVATIONS,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
)


def is_linear(module: nn.Module) -> bool:
    """A layer the rules apply to: ``nn.Linear`` or a (non-transposed) ``nn.ConvNd``."""
    return isinstance(module, nn.Linear) or (isinstance(module, _ConvNd) and not module.transposed)


def linear_fn(module: nn.Module) -> LinearFn:
    """The layer's map as a function of ``(x, weight, bias)`` (stride, padding ... kept)."""
    if isinstance(module, nn.Linear):
        return F.linear
    return module._conv_forward  # type: ignore[operator]


def batchnorm_affine(bn: _BatchNorm) -> tuple[Tensor, Tensor]:
    """Eval-mode BatchNorm as ``s * x + t`` per channel: ``(s, t)`` from the running statistics."""
    scale = torch.rsqrt(bn.running_var.detach() + bn.eps)  # type: ignore[union-attr]
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    shift = -bn.running_mean.detach() * scale  # type: ignore[union-attr]
    if bn.bias is not None:
        shift = shift + bn.bias.detach()
    return scale, shift


def _diagonal(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """A per-channel affine map on ``[B, C, ...]`` (a standalone BatchNorm)."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    out = x * weight.view(shape)
    return out if bias is None else out + bias.view(shape)


def stabilize(z: Tensor, epsilon: float) -> Tensor:
    """``z + epsilon * sign(z)`` with ``sign(0) = +1`` (zennit's stabiliser)."""
    return z + epsilon * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def _plus(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.clamp(min=0)


def _minus(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.clamp(max=0)


def _add_gamma(t: Tensor | None, part: Tensor | None, gamma: float) -> Tensor | None:
    return None if t is None or part is None else t + gamma * part


def modified_output(
    fn: LinearFn, x: Tensor, w: Tensor, b: Tensor | None, z: Tensor, gamma: float
) -> Tensor:
    """The rule's ``z'`` (same shape as ``z``), differentiable w.r.t. ``x``.

    ``gamma = 0``: ``w x + b`` (LRP-0). ``gamma = inf``: ``w+ x+ + w- x- + b+``, the positive
    contributions (zennit ``ZPlus``, alpha1-beta0). Otherwise zennit's generalised ``Gamma``:
    ``(w + gamma w+) x+ + (w + gamma w-) x- + b + gamma b+`` where ``z > 0``, and the same with
    ``+`` and ``-`` swapped where ``z <= 0``.
    """
    if gamma == 0:
        return fn(x, w, b)
    xp, xn = x.clamp(min=0), x.clamp(max=0)
    if math.isinf(gamma):
        return fn(xp, w.clamp(min=0), _plus(b)) + fn(xn, w.clamp(max=0), None)
    wp, wn = w + gamma * w.clamp(min=0), w + gamma * w.clamp(max=0)
    bp, bn = _add_gamma(b, _plus(b), gamma), _add_gamma(b, _minus(b), gamma)
    positive = fn(xp, wp, bp) + fn(xn, wn, None)
    negative = fn(xp, wn, bn) + fn(xn, wp, None)
    return torch.where(z > 0, positive, negative)


def lrp_output(
    fn: LinearFn, x: Tensor, w: Tensor, b: Tensor | None, z: Tensor, gamma: float, epsilon: float
) -> Tensor:
    """``z`` in value, with the rule's gradient ``d out / d x = (z / stab(z')) d z' / d x``.

    For LRP-0 the ratio is taken as ``z' / stab(z')``: ``z' = z`` up to rounding (a merged
    BatchNorm is recomputed), and a ratio of two rounded near-zero numbers is noise.
    """
    zm = modified_output(fn, x, w, b, z, gamma)
    den = stabilize(zm.detach(), epsilon)
    z = z.detach()
    num = zm.detach() if gamma == 0 else z
    scale = torch.where(den == 0, torch.zeros_like(z), num / torch.where(den == 0, 1.0, den))
    return z + (zm - zm.detach()) * scale


@contextmanager
def lrp_rules(model: nn.Module, gamma: float, epsilon: float) -> Iterator[None]:
    """Inside the block, every linear layer and BatchNorm of ``model`` back-propagates the rule.

    A BatchNorm whose input is the unmodified output of the linear layer called just before it
    (same tensor, no in-place change since) is merged into that layer.
    """
    last: dict[str, tuple] = {}  # "out": (output, its version, module, input)

    def linear_hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        w, b = module.weight.detach(), module.bias
        b = None if b is None else b.detach()
        out = lrp_output(linear_fn(module), inputs[0], w, b, output, gamma, epsilon)
        last["out"] = (out, out._version, module, inputs[0])
        return out

    def bn_hook(module: _BatchNorm, inputs: tuple, output: Tensor) -> Tensor:
        scale, shift = batchnorm_affine(module)
        prev = last.pop("out", None)
        if prev is not None and inputs[0] is prev[0] and prev[0]._version == prev[1]:
            layer, x = prev[2], prev[3]
            w = layer.weight.detach() * scale.view((-1,) + (1,) * (layer.weight.dim() - 1))
            b = shift if layer.bias is None else layer.bias.detach() * scale + shift
            return lrp_output(linear_fn(layer), x, w, b, output, gamma, epsilon)
        return lrp_output(_diagonal, inputs[0], scale, shift, output, gamma, epsilon)

    handles = []
    try:
        for m in model.modules():
            if is_linear(m):
                handles.append(m.register_forward_hook(linear_hook))
            elif isinstance(m, _BatchNorm):
                handles.append(m.register_forward_hook(bn_hook))
        yield
    finally:
        for h in handles:
            h.remove()
        last.clear()


class LRP(Explainer):
    """Layer-wise relevance propagation (Bach et al., 2015), LRP-0 and LRP-gamma (POSAGG Eq. 8).

    The same rule at every linear layer, the input layer included: ``gamma = 0`` is
    the z-rule (LRP-0), ``gamma > 0`` weighs positive contributions ``w + gamma w+``, and
    ``gamma = inf`` keeps only positive contributions (z+ rule, alpha1-beta0, Excitation
    Backprop). Rules as zennit's ``Epsilon`` / ``Gamma`` / ``ZPlus``: biases are an input of
    value 1 (modified like the weights), and for ``0 < gamma < inf`` outputs ``z <= 0`` and
    negative inputs use zennit's generalised rule (see :func:`modified_output`); on ReLU
    activations with ``z > 0`` all of these are Eq. 8 exactly.

    Args:
        model: a ReLU network (conv / linear layers, BatchNorm, pooling, residual additions).
        meta: model facts; ``relu_only`` must hold.
        gamma: ``0`` (LRP-0), a positive float, or ``math.inf``.
        epsilon: stabiliser added to every denominator with its sign (``sign(0) = +1``).
    """

    name = "lrp"
    needs_relu = True

    def __init__(
        self,
        model: nn.Module,
        meta: ModelMeta | None = None,
        gamma: float = 0.0,
        epsilon: float = 1e-9,
    ) -> None:
        if not gamma >= 0:
            raise ValueError(f"gamma must be >= 0 (or inf), got {gamma}")
        if not epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        self.gamma = float(gamma)
        self.epsilon = float(epsilon)
        super().__init__(model, meta)

    def check_applicable(self) -> None:
        """Also refuse non-ReLU activations, sample-statistics norms and nets without layers."""
        super().check_applicable()
        model_name = self.meta.name if self.meta is not None else type(self.model).__name__
        other = sorted(
            {type(m).__name__ for m in self.model.modules() if isinstance(m, UNSUPPORTED)}
        )
        if other:
            raise MethodNotApplicableError(
                f"{self.name} has rules for ReLU networks with linear, conv and BatchNorm layers; "
                f"{model_name} has {other}"
            )
        if not any(is_linear(m) for m in self.model.modules()):
            raise MethodNotApplicableError(f"{self.name}: {model_name} has no linear/conv layer")
        if any(isinstance(m, _BatchNorm) and m.running_var is None for m in self.model.modules()):
            raise MethodNotApplicableError(
                f"{self.name} needs BatchNorm running statistics; {model_name} has none"
            )

    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:  # [B,C,H,W] -> [B,C,H,W]
        with lrp_rules(self.model, self.gamma, self.epsilon):
            grad = input_gradient(self.model, x, target)[0]
        return x * grad
