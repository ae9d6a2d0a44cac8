"""PASCAL VOC 2007 (Everingham et al. 2010) detection annotations through torchvision's loader.

Multi-label classification over the 20 classes with the boxes for the localisation benchmarks.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch.utils.data import Dataset, Subset
from torchvision.datasets import VOCDetection
from torchvision.datasets.voc import ET_parse

from xai_bench.data.base import (
    ImageDataModule,
    MappedDataset,
    box_problem,
    open_image,
    require,
    seeded_split,
    warn_skipped,
)
from xai_bench.data.resize import AspectResize
from xai_bench.data.transforms import train_transform
from xai_bench.utils.errors import UserInputError

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
LAYOUT = """{root}/
└── VOCdevkit/VOC2007/
    ├── JPEGImages/<id>.jpg
    ├── Annotations/<id>.xml
    └── ImageSets/Main/
        ├── trainval.txt
        └── test.txt"""


class VOCFiles(VOCDetection):
    """:class:`~torchvision.datasets.VOCDetection` that names a corrupt image file
    (:func:`~xai_bench.data.base.open_image`) and keeps each target's annotation file
    (``target["annotation"]["xml_path"]``) for error messages."""

    def annotation(self, index: int) -> dict[str, Any]:
        target = self.parse_voc_xml(ET_parse(self.annotations[index]).getroot())
        target["annotation"]["xml_path"] = self.annotations[index]
        return target

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return open_image(self.images[index]), self.annotation(index)

    def orig_size(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of image ``index`` from its file header (reads no pixels)."""
        from PIL import Image

        with Image.open(self.images[index]) as image:
            return image.height, image.width

    def skipped_annotations(self, index: int) -> int:
        """Boxes of image ``index`` that :func:`voc_sample` leaves out (reads no pixels)."""
        return len(voc_objects(self.annotation(index), self.orig_size(index))[1])


def voc_objects(
    target: dict[str, Any], size: tuple[int, int]
) -> tuple[list[tuple[list[float], int, bool]], list[str]]:
    """``(box, class index, difficult)`` of the objects of a parsed annotation whose boxes can
    be scored, and the reasons of those skipped (see :func:`~xai_bench.data.base.box_problem`;
    logged once per box). An unknown class name raises :class:`UserInputError`."""
    ann = target["annotation"]
    source = str(ann.get("xml_path", ann.get("filename", "a VOC annotation")))
    kept, skipped = [], []
    for i, obj in enumerate(ann.get("object", [])):
        name = obj.get("name")
        if name not in VOC_CLASSES:
            raise UserInputError(
                f"voc07: unknown class {name!r} in {source}; the classes are "
                f"{', '.join(VOC_CLASSES)}: correct the object's <name>"
            )
        bb = obj["bndbox"]
        box = [float(bb["xmin"]) - 1, float(bb["ymin"]) - 1, float(bb["xmax"]), float(bb["ymax"])]
        problem = box_problem(box, *size)
        if problem is not None:
            warn_skipped(source, f"object {i} ({name}, box {bb})", problem)
            skipped.append(problem)
            continue
        kept.append((box, VOC_CLASSES.index(name), bool(int(obj.get("difficult", "0")))))
    return kept, skipped


def voc_sample(transform: Any, item: tuple[Any, dict[str, Any]], index: int) -> dict[str, Any]:
    """``(PIL image, parsed XML)`` -> sample dict with multi-hot label, boxes and flags.

    VOC boxes are 1-based with inclusive corners; they become 0-based ``x0, y0`` (inclusive)
    and ``x1, y1`` (exclusive): ``x0 = xmin - 1``, ``y0 = ymin - 1``, ``x1 = xmax``,
    ``y1 = ymax``. Difficult objects count towards the image label like the others. Objects
    whose boxes are inverted, empty or outside the image are left out with a warning
    (:meth:`VOCFiles.skipped_annotations` counts them).
    """
    image, target = item
    kept, _ = voc_objects(target, (image.height, image.width))
    boxes = [box for box, _, _ in kept]
    labels = [c for _, c, _ in kept]
    difficult = [d for _, _, d in kept]
    box_labels = torch.tensor(labels, dtype=torch.long)
    label = torch.zeros(len(VOC_CLASSES))
    label[box_labels] = 1.0
    return {
        "image": transform(image),
        "label": label,
        "index": index,
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "box_labels": box_labels,
        "difficult": torch.tensor(difficult, dtype=torch.bool),
        "orig_size": (image.height, image.width),
    }


class VOC2007DataModule(AspectResize, ImageDataModule):
    """VOC 2007: ``train``/``val`` = seeded split of trainval, ``test`` = the test set.

    Images are resized to a square ``image_size`` (no crop), or with ``resize="torchray"`` to
    the shorter side ``image_size`` with the aspect kept (:mod:`~xai_bench.data.resize`);
    boxes stay in original pixels (``orig_size``). With ``augment`` the train split uses the
    random-resized-crop augmentation, whose images no longer match the boxes (only used for
    training the classifier).
    """

    source_dir = "VOCdevkit/VOC2007"

    def build_split(self, split: str) -> Dataset:
        image_set = "test" if split == "test" else "trainval"
        voc_root = self.root / "VOCdevkit" / "VOC2007"
        if not self.download:
            layout = LAYOUT.format(root=self.root)
            require(voc_root, "voc07", layout)
            require(voc_root / "ImageSets" / "Main" / f"{image_set}.txt", "voc07", layout)
        data: Dataset = VOCFiles(
            str(self.root), year="2007", image_set=image_set, download=self.download
        )
        if split == "train" and self.augment:
            tf = train_transform(self.image_size, self.mean, self.std)
        else:
            tf = self.eval_transform()
        if split != "test":
            train_idx, val_idx = seeded_split(len(data), self.val_fraction, self.seed)
            data = Subset(data, train_idx if split == "train" else val_idx)
        return MappedDataset(data, partial(voc_sample, tf))
