"""Build a model and its metadata from explicit arguments."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import nn

from xai_bench.models.meta import ModelMeta
from xai_bench.models.torchray import load_torchray, torchray_layout
from xai_bench.models.weights import (
    WeightsNotFoundError,
    load_into,
    load_pretrained,
    read_state_dict,
)
from xai_bench.utils.errors import UserInputError, pretrained_classes_message
from xai_bench.utils.torchray_files import torchray_missing

WEIGHT_MODES = ("random", "pretrained", "trained", "torchray")


def build_model(
    net: nn.Module,
    meta: ModelMeta,
    weights: str = "random",
    pretrained: Mapping[str, str] | None = None,
    trained_checkpoint: str | Path | None = None,
    torchray_file: str | Path | None = None,
) -> tuple[nn.Module, ModelMeta]:
    """Load weights into ``net`` and return it in eval mode beside its ``meta``.

    Args:
        net: a freshly built network (this function owns it, so it may call ``.eval()``).
        meta: the model's facts.
        weights: ``random`` (as initialised), ``pretrained`` (published weights from the local
            cache), ``trained`` (this project's checkpoint for the model and dataset),
            ``torchray`` (TorchRay's Caffe-converted pointing-game classifier) or a path (a file
            in TorchRay's layout is converted, see :mod:`xai_bench.models.torchray`).
        pretrained: ``{source: torchvision|timm, name: ...}`` for ``weights=pretrained``.
        trained_checkpoint: where ``benchmark=train`` saves this model's checkpoint.
        torchray_file: the TorchRay file of the model and dataset for ``weights=torchray``
            (:func:`~xai_bench.utils.torchray_files.torchray_file`).
    """
    if weights == "random":
        pass
    elif weights == "pretrained":
        if not pretrained:
            raise UserInputError(
                f"model {meta.name} has no published weights (model.pretrained is null): use "
                "model.weights=trained, random or a path to a weights file"
            )
        if meta.num_classes != 1000:
            raise UserInputError(pretrained_classes_message(meta.name, meta.num_classes))
        load_pretrained(net, pretrained["source"], pretrained["name"])
    elif weights == "trained":
        if trained_checkpoint is None or not Path(trained_checkpoint).is_file():
            raise WeightsNotFoundError(
                f"no trained checkpoint for {meta.name} at {trained_checkpoint}; train it with "
                f"'xai-bench benchmark=train model={meta.name} dataset=...' "
                "(or keep train_if_missing=true)"
            )
        load_into(net, read_state_dict(trained_checkpoint), str(trained_checkpoint))
    elif weights == "torchray":
        if torchray_file is None:
            raise UserInputError(
                f"model {meta.name} has no TorchRay weights (model.torchray is not set): use "
                "model=vgg16_torchray or model=resnet50_torchray"
            )
        path = Path(torchray_file)
        if not path.is_file():
            raise WeightsNotFoundError(torchray_missing(path))
        load_torchray(net, read_state_dict(path), str(path))
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"model.weights='{weights}' is neither one of {WEIGHT_MODES} nor an existing file"
            )
        state = read_state_dict(path)
        if torchray_layout(state) is not None:
            load_torchray(net, state, str(path))
        else:
            load_into(net, state, str(path))
    return net.eval(), meta
