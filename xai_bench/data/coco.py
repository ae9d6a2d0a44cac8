"""MS COCO instances (Lin et al. 2014) read with pycocotools via torchvision's loader.

Multi-label classification over the 80 categories with boxes and instance masks: ``coco2017``
(GCAM Table 4's val2017) and ``coco2014`` (val2014, TorchRay's pointing game).
"""

from __future__ import annotations

import contextlib
import io
import os
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset, Subset
from torchvision.datasets import CocoDetection

from xai_bench.data.base import (
    DatasetNotFoundError,
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

LAYOUT = """{root}/
└── coco{year}/
    ├── train{year}/*.jpg   (optional for evaluation)
    ├── val{year}/*.jpg
    └── annotations/
        ├── instances_train{year}.json
        └── instances_val{year}.json"""


class CocoInstances(CocoDetection):
    """:class:`~torchvision.datasets.CocoDetection` without empty images (and by default
    without crowd annotations).

    Targets are the annotations, each with its ``mask`` (``annToMask``: polygons, or RLE
    counts for crowd regions, at original resolution) and ``class_index`` (contiguous index in
    sorted category-id order, TorchRay's ``_COCO_CLASS_TO_INDEX``). An annotation whose box has
    zero area or lies outside the image, or whose mask is empty, is left out with a warning
    (:meth:`skipped_annotations` counts them). A corrupt image file is named
    (:func:`~xai_bench.data.base.open_image`).

    Args:
        root: folder of the images.
        ann_file: the ``instances_*.json`` file.
        include_crowd: keep ``iscrowd`` annotations (RLE masks), as TorchRay's pointing game
            does (``coco_as_class_ids`` / ``coco_as_mask`` use every annotation).
    """

    def __init__(self, root: str, ann_file: str, include_crowd: bool = False) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            super().__init__(root, ann_file)
        self.include_crowd = bool(include_crowd)
        self.cat_index = {c: i for i, c in enumerate(sorted(self.coco.getCatIds()))}
        self.ids = [i for i in self.ids if self._annotations(i)]

    def _annotations(self, image_id: int) -> list[dict[str, Any]]:
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id))
        return [a for a in anns if self.include_crowd or not a.get("iscrowd", 0)]

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

    def orig_size(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of sample ``index`` from the annotation file (reads no pixels)."""
        info = self.coco.loadImgs(self.ids[index])[0]
        return int(info["height"]), int(info["width"])


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


class COCO2017DataModule(AspectResize, ImageDataModule):
    """COCO 2017: ``test`` = val2017; ``train``/``val`` = seeded split of train2017.

    Without train2017 on disk, ``val`` is val2017 too. Images are resized to a square
    ``image_size`` (no crop), or with ``resize="torchray"`` to the shorter side ``image_size``
    with the aspect kept (:mod:`~xai_bench.data.resize`); boxes and masks stay in original
    pixels. ``download`` is not supported (COCO is not in torchvision's downloaders). Crowd
    annotations are left out.
    """

    source_dir = "coco2017"
    year: ClassVar[str] = "2017"
    include_crowd: ClassVar[bool] = False

    def _files(self, part: str) -> tuple[Path, Path]:
        base = self.root / f"coco{self.year}"
        return base / part, base / "annotations" / f"instances_{part}.json"

    def _require(self, path: Path) -> None:
        """Raise :class:`~xai_bench.data.base.DatasetNotFoundError` if ``path`` is missing."""
        require(path, f"coco{self.year}", LAYOUT.format(root=self.root, year=self.year))

    def build_split(self, split: str) -> Dataset:
        train, val = f"train{self.year}", f"val{self.year}"
        use_train = split == "train" or (
            split == "val" and all(p.exists() for p in self._files(train))
        )
        images, ann_file = self._files(train if use_train else val)
        self._require(images)
        self._require(ann_file)
        data: Dataset = CocoInstances(str(images), str(ann_file), self.include_crowd)
        num_classes = len(data.cat_index)  # type: ignore[attr-defined]
        if split == "train" and self.augment:
            tf = train_transform(self.image_size, self.mean, self.std)
        else:
            tf = self.eval_transform()
        if use_train:
            train_idx, val_idx = seeded_split(len(data), self.val_fraction, self.seed)
            data = Subset(data, train_idx if split == "train" else val_idx)
        return MappedDataset(data, partial(coco_sample, tf, num_classes))


class COCO2014DataModule(COCO2017DataModule):
    """COCO 2014 as TorchRay's pointing game reads it: ``test`` = all of val2014.

    TorchRay (``torchray/benchmark/datasets.py``, ``examples/attribution_benchmark.py``)
    evaluates every val2014 image (``limiter=None``) over the 80 categories in category-id
    order, with every annotation of a class, crowd regions (RLE) included, as its ground
    truth. Images without annotations give no pair, so they are left out here. ``train`` /
    ``val`` = seeded split of train2014 (``val`` = val2014 without train2014). A missing file
    or folder is named in one line.
    """

    source_dir = "coco2014"
    year: ClassVar[str] = "2014"
    include_crowd: ClassVar[bool] = True

    def _require(self, path: Path) -> None:
        if not path.exists():
            what = "annotations file" if path.suffix == ".json" else "image folder"
            raise DatasetNotFoundError(
                f"dataset 'coco2014': {what} {path} does not exist: put COCO 2014's "
                f"{path.name}{'' if path.suffix else '/*.jpg'} there (layout "
                f"<root>/coco2014/{{val2014,train2014}}/*.jpg and "
                f"<root>/coco2014/annotations/instances_*2014.json) or point paths.data_dir "
                "(or dataset.datamodule.root) at the folder that holds coco2014/"
            )
