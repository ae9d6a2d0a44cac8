"""TorchRay's Caffe-converted pointing-game classifiers as torchvision-named networks.

TorchRay (``torchray/benchmark/models.py``, ``get_model``) builds torchvision's VGG-16 and
ResNet-50, patches them to match the Caffe definitions of Zhang et al. 2016 (EBP), and loads
checkpoints whose keys follow the Caffe layout. Here the same patches make the networks
(:func:`torchray_vgg16`, :func:`torchray_resnet50`), and :func:`load_torchray` converts a
TorchRay file to their torchvision keys, so ``features.29``, ``layer4`` and the block lists of
the model configs keep working:

- **VGG-16**: every max-pooling uses ``ceil_mode``; the file's ``classifier.0/2/4`` are
  torchvision's ``classifier.0/3/6`` (no dropout layers in Caffe), and classifier weights may
  be stored as convolutions (reshaped to matrices).
- **ResNet-50**: ``conv1`` has a bias; the stem max-pooling has no padding and ``ceil_mode``;
  the first block of ``layer2..4`` strides in its 1x1 ``conv1``, not its 3x3 ``conv2``
  (Caffe's ResNet, unlike torchvision's v1.5); Caffe's BatchNorm + Scale pairs
  (``bn1.0.running_mean``, ``bn1.1.weight``, ``downsample.1.0/1``) become one BatchNorm.
- Both: the first convolution reads BGR in Caffe; its input channels are flipped, so the network
  takes RGB. The inputs are Caffe's: 0-255 minus the mean (123.68, 116.779, 103.939), no std
  division (the ``mean``/``std`` of the ``*_torchray`` model configs).

**Fully convolutional, as TorchRay's benchmark runs them** (``examples/attribution_benchmark.py``
calls ``get_model(convert_to_fully_convolutional=True)`` on aspect-kept inputs): the classifier
slides over the feature map and gives a map of class scores (:meth:`TorchRayVGG.score_map`,
:meth:`TorchRayResNet.score_map`). VGG-16 drops torchvision's adaptive pooling and applies fc6
as a 7 x 7 convolution over pool5, fc7 and fc8 as 1 x 1 ones (``_caffe_vgg16_to_fc``); ResNet-50
pools layer4 with a 7 x 7, stride 1 average (the ``avgpool`` TorchRay sets for its backprop
methods) and applies ``fc`` as a 1 x 1 convolution (``_caffe_resnet50_to_fc``). The layers stay
torchvision's ``nn.Linear`` modules, applied to every position (positions folded into the batch
dimension), so the state dict and the layer names do not change. The logit of a class is the
log-sum-exp of its score map over positions (:func:`score_logits`): its gradient with respect to
the map is TorchRay's backward seed ``get_pointing_gradient``, ``exp(map)`` normalised to sum 1,
so every gradient a method takes is TorchRay's. At a 224 x 224 input the map is 1 x 1 and the
logits are torchvision's. Where the feature map is smaller than the 7 x 7 window (a side under
193 px for VGG-16, 195 px for ResNet-50, where TorchRay's fully convolutional network fails),
the networks pool as torchvision's forward does (adaptive 7 x 7 before fc6, global average
before ``fc``), as TorchRay's ``get_model`` without the conversion.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import VGG, ResNet
from torchvision.models.resnet import Bottleneck
from torchvision.models.vgg import cfgs, make_layers

from xai_bench.models.weights import load_into
from xai_bench.utils.errors import UserInputError
from xai_bench.utils.torchray_files import (
    TORCHRAY_CLASSES,
    TORCHRAY_DATASET_NAMES,
    TORCHRAY_FILES,
)

__all__ = [
    "TorchRayResNet",
    "TorchRayVGG",
    "load_torchray",
    "score_logits",
    "torchray_layout",
    "torchray_resnet50",
    "torchray_vgg16",
]

#: TorchRay's VGG-16 classifier names -> torchvision's (Caffe has no dropout modules)
_VGG_CLASSIFIER = {"classifier.0": "classifier.0", "classifier.2": "classifier.3",
                   "classifier.4": "classifier.6"}  # fmt: skip
#: a Caffe BatchNorm (``.0``) or Scale (``.1``) entry of TorchRay's ResNet-50 file
_CAFFE_BN = re.compile(r"(^|\.)(bn\d|downsample\.\d)\.[01]\.")
_FIRST_CONV = {"vgg16": "features.0.weight", "resnet50": "conv1.weight"}
_LAST_LAYER = {"vgg16": "classifier.6.weight", "resnet50": "fc.weight"}
#: the window of VGG-16's fc6 and of ResNet-50's average pooling in TorchRay's benchmark
WINDOW = 7


def score_logits(scores: Tensor) -> Tensor:
    """Class scores ``[B, K, h, w]`` -> logits ``[B, K]``: log-sum-exp over the positions.

    ``d logit_k / d scores[:, k]`` is ``softmax`` over the positions, TorchRay's backward seed
    (``get_pointing_gradient``: ``exp(scores[0, k])`` divided by its sum); a 1 x 1 map is
    returned as it is.
    """
    if scores.shape[-2:] == (1, 1):
        return scores.flatten(1)
    return scores.flatten(2).logsumexp(2)


def _positions(rows: Tensor, batch: int, height: int, width: int) -> Tensor:
    """``[B * h * w, K]`` rows (row-major positions per image) -> score map ``[B, K, h, w]``."""
    return rows.view(batch, height, width, -1).permute(0, 3, 1, 2)


class TorchRayVGG(VGG):
    """torchvision's VGG run as TorchRay's fully convolutional VGG-16 (module docstring)."""

    def score_map(self, x: Tensor) -> Tensor:
        """Class scores ``[B, K, h - 6, w - 6]`` over the ``h x w`` pool5 map (``[B, K, 1, 1]``
        after adaptive pooling where pool5 is smaller than 7 x 7)."""
        f = self.features(x)
        b, c, h, w = f.shape
        if min(h, w) < WINDOW:  # too small for fc6 as a 7 x 7 convolution: torchvision's pooling
            rows, (h, w) = torch.flatten(self.avgpool(f), 1), (WINDOW, WINDOW)
        else:  # every 7 x 7 window in fc6's (channel, row, column) order, a row per position
            rows = F.unfold(f, WINDOW).transpose(1, 2).reshape(-1, c * WINDOW * WINDOW)
        return _positions(self.classifier(rows), b, h - WINDOW + 1, w - WINDOW + 1)

    def forward(self, x: Tensor) -> Tensor:
        return score_logits(self.score_map(x))


class TorchRayResNet(ResNet):
    """torchvision's ResNet run as TorchRay's fully convolutional ResNet-50 (module
    docstring); ``avgpool`` is TorchRay's ``AvgPool2d(7, stride=1)``."""

    def score_map(self, x: Tensor) -> Tensor:
        """Class scores ``[B, K, h - 6, w - 6]`` over the ``h x w`` layer4 map (``[B, K, 1, 1]``
        after a global average where layer4 is smaller than 7 x 7)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        if min(x.shape[-2:]) < WINDOW:  # too small for the 7 x 7 pooling: torchvision's
            x = F.adaptive_avg_pool2d(x, 1)
        else:
            x = self.avgpool(x)
        b, c, h, w = x.shape
        return _positions(self.fc(x.permute(0, 2, 3, 1).reshape(-1, c)), b, h, w)

    def forward(self, x: Tensor) -> Tensor:
        return score_logits(self.score_map(x))


def torchray_vgg16(num_classes: int = 20) -> TorchRayVGG:
    """TorchRay's VGG-16: torchvision's, with ``ceil_mode`` max-pooling (Caffe's rounding), run
    fully convolutionally (:class:`TorchRayVGG`)."""
    net = TorchRayVGG(make_layers(cfgs["D"]), num_classes=num_classes)
    for module in net.modules():
        if isinstance(module, nn.MaxPool2d):
            module.ceil_mode = True
    return net


def torchray_resnet50(num_classes: int = 20) -> TorchRayResNet:
    """TorchRay's ResNet-50: torchvision's with Caffe's biased ``conv1``, unpadded ``ceil_mode``
    stem pooling and the stride of ``layer2..4``'s first block in its 1x1 ``conv1``, run fully
    convolutionally (:class:`TorchRayResNet`)."""
    net = TorchRayResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes)
    net.avgpool = nn.AvgPool2d(WINDOW, stride=1)  # type: ignore[assignment]
    net.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=True)
    net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
    for layer in (net.layer2, net.layer3, net.layer4):
        layer[0].conv1.stride = (2, 2)
        layer[0].conv2.stride = (1, 1)
    return net


def torchray_arch(net: nn.Module) -> str | None:
    """``vgg16`` / ``resnet50`` if ``net`` is built like TorchRay's network, else ``None``."""
    if isinstance(net, VGG):
        pools = [m for m in net.features if isinstance(m, nn.MaxPool2d)]
        convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
        return "vgg16" if len(convs) == 13 and all(p.ceil_mode for p in pools) else None
    if isinstance(net, ResNet):
        blocks = [len(layer) for layer in (net.layer1, net.layer2, net.layer3, net.layer4)]
        caffe = net.conv1.bias is not None and net.layer2[0].conv1.stride == (2, 2)
        bottleneck = isinstance(net.layer1[0], Bottleneck)
        return "resnet50" if caffe and bottleneck and blocks == [3, 4, 6, 3] else None
    return None


def torchray_layout(state: dict[str, Tensor]) -> str | None:
    """``vgg16`` / ``resnet50`` if ``state`` has the keys of TorchRay's file, else ``None``."""
    if {"features.28.weight", "classifier.4.weight"} <= state.keys():
        return None if "classifier.6.weight" in state else "vgg16"
    if "conv1.weight" in state and any(_CAFFE_BN.search(key) for key in state):
        return "resnet50"
    return None


def convert_vgg16(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """TorchRay's VGG-16 keys -> torchvision's; classifier weights as matrices."""
    out = {}
    for key, value in state.items():
        layer, _, param = key.rpartition(".")
        layer = _VGG_CLASSIFIER.get(layer, layer)
        if layer.startswith("classifier.") and param == "weight":
            value = value.reshape(value.shape[0], -1)
        out[f"{layer}.{param}"] = value
    return out


def convert_resnet50(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """TorchRay's ResNet-50 keys -> torchvision's: Caffe's BatchNorm + Scale -> one BatchNorm;
    ``fc`` weight as a matrix. (BatchNorm's loader adds the ``num_batches_tracked`` the file
    lacks, as in TorchRay.)"""
    out = {_CAFFE_BN.sub(r"\1\2.", key): value for key, value in state.items()}
    if "fc.weight" in out:
        out["fc.weight"] = out["fc.weight"].reshape(out["fc.weight"].shape[0], -1)
    return out


_CONVERT = {"vgg16": convert_vgg16, "resnet50": convert_resnet50}


def load_torchray(net: nn.Module, state: dict[str, Tensor], source: str) -> nn.Module:
    """Load a TorchRay checkpoint (its own key layout, BGR first layer) into ``net``.

    Args:
        net: a network of :func:`torchray_vgg16` / :func:`torchray_resnet50`.
        state: the file's state dict, as TorchRay saved it.
        source: the file, for messages.

    Raises:
        UserInputError: ``state`` is not TorchRay's layout, ``net`` is not TorchRay's variant of
            the architecture, or the file is for another dataset (class count).
    """
    layout, arch = torchray_layout(state), torchray_arch(net)
    if layout is None:
        raise UserInputError(
            f"weights from {source} are not in TorchRay's layout (VGG-16 with classifier.4, "
            "ResNet-50 with Caffe's bn1.0/bn1.1 pairs): pass one of TorchRay's files, or use "
            "model.weights=torchray"
        )
    if arch != layout:
        raise UserInputError(
            f"weights from {source} are TorchRay's Caffe-converted {layout}, which needs "
            f"TorchRay's variant of the network and Caffe preprocessing, not "
            f"{type(net).__name__} as built: use model={layout}_torchray"
        )
    converted = _CONVERT[layout](state)
    first = _FIRST_CONV[layout]
    if first in converted:
        converted[first] = converted[first][:, [2, 1, 0]]  # BGR -> RGB input channels
    last = _LAST_LAYER[layout]
    have, want = converted[last].shape[0], net.get_parameter(last).shape[0]
    if have != want:
        raise UserInputError(
            f"weights file {source} is TorchRay's {layout} for {have} classes "
            f"({_dataset_of(have)}) but the model has {want} (the dataset's classes): use "
            f"{_file_for(layout, want)}, or a dataset with {have} classes"
        )
    return load_into(net, converted, source)


def _dataset_of(classes: int) -> str:
    for kind, n in TORCHRAY_CLASSES.items():
        if n == classes:
            return f"TorchRay's {TORCHRAY_DATASET_NAMES[kind]} model"
    return "not a TorchRay dataset"


def _file_for(arch: str, classes: int) -> str:
    for kind, n in TORCHRAY_CLASSES.items():
        if n == classes:
            return f"TorchRay's {TORCHRAY_DATASET_NAMES[kind]} file {TORCHRAY_FILES[arch][kind]}"
    return "a file with that many classes (TorchRay published VOC07: 20 and COCO: 80)"
