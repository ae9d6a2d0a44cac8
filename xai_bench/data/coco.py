"""MS COCO 2017 instances (Lin et al. 2014) read with pycocotools via torchvision's loader.

Multi-label classification over the 80 categories with boxes and instance masks.
"""

from __future__ import annotations

import contextlib
import io
import os
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset
from torchvision.datasets import CocoDetection

from xai_bench.data.base import (
    ImageDataModule,
    MappedDataset,
    box_problem,
    open_image,
    require,
    seeded_split,
    warn_skipped,
)
from xai_bench.data.transforms import eval_transform, train_transform

LAYOUT = """{root}/
└── coco2017/
    ├── train2017/*.jpg   (optional for evaluation)
    ├── val2017/*.jpg
    └── annotations/
        ├── instances_train2017.json
        └── instances_val2017.json"""


class CocoInstances(CocoDetection):
    """:class:`~torchvision.datasets.CocoDetection` without crowd annotations or empty images.

    Targets are the non-crowd annotations, each with its ``mask`` (``annToMask``, original
    resolution) and ``class_index`` (contiguous index in sorted category-id order). An
    annotation whose box has zero area or lies outside the image, or whose mask is empty, is
    left out with a warning (:meth:`skipped_annotations` counts them). A corrupt image file is
    named (:func:`~xai_bench.data.base.open_image`).
    """

    def __init__(self, root: str, ann_file: str) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            super().__init__(root, ann_file)
        self.cat_index = {c: i for i, c in enumerate(sorted(self.coco.getCatIds()))}
        self.ids = [i for i in self.ids if self._annotations(i)]

    def _annotations(self, image_id: int) -> list[dict[str, Any]]:
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id))
        return [a for a in anns if not a.get("iscrowd", 0)]

    def _load_image(self, id: int) -> Any:
        return open_image(os.path.join(self.root, self.coco.loadImgs(id)[0]["file_name"]))

    def _scored(self, id: int) -> tuple[list[dict[str, Any]], int]:
        """The annotations of image ``id`` that can be scored, with their masks, and the
        number left out."""
        info = self.coco.loadImgs(id)[0]
        h, w = int(info["height"]), int(info["width"])
        kept, skipped = [], 0
        for a in self._annotations(id):
            x, y, bw, bh = (float(v) for v in a["bbox"])
            problem = box_problem([x, y, x + bw, y + bh], h, w)
            mask = self.coco.annToMask(a) if problem is None else None
            if mask is not None and not mask.any():
                problem = "empty mask (zero area)"
            if problem is not None:
                source = os.path.join(self.root, str(info.get("file_name", id)))
                warn_skipped(source, f"annotation {a.get('id')}", problem)
                skipped += 1
                continue
            kept.append({**a, "mask": mask, "class_index": self.cat_index[a["category_id"]]})
        return kept, skipped

    def _load_target(self, id: int) -> list[dict[str, Any]]:
        return self._scored(id)[0]

    def skipped_annotations(self, index: int) -> int:
        """Annotations of sample ``index`` that its target leaves out."""
        return self._scored(self.ids[index])[1]


def coco_sample(
    transform: Any, num_classes: int, item: tuple[Any, list[dict[str, Any]]], index: int
) -> dict[str, Any]:
    """``(PIL image, annotations)`` -> sample dict; ``[x, y, w, h]`` -> ``x0, y0, x+w, y+h``."""
    image, anns = item
    box_labels = torch.tensor([a["class_index"] for a in anns], dtype=torch.long)
    label = torch.zeros(num_classes)
    label[box_labels] = 1.0
    boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
    h0, w0 = image.height, image.width
    masks = [torch.from_numpy(a["mask"]).bool() for a in anns]
    return {
        "image": transform(image),
        "label": label,
        "index": index,
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "box_labels": box_labels,
        "difficult": torch.zeros(len(anns), dtype=torch.bool),
        "masks": torch.stack(masks) if masks else torch.zeros(0, h0, w0, dtype=torch.bool),
        "orig_size": (h0, w0),
    }


class COCO2017DataModule(ImageDataModule):
    """COCO 2017: ``test`` = val2017; ``train``/``val`` = seeded split of train2017.

    Without train2017 on disk, ``val`` is val2017 too. Images are resized to a square
    ``image_size`` (no crop) so boxes and masks map back by scaling. ``download`` is not
    supported (COCO is not in torchvision's downloaders).
    """

    source_dir = "coco2017"

    def _files(self, part: str) -> tuple[Path, Path]:
        base = self.root / "coco2017"
        return base / part, base / "annotations" / f"instances_{part}.json"

    def build_split(self, split: str) -> Dataset:
        layout = LAYOUT.format(root=self.root)
        use_train = split == "train" or (
            split == "val" and all(p.exists() for p in self._files("train2017"))
        )
        images, ann_file = self._files("train2017" if use_train else "val2017")
        require(images, "coco2017", layout)
        require(ann_file, "coco2017", layout)
        data: Dataset = CocoInstances(str(images), str(ann_file))
        num_classes = len(data.cat_index)  # type: ignore[attr-defined]
        if split == "train" and self.augment:
            tf = train_transform(self.image_size, self.mean, self.std)
        else:
            tf = eval_transform(self.image_size, self.mean, self.std, crop=False)
        if use_train:
            train_idx, val_idx = seeded_split(len(data), self.val_fraction, self.seed)
            data = Subset(data, train_idx if split == "train" else val_idx)
        return MappedDataset(data, partial(coco_sample, tf, num_classes))
