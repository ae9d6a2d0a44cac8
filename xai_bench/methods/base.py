"""The explainer contract shared by every saliency method.

An explainer is built from a model plus explicit hyper-parameters and maps a batch ``x``
``[B, C, H, W]`` with one target class per sample to raw, signed attributions
``[B, C or 1, H, W]`` (float32, on ``x``'s device). It never changes the model: no mode switch,
no parameter or ``requires_grad`` change, and no hook outlives a call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from xai_bench.models.layers import get_layer
from xai_bench.models.meta import ModelMeta


class MethodNotApplicableError(ValueError):
    """The method cannot work on this model (e.g. FullGrad on a ViT); raised before computing."""


class Explainer(ABC):
    """Base class: subclasses implement :meth:`attribute`; ``__call__`` validates the inputs.

    Class attributes state what a method needs, and are checked against :class:`ModelMeta`:
    ``needs_conv`` (a convolutional network), ``needs_relu`` (ReLU-only non-linearities),
    ``needs_layer`` (the layers of :meth:`layers_read` exist in the model).

    Methods that learn from data (PatternNet's patterns, PruneGrad's calibrated percentile) set
    ``needs_data = True`` and ``fit_split`` (``train`` or ``val``) and implement :meth:`fit`;
    the run calls ``fit`` with batches of that split before the first attribution.
    """

    name: str = "explainer"
    needs_conv: bool = False
    needs_relu: bool = False
    needs_layer: bool = False
    needs_data: bool = False
    fit_split: str = "train"

    def __init__(self, model: nn.Module, meta: ModelMeta | None = None) -> None:
        self.model = model
        self.meta = meta
        self.check_applicable()

    def check_applicable(self) -> None:
        """Raise :class:`MethodNotApplicableError` if the model lacks what the method needs."""
        if self.meta is None:
            if self.needs_layer:
                self.check_layers()
            return
        if self.needs_conv and not self.meta.convolutional:
            raise MethodNotApplicableError(
                f"{self.name} needs a convolutional network; {self.meta.name} is not one"
            )
        if self.needs_relu and not self.meta.relu_only:
            raise MethodNotApplicableError(
                f"{self.name} propagates through ReLUs only; {self.meta.name} has other "
                "non-linearities (GELU, softmax attention)"
            )
        if self.needs_layer:
            self.check_layers()

    def check_layers(self) -> None:
        """Every layer of :meth:`layers_read` is set and exists (UnknownLayerError if misspelt)."""
        layers = self.layers_read()
        if not layers or any(layer is None for layer in layers):
            model = self.meta.name if self.meta is not None else type(self.model).__name__
            what = "block layers" if len(layers) != 1 else "a CAM layer"
            source = "block_layers is empty" if len(layers) != 1 else "cam_layer is null"
            raise MethodNotApplicableError(f"{self.name} needs {what}; {model} has none ({source})")
        for layer in layers:
            get_layer(self.model, str(layer))

    def layers_read(self) -> list[str | None]:
        """Dotted paths of the layers the method reads (checked when ``needs_layer``)."""
        return [getattr(self, "layer", None)]

    def fit(self, batches: Iterable[tuple[Tensor, Tensor]]) -> Explainer:
        """Learn what the method needs from ``(x, label)`` batches; a no-op by default."""
        return self

    @abstractmethod
    def attribute(self, x: Tensor, target: Tensor) -> Tensor:
        """Raw attributions ``[B, C or 1, H, W]`` for inputs ``x`` and targets ``[B]``."""

    def __call__(self, x: Tensor, target: Tensor | int) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected a batch [B, C, H, W], got shape {tuple(x.shape)}")
        target = torch.as_tensor(target, device=x.device).long().reshape(-1)
        if target.numel() == 1 and x.shape[0] > 1:
            target = target.expand(x.shape[0])
        if target.numel() != x.shape[0]:
            raise ValueError(f"{target.numel()} targets for a batch of {x.shape[0]}")
        if self.meta is not None and not bool(
            ((target >= 0) & (target < self.meta.num_classes)).all()
        ):
            raise ValueError(
                f"target classes {target.tolist()} outside [0, {self.meta.num_classes})"
            )
        out = self.attribute(x, target)
        return out.float()


def target_logits(logits: Tensor, target: Tensor) -> Tensor:
    """Pick each sample's target logit: ``[B, K], [B] -> [B]``."""
    return logits.gather(1, target.view(-1, 1)).squeeze(1)


def input_gradient(model: nn.Module, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Gradient of each sample's target logit w.r.t. its input, and the logits.

    Only the input requires grad, so no parameter gradient is accumulated or computed.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        (grad,) = torch.autograd.grad(target_logits(logits, target).sum(), x)
    return grad, logits.detach()
