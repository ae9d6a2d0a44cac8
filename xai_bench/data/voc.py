"""PASCAL VOC 2007 (Everingham et al. 2010) detection annotations through torchvision's loader.

Multi-label classification over the 20 classes with the boxes for the localisation benchmarks.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch.utils.data import Dataset, Subset
from torchvision.datasets import VOCDetection

from xai_bench.data.base import ImageDataModule, MappedDataset, require, seeded_split
from xai_bench.data.transforms import eval_transform, train_transform

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


def voc_sample(transform: Any, item: tuple[Any, dict[str, Any]], index: int) -> dict[str, Any]:
    """``(PIL image, parsed XML)`` -> sample dict with multi-hot label, boxes and flags.

    VOC boxes are 1-based with inclusive corners; they become 0-based ``x0, y0`` (inclusive)
    and ``x1, y1`` (exclusive): ``x0 = xmin - 1``, ``y0 = ymin - 1``, ``x1 = xmax``,
    ``y1 = ymax``. Difficult objects count towards the image label like the others.
    """
    image, target = item
    objects = target["annotation"].get("object", [])
    boxes, labels, difficult = [], [], []
    for obj in objects:
        bb = obj["bndbox"]
        boxes.append(
            [float(bb["xmin"]) - 1, float(bb["ymin"]) - 1, float(bb["xmax"]), float(bb["ymax"])]
        )
        labels.append(VOC_CLASSES.index(obj["name"]))
        difficult.append(bool(int(obj.get("difficult", "0"))))
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


class VOC2007DataModule(ImageDataModule):
    """VOC 2007: ``train``/``val`` = seeded split of trainval, ``test`` = the test set.

    Images are resized to a square ``image_size`` (no crop) so that boxes map back by scaling.
    With ``augment`` the train split uses the random-resized-crop augmentation, whose images
    no longer match the boxes (only used for training the classifier).
    """

    def build_split(self, split: str) -> Dataset:
        image_set = "test" if split == "test" else "trainval"
        voc_root = self.root / "VOCdevkit" / "VOC2007"
        if not self.download:
            layout = LAYOUT.format(root=self.root)
            require(voc_root, "voc07", layout)
            require(voc_root / "ImageSets" / "Main" / f"{image_set}.txt", "voc07", layout)
        data: Dataset = VOCDetection(
            str(self.root), year="2007", image_set=image_set, download=self.download
        )
        if split == "train" and self.augment:
            tf = train_transform(self.image_size, self.mean, self.std)
        else:
            tf = eval_transform(self.image_size, self.mean, self.std, crop=False)
        if split != "test":
            train_idx, val_idx = seeded_split(len(data), self.val_fraction, self.seed)
            data = Subset(data, train_idx if split == "train" else val_idx)
        return MappedDataset(data, partial(voc_sample, tf))
