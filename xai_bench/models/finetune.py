"""Fine-tuning from published ImageNet weights: find a network's classifier head and load the
published backbone around a new head for the dataset's classes (OPPSD's ViT-B/16, the pointing
games' VGG-16 / ResNet-50, Group-CAM's ResNet-50)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from xai_bench.models.weights import load_into, pretrained_state
from xai_bench.utils.errors import UserInputError, no_pretrained_message, scratch_instead


def find_head(net: nn.Module, name: str | None = None) -> str:
    """Dotted name of ``net``'s classifier head, an ``nn.Linear``.

    Args:
        net: the network.
        name: the head's name if the model config gives one (``model.head``); otherwise timm's
            ``get_classifier()``, else the last ``nn.Linear`` of ``net`` (torchvision ResNet
            ``fc``, VGG ``classifier.6``, timm ViT ``head``).

    Raises:
        UserInputError: no such module, or it is not a linear layer.
    """
    kind = type(net).__name__
    if name is None and hasattr(net, "get_classifier"):
        found = net.get_classifier()
        name = next((n for n, m in net.named_modules() if m is found and n), None)
    if name is None:
        name = next((n for n, m in reversed(list(net.named_modules()))
                     if isinstance(m, nn.Linear)), None)  # fmt: skip
    if name is None:
        raise UserInputError(
            f"{kind} has no nn.Linear classifier head: set model.head to the dotted name of its "
            "last layer in the model config (e.g. +model.head=fc)"
        )
    try:
        module = net.get_submodule(name)
    except AttributeError:
        module = None
    if not isinstance(module, nn.Linear):
        raise UserInputError(
            f"model.head={name} is not an nn.Linear layer of {kind}: set model.head to the "
            "dotted name of its classifier (e.g. fc, classifier.6, head)"
        )
    return name


def head_parameters(net: nn.Module, head: str) -> set[int]:
    """``id``\\ s of the parameters of ``net``'s head ``head`` (the rest is the backbone)."""
    return {id(p) for p in net.get_submodule(head).parameters()}


def load_backbone(
    net: nn.Module, state: Mapping[str, torch.Tensor], source: str, head: str
) -> nn.Module:
    """Load published weights ``state`` into ``net`` except its classifier head ``head``.

    Every backbone key must fit (strict: no key missing or left over, equal shapes). The head
    keeps ``net``'s own freshly initialised weights, unless the published head has exactly its
    shape (a 1000-class dataset: ImageNet), in which case the published head is loaded too.

    Raises:
        UserInputError: ``state`` lacks the head or its width differs from the network's
            (another architecture), or a backbone key does not fit (names ``source``).
    """
    own = net.state_dict()
    keys = [k for k in own if k.startswith(f"{head}.")]
    theirs = {k: state.get(k) for k in keys}
    if any(v is None or v.shape[1:] != own[k].shape[1:] for k, v in theirs.items()):
        shapes = {k: None if v is None else tuple(v.shape) for k, v in theirs.items()}
        raise UserInputError(
            f"weights from {source} do not fit {type(net).__name__}: its head {head} expects "
            f"{[tuple(own[k].shape) for k in keys]} but the file has {shapes}; use the "
            "published weights of this architecture (model.pretrained)"
        )
    if all(theirs[k].shape == own[k].shape for k in keys):
        return load_into(net, dict(state), source)
    merged = {k: v for k, v in state.items() if k not in theirs}
    merged.update({k: own[k] for k in keys})
    return load_into(net, merged, source)


def load_pretrained_backbone(
    net: nn.Module,
    pretrained: Mapping[str, str] | None,
    model: str,
    head: str,
    key: str = "train.init",
) -> nn.Module:
    """:func:`load_backbone` of the model's published weights from the local cache.

    Args:
        net: the freshly built network with the dataset's class count (seeded head).
        pretrained: ``model.pretrained`` (``{source, name}``), ``None`` when there are none.
        model: the model's name, for messages.
        head: the head's dotted name (:func:`find_head`).
        key: the setting that asked for the published weights, for messages (``train.init``;
            ROAR: ``benchmark.init``).

    Raises:
        UserInputError: the model has no published weights.
        WeightsNotFoundError: they are not in the local cache (the message says where the file
            goes).
    """
    if not pretrained:
        raise UserInputError(no_pretrained_message(model, key))
    source, name = str(pretrained["source"]), str(pretrained["name"])
    state, path = pretrained_state(source, name, scratch_instead(key))
    return load_backbone(net, state, str(path), head)
