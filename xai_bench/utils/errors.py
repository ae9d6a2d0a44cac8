"""Errors caused by what the user asked for (a config value, a dataset that does not fit)."""

from __future__ import annotations

from typing import Any


class UserInputError(ValueError):
    """A run's inputs do not fit: the CLI reports it in one line, without a traceback."""


class CorruptFileError(UserInputError):
    """A file the run reads (an image, a weights file) is truncated or corrupt: the message
    names the file and what to do with it."""


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained or trained weights are not on disk; the message says where to put them."""


def one_line(err: BaseException) -> str:
    """The message of a user error as the CLI prints it.

    An error raised in a DataLoader worker process comes back as the same type with the
    worker's traceback in its message (torch's ``ExceptionWrapper``): only the original
    message, after the traceback's last ``<Type>: `` line, is kept.
    """
    text = str(err)
    if "Original Traceback" in text:
        marker = f"{type(err).__name__}: "
        text = text[text.rfind(marker) + len(marker) :] if marker in text else text
    return text.strip()


PRETRAINED_CLASSES = 1000  # the published ImageNet weights of the model configs


def pretrained_classes_message(name: str, classes: Any) -> str:
    return (
        f"pretrained {name} weights have {PRETRAINED_CLASSES} classes but the dataset has "
        f"{classes}: use model.weights=trained (trains {name} on this dataset; with "
        "train.init=pretrained it fine-tunes these weights), "
        "model.weights=random, or model.weights=/path/to/a/checkpoint with that many classes"
    )


def scratch_instead(key: str = "train.init") -> str:
    """The alternative that a missing published weights file's message offers when a training
    starts from them (``key=pretrained``: ``train.init``, ROAR's ``benchmark.init``)."""
    return f"or train from random weights ({key}=scratch)"


def no_pretrained_message(name: str, key: str = "train.init") -> str:
    """``<key>=pretrained`` (``train.init``, ROAR's ``benchmark.init``) for a model without
    published weights."""
    return (
        f"{key}=pretrained: model {name} has no published weights (pretrained: null in "
        f"xai_bench/configs/model/{name}.yaml); use {key}=scratch, or a model with published "
        "ImageNet weights (resnet50, vgg16, vgg19, vit_b16)"
    )
