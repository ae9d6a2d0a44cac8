"""Layer lookup by dotted path and token-to-grid reshapes for transformers."""

from __future__ import annotations

import difflib
import math

from torch import Tensor, nn


class UnknownLayerError(KeyError):
    """A layer path that does not exist in the model."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


def get_layer(model: nn.Module, path: str) -> nn.Module:
    """Return ``model.get_submodule(path)``, or raise with the closest existing names."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(path, names, n=5, cutoff=0.5)
        hint = f" Did you mean one of {close}?" if close else ""
        raise UnknownLayerError(
            f"layer '{path}' does not exist in {type(model).__name__}.{hint} "
            f"Top-level modules: {[n for n, _ in model.named_children()]}"
        ) from None


def layer_path(model: nn.Module, layer: str | nn.Module) -> str:
    """Dotted path of ``layer`` in ``model``: a submodule is looked up by identity, anything
    else (a path string, an index of a ``Sequential``) is returned as ``str(layer)``.

    A module that is not part of ``model`` raises :class:`UnknownLayerError` (one line, without
    the module's repr).
    """
    if not isinstance(layer, nn.Module):
        return str(layer)
    for name, module in model.named_modules():
        if module is layer:
            return name
    raise UnknownLayerError(
        f"the {type(layer).__name__} passed as layer is not a submodule of "
        f"{type(model).__name__}; pass one of its modules (e.g. model.layer4) or a dotted path"
    )


def tokens_to_grid(tokens: Tensor, num_prefix_tokens: int = 1) -> Tensor:
    """ViT tokens ``[B, 1 + h*w, C]`` -> feature map ``[B, C, h, w]`` (prefix tokens dropped)."""
    if tokens.dim() != 3:
        raise ValueError(f"expected tokens of shape [B, N, C], got {tuple(tokens.shape)}")
    patches = tokens[:, num_prefix_tokens:, :]
    n = patches.shape[1]
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{n} patch tokens do not form a square grid")
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)


def to_feature_map(x: Tensor, reshape: str | None, num_prefix_tokens: int = 0) -> Tensor:
    """Apply a model's named reshape so that a layer output becomes ``[B, C, h, w]``."""
    if reshape is None:
        if x.dim() != 4:
            raise ValueError(
                f"layer output has shape {tuple(x.shape)}; a CAM layer needs [B, C, h, w] "
                "(set model.reshape for transformers)"
            )
        return x
    if reshape == "vit_tokens":
        return tokens_to_grid(x, num_prefix_tokens)
    raise ValueError(f"unknown reshape '{reshape}' (known: null, vit_tokens)")
