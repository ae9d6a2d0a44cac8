"""The explainer contract shared by every saliency method.

An explainer is built from a model plus explicit hyper-parameters and maps a batch ``x``
``[B, C, H, W]`` with one target class per sample to raw, signed attributions
``[B, C or 1, H, W]`` (float32, on ``x``'s device); ``explainer.attribute(x, target=...)``
takes Captum's targets (an int, a list of ints, a tensor) and keeps ``x``'s dtype. It never
changes the model: no mode switch, no parameter or ``requires_grad`` change, and no hook
outlives a call.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from xai_bench.models.layers import get_layer
from xai_bench.models.meta import ModelMeta

TargetLike = int | Sequence[int] | Tensor
"""A class index for every sample, or one per sample (Captum's ``target`` for classifiers)."""


class MethodNotApplicableError(ValueError):
    """The method cannot work on this model (e.g. FullGrad on a ViT); raised before computing."""


class Explainer(ABC):
    """Base class: subclasses implement :meth:`_attribute`; the public :meth:`attribute`
    (Captum's call: ``attribute(inputs, target=...)``) and ``__call__`` check the inputs first.

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
    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:
        """The method: raw attributions ``[B, C or 1, H, W]`` for ``x`` and checked targets ``[B]``.

        Keyword-only parameters (e.g. ``baselines``) become keywords of :meth:`attribute`.
        """

    def attribute(
        self,
        inputs: Tensor,
        target: TargetLike | None = None,
        *,
        additional_forward_args: None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Raw attributions ``[B, C or 1, H, W]`` of ``inputs`` ``[B, C, H, W]`` (their dtype).

        Called as Captum's ``attribute``: ``target`` is an int (the same class for every
        sample), a list or tuple of ints, or a 0-d or 1-d integer tensor (one class per
        sample); it is checked (:func:`as_targets`) before anything runs. Other keywords are the
        keyword-only parameters of the method's :meth:`_attribute` (``baselines=`` for
        integrated gradients and occlusion); ``additional_forward_args`` must be ``None``
        (the model is called as ``model(x)``).
        """
        if additional_forward_args is not None:
            raise ValueError(
                "additional_forward_args is not supported: the model is called as model(x)"
            )
        unknown = sorted(set(kwargs) - _keyword_options(type(self)))
        if unknown:
            known = sorted(_keyword_options(type(self))) or "none"
            name = type(self).__name__
            raise TypeError(
                f"{name}.attribute() got unknown keyword(s) {unknown}; it takes {known}"
            )
        x, target = self._check_inputs(inputs, target)
        return self._attribute(x, target, **kwargs)

    def __call__(self, x: Tensor, target: TargetLike | None = None, **kwargs: Any) -> Tensor:
        """:meth:`attribute`, cast to float32 (what the benchmarks use)."""
        return self.attribute(x, target, **kwargs).float()

    def attribute_unchecked(self, x: Tensor, target: Tensor) -> Tensor:
        """The method without the checks of :meth:`attribute` (no host sync), for inputs and
        ``[B]`` int64 targets already checked: what wrappers (the noise tunnel) call on their
        base explainer."""
        return self._attribute(x, target)

    def _check_inputs(self, x: Tensor, target: TargetLike | None) -> tuple[Tensor, Tensor]:
        if not isinstance(x, Tensor) or x.dim() != 4:
            got = f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected a batch [B, C, H, W], got {got}")
        num_classes = self.meta.num_classes if self.meta is not None else None
        return x, as_targets(target, x.shape[0], x.device, num_classes)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Keep subclasses written for the old contract (overriding ``attribute(x, target)``)
        working: their ``attribute`` is wrapped so that it gets checked ``[B]`` targets, and
        is what :meth:`attribute_unchecked` (and ``_attribute`` if abstract) runs."""
        super().__init_subclass__(**kwargs)
        legacy = cls.__dict__.get("attribute")
        if legacy is None or getattr(legacy, "_checks_targets", False):
            return

        @functools.wraps(legacy)
        def attribute(
            self: Explainer, inputs: Tensor, target: TargetLike | None = None, *args: Any, **kw: Any
        ) -> Tensor:
            return legacy(self, *self._check_inputs(inputs, target), *args, **kw)

        attribute._checks_targets = True  # type: ignore[attr-defined]
        cls.attribute = attribute  # type: ignore[method-assign]
        cls.attribute_unchecked = legacy  # type: ignore[method-assign]
        if getattr(getattr(cls, "_attribute", None), "__isabstractmethod__", False):
            cls._attribute = legacy  # type: ignore[method-assign]  # (ABCMeta then sees it)


@functools.cache
def _keyword_options(cls: type[Explainer]) -> frozenset[str]:
    """Names of the keyword-only parameters of ``cls._attribute``."""
    params = inspect.signature(cls._attribute).parameters.values()
    return frozenset(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def as_targets(
    target: TargetLike | None,
    batch: int,
    device: torch.device | str | None = None,
    num_classes: int | None = None,
) -> Tensor:  # -> [B] int64
    """One class index per sample, ``[batch]`` int64 on ``device``, from what Captum accepts.

    ``target``: an int (broadcast to the batch), a list or tuple of ints, or an integer tensor
    that is 0-d, 1-d or has one element. Non-integer, nested or wrongly sized targets, negative
    classes and (with ``num_classes``) classes ``>= num_classes`` raise ``ValueError``.
    """
    if target is None:
        raise ValueError("target is required: a class index, a list of them or a tensor")
    if isinstance(target, (list, tuple)):
        bad = [t for t in target if isinstance(t, bool) or not isinstance(t, numbers.Integral)]
        if bad:
            raise ValueError(
                f"a target list holds one int class per sample; got {type(bad[0]).__name__} "
                f"{bad[0]!r} (targets of multi-output models are not supported)"
            )
        target = torch.tensor([int(t) for t in target], dtype=torch.long)
    elif isinstance(target, numbers.Integral) and not isinstance(target, bool):
        target = torch.tensor([int(target)])
    elif isinstance(target, np.ndarray):
        target = torch.from_numpy(target)
    elif not isinstance(target, Tensor):
        raise ValueError(
            f"target must be an int, a list of ints or a tensor, not {type(target).__name__}"
        )
    if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
        raise ValueError(
            f"target must hold integer class indices, got a {target.dtype} tensor of shape "
            f"{tuple(target.shape)} (pass Captum's baselines by keyword: baselines=...)"
        )
    if target.dim() > 1 and target.numel() != 1:
        raise ValueError(f"target must be 0-d or 1-d, got shape {tuple(target.shape)}")
    target = target.to(device=device, dtype=torch.long).reshape(-1)
    if target.numel() == 1 and batch != 1:
        target = target.expand(batch)
    if target.numel() != batch:
        raise ValueError(f"{target.numel()} targets for a batch of {batch}")
    valid = target >= 0 if num_classes is None else (target >= 0) & (target < num_classes)
    if not bool(valid.all()):
        bound = "[0, num_classes)" if num_classes is None else f"[0, {num_classes})"
        raise ValueError(f"target classes {target.tolist()} outside {bound}")
    return target


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
