"""Mean-shifted twins of a network (Kindermans et al., "(Un)reliability of saliency methods").

UNREL §2: a network ``f1`` and a copy ``f2`` whose first layer absorbs a constant
input shift ``m2`` in its bias, ``b2 = b1 - W m2``, so that ``f2(x + m2) == f1(x)`` for every
``x``: same weights, same activations from the first layer on, same outputs.

Supported first layers (the first layer with parameters that the forward pass calls, which must
see the raw input, flattened or not):

* ``nn.Linear``: any shift ``m2`` of the input's shape;
* ``nn.Conv2d``: only shifts whose bias-free convolution is spatially constant per output
  channel (e.g. a per-channel constant shift with ``padding=0``); zero padding, or a
  non-constant shift, makes the border / position-dependent offsets impossible to put in a bias.

Everything else is refused with a ``ValueError``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SUPPORTED = (nn.Linear, nn.Conv2d)


def first_layer(model: nn.Module, input_shape: Sequence[int]) -> tuple[str, nn.Module]:
    """The first parametrised module called by ``model`` on inputs ``[B, *input_shape]``.

    Raises:
        ValueError: if it is not an ``nn.Linear`` / ``nn.Conv2d`` or does not see the raw input
            (e.g. a normalisation or another layer runs before it).
    """
    calls: list[tuple[str, nn.Module, Tensor]] = []
    handles = []
    for name, module in model.named_modules():
        if list(module.children()) or not any(True for _ in module.parameters(recurse=False)):
            continue

        def hook(mod: nn.Module, inputs: tuple, out: Tensor, name: str = name) -> None:
            if not calls:
                calls.append((name, mod, inputs[0].detach()))

        handles.append(module.register_forward_hook(hook))
    param = next(model.parameters())
    gen = torch.Generator().manual_seed(0)
    probe = torch.rand(2, *input_shape, generator=gen, dtype=torch.float64)
    probe = probe.to(device=param.device, dtype=param.dtype)
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for h in handles:
            h.remove()
    if not calls:
        raise ValueError(f"{type(model).__name__} calls no module with parameters")
    name, module, seen = calls[0]
    if not isinstance(module, SUPPORTED):
        raise ValueError(
            f"the first layer '{name}' is a {type(module).__name__}; a shifted twin needs an "
            "nn.Linear (MLP) or nn.Conv2d first layer that can absorb the shift in its bias"
        )
    if seen.numel() != probe.numel() or not torch.equal(seen.reshape(2, -1), probe.reshape(2, -1)):
        raise ValueError(
            f"the first layer '{name}' does not see the raw input (something transforms it "
            "first, e.g. a normalisation inside the model); the shift cannot go into its bias"
        )
    return name, module


def bias_offset(layer: nn.Module, shift: Tensor) -> Tensor:
    """``W m2`` of the first layer for a shift ``[C, H, W]`` (float64), one value per unit.

    Raises:
        ValueError: for a conv whose response to the shift is not spatially constant.
    """
    w = layer.weight.detach().double()
    m = shift.detach().to(device=w.device, dtype=torch.float64)
    if isinstance(layer, nn.Linear):
        return F.linear(m.reshape(1, -1), w)[0]
    out = layer._conv_forward(m.unsqueeze(0), w, None)[0]  # type: ignore[operator]  # [K,h,w]
    mean = out.mean(dim=(1, 2))
    spread = (out - mean.view(-1, 1, 1)).abs().amax()
    if spread > 1e-9 * max(1.0, float(out.abs().amax())):
        raise ValueError(
            "the first conv's response to this shift varies over positions (zero padding or a "
            "non-constant shift); only per-channel constant shifts with padding=0 fit in a bias"
        )
    return mean


def shifted_twin(model: nn.Module, shift: Tensor) -> nn.Module:
    """A deep copy of ``model`` with first-layer bias ``b2 = b1 - W m2`` (UNREL §2).

    ``twin(x + shift) == model(x)`` up to rounding; ``model`` itself is not changed.

    Args:
        model: a network whose first layer is an ``nn.Linear`` or ``nn.Conv2d`` on the raw input.
        shift: ``m2``, shaped like one input ``[C, H, W]``.
    """
    twin = copy.deepcopy(model)
    _, layer = first_layer(twin, tuple(shift.shape))
    offset = bias_offset(layer, shift)
    w = layer.weight
    if layer.bias is None:
        layer.bias = nn.Parameter(torch.zeros(w.shape[0], device=w.device, dtype=w.dtype))
    with torch.no_grad():
        layer.bias.copy_((layer.bias.double() - offset).to(layer.bias.dtype))
    return twin


def assert_same_logits(a: Tensor, b: Tensor, tolerance: float) -> float:
    """Largest ``|a - b|``; raise if above ``tolerance * max(1, max |a|)``.

    Raises:
        RuntimeError: if the logits of the network and its twin differ by more than that.
    """
    diff = float((a - b).abs().max())
    bound = tolerance * max(1.0, float(a.abs().max()))
    if not diff <= bound:
        raise RuntimeError(
            f"shifted twin is not equivalent: max |logit difference| {diff:.3g} > {bound:.3g}"
        )
    return diff


def check_twin(
    model: nn.Module, twin: nn.Module, x: Tensor, shift: Tensor, tolerance: float
) -> float:
    """Largest ``|twin(x + shift) - model(x)|`` over the batch (see :func:`assert_same_logits`)."""
    with torch.no_grad():
        a = model(x)
        b = twin(x + shift.to(device=x.device, dtype=x.dtype))
    return assert_same_logits(a, b, tolerance)


def constant_shift(shape: Sequence[int], value: float = -1.0) -> Tensor:
    """``m2 = value`` everywhere (UNREL §2: ``-1`` maps inputs in [0, 1] to [-1, 0])."""
    return torch.full(tuple(shape), float(value))


def checkerboard_shift(
    shape: Sequence[int], cells: int = 4, values: Sequence[float] = (-1.0, 0.0)
) -> Tensor:
    """A checkered box image (UNREL §4): ``cells x cells`` squares alternating two values."""
    c, h, w = (int(s) for s in shape)
    rows = torch.arange(h) * cells // h
    cols = torch.arange(w) * cells // w
    odd = (rows.view(-1, 1) + cols.view(1, -1)) % 2
    low, high = (float(v) for v in values)
    return torch.where(odd.bool(), high, low).expand(c, h, w).clone()


def crafted_shift(
    grad: Tensor, x: Tensor, target: Tensor, clip: float = 0.3, guard: float = 1e-12
) -> tuple[Tensor, Tensor]:
    """UNREL §4: ``m2 = s_hat / (df1/dx) - x`` so that the twin's gradient x input is ``s_hat``.

    Args:
        grad: the original network's input gradient at ``x`` ``[C, H, W]``.
        x: the chosen sample ``[C, H, W]``.
        target: the desired attribution ``s_hat`` ``[C, H, W]``.
        clip: the shift is clipped to ``[-clip, clip]`` (the paper's 0.3).
        guard: pixels with ``|grad| <= guard * max |grad|`` get no shift (no division by ~0).

    Returns:
        ``(clipped, raw)`` shifts; ``raw`` is unclipped (zero at guarded pixels).
    """
    ok = grad.abs() > guard * grad.abs().max()
    raw = torch.where(ok, target / torch.where(ok, grad, 1.0) - x, 0.0)
    return raw.clamp(-clip, clip), raw
