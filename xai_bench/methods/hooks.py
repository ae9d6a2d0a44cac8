"""Hooks that live only inside a ``with`` block and are removed in ``finally``.

* :func:`capture` records layer outputs during forward passes (for CAMs, PruneGrad ...).
* :func:`relu_rule` makes every ``nn.ReLU`` call back-propagate a custom rule (guided
  backprop, deconvnet, RectGrad) instead of ``R * (a > 0)``.
* :func:`relu_forward` replaces each ReLU call's output (PruneGrad's neuron masks).

ReLUs must be ``nn.ReLU`` modules (true for every model of the zoo). A module reused several
times in one forward pass is seen once per call; in-place ReLUs are run out of place for the
duration of the block (their ``inplace`` flag is restored in ``finally``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from xai_bench.models.layers import get_layer

ReluRule = Callable[[Tensor, Tensor], Tensor]  # (a = relu(z), R = grad of a) -> grad of z


@contextmanager
def capture(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, list[Tensor]]]:
    """Record the outputs of ``layers`` (one list entry per call) during forward passes.

    Each recorded tensor is the layer's output as it was produced: the forward pass continues
    with a copy, so that a later in-place op (``ReLU(inplace=True)``) cannot change it and
    ``torch.autograd.grad(score, recorded)`` is the gradient w.r.t. this very output.
    """
    store: dict[str, list[Tensor]] = {name: [] for name in layers}
    handles = []
    try:
        for name in layers:

            def hook(module: nn.Module, inputs: tuple, output: Tensor, name: str = name) -> Tensor:
                store[name].append(output)
                return output.clone()

            handles.append(get_layer(model, name).register_forward_hook(hook))
        yield store
    finally:
        for h in handles:
            h.remove()


class _RuleReLU(torch.autograd.Function):
    """``relu(z)`` forward; backward applies ``rule(a, R)`` in place of the ReLU derivative."""

    @staticmethod
    def forward(ctx, z: Tensor, rule: ReluRule) -> Tensor:  # type: ignore[override]
        a = z.clamp_min(0)
        ctx.save_for_backward(a)
        ctx.rule = rule
        return a

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (a,) = ctx.saved_tensors
        return ctx.rule(a, grad), None


@contextmanager
def _relus_out_of_place(model: nn.Module) -> Iterator[list[nn.ReLU]]:
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    flags = [m.inplace for m in relus]
    try:
        for m in relus:
            m.inplace = False
        yield relus
    finally:
        for m, flag in zip(relus, flags):
            m.inplace = flag


@contextmanager
def relu_rule(model: nn.Module, rule: ReluRule) -> Iterator[int]:
    """Inside the block, each ReLU call back-propagates ``rule(a, R)``; yields the ReLU count."""
    handles = []
    with _relus_out_of_place(model) as relus:
        try:
            for m in relus:
                handles.append(
                    m.register_forward_hook(lambda mod, inp, out: _RuleReLU.apply(inp[0], rule))
                )
            yield len(relus)
        finally:
            for h in handles:
                h.remove()


@contextmanager
def relu_forward(model: nn.Module, fn: Callable[[int, Tensor], Tensor]) -> Iterator[int]:
    """Replace the output ``a`` of the k-th ReLU call of each forward pass by ``fn(k, a)``.

    ``k`` counts ReLU calls from 0 in every forward pass of ``model`` (a reused module gets one
    index per call). Yields the number of ``nn.ReLU`` modules.
    """
    counter = [0]

    def reset(mod: nn.Module, args: tuple) -> None:
        counter[0] = 0

    def hook(mod: nn.Module, inp: tuple, out: Tensor) -> Tensor:
        k = counter[0]
        counter[0] += 1
        return fn(k, out)

    with _relus_out_of_place(model) as relus:
        handles = [model.register_forward_pre_hook(reset)]
        try:
            handles += [m.register_forward_hook(hook) for m in relus]
            yield len(relus)
        finally:
            for h in handles:
                h.remove()


def hooks_left(model: nn.Module) -> int:
    """Number of hooks registered on any module of ``model`` (0 after every explainer call)."""
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )  # fmt: skip
