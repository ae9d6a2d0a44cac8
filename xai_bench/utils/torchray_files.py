"""Where TorchRay's pointing-game classifiers live on disk (no torch import: the CLI's early
checks use it before torch is loaded).

TorchRay (Fong, Patrick & Vedaldi; ``torchray/benchmark/models.py``) publishes VGG-16 and
ResNet-50 converted from the Caffe models of Zhang et al. 2016 (EBP), fine-tuned on PASCAL VOC
2007 (20 classes) and COCO 2014 (80 classes). ``torchray.benchmark.get_model`` downloads them
with ``torch.hub.load_state_dict_from_url``, i.e. into ``<torch hub dir>/checkpoints/<file>``;
``model.weights=torchray`` reads the same place, so a TorchRay install and this project share
the files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xai_bench.utils.errors import UserInputError

TORCHRAY_URL = "https://dl.fbaipublicfiles.com/torchray/"
#: TorchRay's published files: architecture -> TorchRay dataset -> file name
TORCHRAY_FILES = {
    "vgg16": {"voc": "vgg16_voc-b050e8c3.pth.tar", "coco": "vgg16_coco-d82c8150.pth.tar"},
    "resnet50": {"voc": "resnet50_voc-9ca920d6.pth.tar", "coco": "resnet50_coco-e99468c5.pth.tar"},
}
#: class count of each TorchRay dataset (how a file's dataset is recognised)
TORCHRAY_CLASSES = {"voc": 20, "coco": 80}
TORCHRAY_DATASET_NAMES = {"voc": "VOC07", "coco": "COCO"}


def torchray_file(model: str, spec: Mapping[str, Any] | None, dataset: str, hub_dir: Path) -> Path:
    """The file ``model.weights=torchray`` reads: ``<hub_dir>/checkpoints/<files[dataset]>``.

    Args:
        model: the model config's name (for messages).
        spec: the model config's ``torchray`` node (``files``: dataset name -> file name).
        dataset: the dataset config's name.
        hub_dir: ``torch.hub.get_dir()``.

    Raises:
        UserInputError: the model has no TorchRay weights, or none for this dataset.
    """
    if not spec:
        raise UserInputError(
            f"model {model} has no TorchRay weights (model.torchray is not set): use "
            "model=vgg16_torchray or model=resnet50_torchray, which build TorchRay's Caffe "
            "networks"
        )
    files = spec.get("files") or {}
    if dataset not in files:
        raise UserInputError(
            f"model {model} has no TorchRay weights for dataset={dataset}; model.torchray.files "
            f"names files for {', '.join(files) or 'no dataset'}: use one of those datasets, "
            f"add model.torchray.files.{dataset}=<file>, or pass model.weights=/path/to/file"
        )
    return hub_dir / "checkpoints" / str(files[dataset])


def torchray_missing(path: Path) -> str:
    """The message for a TorchRay file that is not on disk: where to get it and to put it."""
    return (
        f"TorchRay weights {path.name} are not cached and this run does not download. Put the "
        f"file {path.name} (from {TORCHRAY_URL}{path.name}) at {path} (where TorchRay itself "
        f"caches it), or pass model.weights=/path/to/{path.name}"
    )
