"""Model-parameter randomisation on deep copies (Adebayo et al. 2018).

Every parameter of a named module (weights, biases, batch-norm affine parameters, recursively)
is re-initialised; buffers (batch-norm running statistics) are never touched, and neither is
the caller's model. Two modes:

* ``normal``: every parameter from N(0, ``std``) (PRUNE and POSAGG: ``std=0.01``);
* ``default_init``: each sub-module's own ``reset_parameters`` (PyTorch's default init, as
  Adebayo's "each variable's own initializer" and Group-CAM's re-created layers); parameters
  of modules without one (e.g. a ViT's ``pos_embed``) fall back to N(0, ``std``).

Randomisation is seeded per (``seed``, block name), so a block gets the same values in a
cascade and in the independent test. ``normal`` draws on the CPU and gives the same values on
any device; ``default_init`` uses the global generator of the parameters' device (forked, so
the caller's random state is unchanged), reproducible per device.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from xai_bench.models.layers import get_layer
from xai_bench.utils.hashing import stable_hash

MODES = ("normal", "default_init")


def _block_seed(seed: int, name: str) -> int:
    return int(stable_hash({"seed": int(seed), "block": name}, length=15), 16)


def _normal_(params: Sequence[nn.Parameter], std: float, gen: torch.Generator) -> None:
    for p in params:
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float32) * std
        p.copy_(noise.to(device=p.device, dtype=p.dtype))


def _randomize_block(
    module: nn.Module, name: str, mode: str, std: float, seed: int
) -> None:  # in place, on a copy
    block_seed = _block_seed(seed, name)
    gen = torch.Generator().manual_seed(block_seed)
    if mode == "normal":
        _normal_(list(module.parameters()), std, gen)
        return
    buffers = {k: v.clone() for k, v in module.named_buffers()}
    covered: set[int] = set()
    devices = sorted({p.device.index for p in module.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(block_seed)
        for sub in module.modules():
            reset = getattr(sub, "reset_parameters", None)
            if callable(reset) and any(True for _ in sub.parameters(recurse=False)):
                reset()
                covered.update(id(p) for p in sub.parameters(recurse=False))
    for key, value in module.named_buffers():  # reset_parameters of BN also resets the stats
        value.copy_(buffers[key])
    _normal_([p for p in module.parameters() if id(p) not in covered], std, gen)


def randomized_copy(
    model: nn.Module,
    block_names: Sequence[str],
    mode: str = "normal",
    std: float = 0.01,
    seed: int = 0,
) -> nn.Module:
    """A deep copy of ``model`` whose named modules (dotted paths) are re-initialised.

    Args:
        model: the trained model; left unchanged (parameters, buffers, mode, ``requires_grad``).
        block_names: modules to randomise, e.g. ``["fc", "layer3"]``.
        mode: ``normal`` (N(0, ``std``)) or ``default_init`` (each layer's ``reset_parameters``).
        std: standard deviation of ``normal`` (and of the ``default_init`` fallback).
        seed: base seed; each block's values depend only on (seed, block name).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got '{mode}'")
    for name in block_names:
        get_layer(model, name)  # a clear error for an unknown block, before copying
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for name in block_names:
            _randomize_block(get_layer(clone, name), name, mode, float(std), int(seed))
    return clone


def cascade(
    model: nn.Module,
    blocks: Sequence[str],
    mode: str = "normal",
    std: float = 0.01,
    seed: int = 0,
) -> Iterator[tuple[str, nn.Module]]:
    """Cascading randomisation: ``(block, copy)`` with every block up to this one (in the given
    output-to-input order) randomised. Each yielded copy is independent of the others."""
    for i, name in enumerate(blocks):
        yield name, randomized_copy(model, blocks[: i + 1], mode, std, seed)


def independent(
    model: nn.Module,
    blocks: Sequence[str],
    mode: str = "normal",
    std: float = 0.01,
    seed: int = 0,
) -> Iterator[tuple[str, nn.Module]]:
    """Independent randomisation: ``(block, copy)`` with only that block randomised."""
    for name in blocks:
        yield name, randomized_copy(model, [name], mode, std, seed)
