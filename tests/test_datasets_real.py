"""Real-dataset DataModules on tiny files written in each dataset's on-disk format."""

from __future__ import annotations

import json
import pickle
import shutil
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from xai_bench.data.base import DatasetNotFoundError, seeded_split
from xai_bench.data.birds import BirdsDataModule
from xai_bench.data.cifar import CIFARDataModule
from xai_bench.data.coco import COCO2017DataModule
from xai_bench.data.food101 import Food101DataModule
from xai_bench.data.imagenet import ImageNetDataModule
from xai_bench.data.mnist import MNISTDataModule
from xai_bench.data.voc import VOC_CLASSES, VOC2007DataModule

IMNET_MEAN, IMNET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
JPEG_TOL = 4 / 255  # JPEG keeps flat colours to within a few grey levels


def common(root: Path, mean: Any, std: Any, size: int, **kw: Any) -> dict[str, Any]:
    return dict(
        root=str(root), mean=mean, std=std, image_size=size, batch_size=64, limit=None, seed=0, **kw
    )


def load(dm: Any, split: str) -> dict[str, Any]:
    return next(iter(dm.dataloader(split)))


def normed(rgb: Any, mean: Any, std: Any) -> torch.Tensor:
    return (torch.tensor(rgb, dtype=torch.float32) / 255 - torch.tensor(mean)) / torch.tensor(std)


def channel_means(images: torch.Tensor) -> torch.Tensor:
    return images.mean(dim=(-1, -2))


def solid(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> None:
    """A flat-colour image of ``size`` = (W, H); format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path, quality=100)


# ---------------------------------------------------------------- MNIST (IDX, big-endian)


def write_idx(raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes()
    )
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes()
    )


def test_mnist(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    train_vals = np.arange(10) * 20
    train_labels = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3])
    write_idx(raw, "train", np.ones((10, 28, 28)) * train_vals[:, None, None], train_labels)
    write_idx(raw, "t10k", np.full((4, 28, 28), 255), np.array([7, 0, 7, 0]))
    dm = MNISTDataModule(**common(tmp_path, [0.1307], [0.3081], 28, val_fraction=0.2))
    tr_idx, va_idx = seeded_split(10, 0.2, 0)
    for split, idx in (("train", tr_idx), ("val", va_idx)):
        b = load(dm, split)
        assert b["image"].shape == (len(idx), 1, 28, 28) and b["label"].dtype == torch.long
        assert b["label"].tolist() == train_labels[idx].tolist()
        expected = (torch.tensor(train_vals[idx] / 255.0) - 0.1307) / 0.3081
        torch.testing.assert_close(channel_means(b["image"])[:, 0], expected.float())
        assert b["index"].tolist() == list(range(len(idx)))
    test = load(dm, "test")
    assert test["label"].tolist() == [7, 0, 7, 0]
    assert torch.allclose(test["image"], torch.tensor((1 - 0.1307) / 0.3081))
    small = MNISTDataModule(**common(tmp_path, [0.1307], [0.3081], 32))
    assert load(small, "test")["image"].shape == (4, 1, 32, 32)


# ---------------------------------------------------------------- CIFAR (pickled batches)


def cifar_batch(
    path: Path, colours: list[tuple[int, int, int]], labels: list[int], label_key: str
) -> None:
    planes = np.array([[np.full(1024, c, np.uint8) for c in rgb] for rgb in colours])
    entry = {
        "batch_label": "fixture",
        "data": planes.reshape(len(colours), 3072),
        label_key: labels,
        "filenames": [f"img_{i}.png" for i in range(len(labels))],
    }
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_cifar(tmp_path: Path, variant: str) -> None:
    mean = (0.4914, 0.4822, 0.4465) if variant == "cifar10" else (0.5071, 0.4865, 0.4409)
    std = (0.2470, 0.2435, 0.2616) if variant == "cifar10" else (0.2673, 0.2564, 0.2762)
    colours = [(10 * i, 200 - 10 * i, 100 + 5 * i) for i in range(10)]
    labels = [(7 * i) % (10 if variant == "cifar10" else 100) for i in range(10)]
    if variant == "cifar10":
        folder, key, meta = tmp_path / "cifar-10-batches-py", "labels", "batches.meta"
        folder.mkdir()
        for b in range(5):  # two images per training batch
            cifar_batch(
                folder / f"data_batch_{b + 1}",
                colours[2 * b : 2 * b + 2],
                labels[2 * b : 2 * b + 2],
                key,
            )
        cifar_batch(folder / "test_batch", [(255, 0, 0), (0, 0, 255)], [1, 2], key)
        meta_entry = {"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": 2}
    else:
        folder, key, meta = tmp_path / "cifar-100-python", "fine_labels", "meta"
        folder.mkdir()
        cifar_batch(folder / "train", colours, labels, key)
        cifar_batch(folder / "test", [(255, 0, 0), (0, 0, 255)], [1, 2], key)
        meta_entry = {
            "fine_label_names": [f"f{i}" for i in range(100)],
            "coarse_label_names": [f"k{i}" for i in range(20)],
        }
    with open(folder / meta, "wb") as f:
        pickle.dump(meta_entry, f, protocol=2)

    dm = CIFARDataModule(variant=variant, **common(tmp_path, mean, std, 32, val_fraction=0.3))
    tr_idx, va_idx = seeded_split(10, 0.3, 0)
    for split, idx in (("train", tr_idx), ("val", va_idx)):
        b = load(dm, split)
        assert b["image"].shape == (len(idx), 3, 32, 32)
        assert b["label"].tolist() == [labels[i] for i in idx]
        expected = torch.stack([normed(colours[i], mean, std) for i in idx])
        torch.testing.assert_close(channel_means(b["image"]), expected)
    test = load(dm, "test")
    assert test["label"].tolist() == [1, 2]
    torch.testing.assert_close(test["image"][0, :, 5, 7], normed((255, 0, 0), mean, std))
    aug = CIFARDataModule(variant=variant, **common(tmp_path, mean, std, 32, augment=True))
    assert load(aug, "train")["image"].shape == (9, 3, 32, 32)


# ---------------------------------------------------------------- Food-101


def test_food101(tmp_path: Path) -> None:
    mean, std = (0.5493, 0.4450, 0.3435), (0.2729, 0.2759, 0.2800)
    base = tmp_path / "food-101"
    classes = {"sushi": (250, 250, 250), "apple_pie": (200, 120, 40)}
    meta = {"train": {}, "test": {}}
    for cls, rgb in classes.items():
        for split, ids in (("train", range(5)), ("test", range(100, 102))):
            meta[split][cls] = [f"{cls}/{i}" for i in ids]
            for i in ids:
                solid(base / "images" / cls / f"{i}.jpg", rgb, (50, 40))
    (base / "meta").mkdir()
    for split in ("train", "test"):
        (base / "meta" / f"{split}.json").write_text(json.dumps(meta[split]))
    (base / "meta" / "classes.txt").write_text("apple_pie\nsushi\n")
    dm = Food101DataModule(**common(tmp_path, mean, std, 32, val_fraction=0.2))
    assert [len(load(dm, s)["label"]) for s in ("train", "val", "test")] == [8, 2, 4]
    test = load(dm, "test")
    assert test["image"].shape == (4, 3, 32, 32)
    names = sorted(classes)  # torchvision indexes Food-101 classes in sorted order
    assert test["label"].tolist() == [names.index("sushi")] * 2 + [names.index("apple_pie")] * 2
    for img, lab in zip(test["image"], test["label"]):
        torch.testing.assert_close(
            channel_means(img),
            normed(classes[names[lab]], mean, std),
            atol=JPEG_TOL / min(std),
            rtol=0,
        )


# ---------------------------------------------------------------- Birds (ImageFolder x3)

BIRDS = {"ABBOTTS BABBLER": (30, 60, 90), "BLACK & YELLOW BROADBILL": (240, 200, 10)}


def write_birds(root: Path, counts: dict[str, int], extra: str | None = None) -> None:
    for split, n in counts.items():
        for cls, rgb in BIRDS.items():
            for i in range(n):
                solid(root / "birds250" / split / cls / f"{i + 1}.jpg", rgb, (48, 48))
    if extra:
        solid(root / "birds250" / "test" / extra / "1.jpg", (0, 0, 0), (48, 48))


def test_birds(tmp_path: Path) -> None:
    mean, std = (0.4723, 0.4706, 0.3999), (0.2011, 0.1978, 0.2033)
    write_birds(tmp_path, {"train": 3, "valid": 1, "test": 2})
    dm = BirdsDataModule(**common(tmp_path, mean, std, 32))
    train, val, test = (load(dm, s) for s in ("train", "val", "test"))
    assert len(train["label"]) == 6 and len(val["label"]) == 2
    assert len(test["label"]) == len(val["label"]) + 4  # valid + test merged
    assert test["label"].tolist() == [0, 1, 0, 0, 1, 1]
    assert test["index"].tolist() == list(range(6))
    assert test["image"].shape == (6, 3, 32, 32)
    torch.testing.assert_close(
        channel_means(test["image"][1]),
        normed(BIRDS["BLACK & YELLOW BROADBILL"], mean, std),
        atol=JPEG_TOL / min(std),
        rtol=0,
    )


def test_birds_class_mismatch(tmp_path: Path) -> None:
    write_birds(tmp_path, {"train": 1, "valid": 1, "test": 1}, extra="ZEBRA DOVE")
    dm = BirdsDataModule(**common(tmp_path, (0.5,) * 3, (0.2,) * 3, 32))
    with pytest.raises(ValueError, match="class folders"):
        dm.dataset("test")


# ---------------------------------------------------------------- ImageNet (wnid folders)


def test_imagenet(tmp_path: Path) -> None:
    wnids = {"n01440764": (255, 255, 255), "n01443537": (0, 0, 0)}
    for wnid, rgb in wnids.items():
        for i in range(5):
            solid(tmp_path / "imagenet" / "train" / wnid / f"{wnid}_{i}.JPEG", rgb)
        for i in range(2):
            solid(tmp_path / "imagenet" / "val" / wnid / f"ILSVRC2012_val_{wnid}{i}.JPEG", rgb)
    dm = ImageNetDataModule(**common(tmp_path, IMNET_MEAN, IMNET_STD, 32, val_fraction=0.2))
    assert [len(load(dm, s)["label"]) for s in ("train", "val", "test")] == [8, 2, 4]
    test = load(dm, "test")
    assert test["label"].tolist() == [0, 0, 1, 1] and test["image"].shape == (4, 3, 32, 32)
    torch.testing.assert_close(
        channel_means(test["image"][2]),
        normed((0, 0, 0), IMNET_MEAN, IMNET_STD),
        atol=JPEG_TOL / min(IMNET_STD),
        rtol=0,
    )
    shutil.rmtree(tmp_path / "imagenet" / "train")
    no_train = ImageNetDataModule(**common(tmp_path, IMNET_MEAN, IMNET_STD, 32))
    assert load(no_train, "val")["label"].tolist() == [0, 0, 1, 1]  # val folder without train


# ---------------------------------------------------------------- PASCAL VOC 2007 (XML)

VOC_IMAGES = {  # id -> (W, H, split, [(name, xmin, ymin, xmax, ymax, difficult)])
    "000005": (60, 40, "trainval", [("chair", 11, 21, 30, 40, 0), ("chair", 1, 1, 5, 8, 1)]),
    "000007": (50, 30, "trainval", [("car", 2, 3, 50, 30, 0)]),
    "000009": (40, 40, "trainval", [("horse", 5, 5, 20, 20, 0), ("person", 1, 2, 3, 4, 0)]),
    "000001": (64, 48, "test", [("dog", 49, 1, 64, 48, 0), ("person", 8, 12, 20, 44, 1)]),
    "000002": (32, 32, "test", [("train", 1, 1, 32, 32, 0)]),
}


def voc_xml(name: str, w: int, h: int, objects: list[tuple]) -> str:
    objs = "".join(
        f"<object><name>{cls}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{d}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for cls, x0, y0, x1, y1, d in objects
    )
    return (
        f"<annotation><folder>VOC2007</folder><filename>{name}.jpg</filename>"
        f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
        f"<segmented>0</segmented>{objs}</annotation>"
    )


def test_voc07(tmp_path: Path) -> None:
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for name, (w, h, _, objects) in VOC_IMAGES.items():
        solid(voc / "JPEGImages" / f"{name}.jpg", (128, 128, 128), (w, h))
        (voc / "Annotations" / f"{name}.xml").write_text(voc_xml(name, w, h, objects))
    for split in ("trainval", "test"):
        ids = [k for k, v in VOC_IMAGES.items() if v[2] == split]
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    dm = VOC2007DataModule(**common(tmp_path, IMNET_MEAN, IMNET_STD, 32, val_fraction=1 / 3))
    assert [len(load(dm, s)["label"]) for s in ("train", "val", "test")] == [2, 1, 2]
    b = load(dm, "test")
    assert b["image"].shape == (2, 3, 32, 32)  # square resize, no crop
    assert b["orig_size"] == [(48, 64), (32, 32)]
    torch.testing.assert_close(b["boxes"][0], torch.tensor([[48.0, 0, 64, 48], [7, 11, 20, 44]]))
    torch.testing.assert_close(b["boxes"][1], torch.tensor([[0.0, 0, 32, 32]]))
    assert b["box_labels"][0].tolist() == [VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")]
    assert b["difficult"][0].tolist() == [False, True] and b["difficult"][1].tolist() == [False]
    assert b["label"].dtype == torch.float32 and b["label"].shape == (2, 20)
    assert b["label"][0].nonzero().flatten().tolist() == [11, 14]  # dog, person
    assert b["label"][1].nonzero().flatten().tolist() == [18]  # train
    torch.testing.assert_close(
        channel_means(b["image"][1]),
        normed((128,) * 3, IMNET_MEAN, IMNET_STD),
        atol=JPEG_TOL / min(IMNET_STD),
        rtol=0,
    )
    seen = 0
    for split in ("train", "val"):
        b = load(dm, split)
        for boxes, size, difficult in zip(b["boxes"], b["orig_size"], b["difficult"]):
            if size == (40, 60):  # 000005: xmin=11 -> x0=10, ymin=21 -> y0=20, max unchanged
                torch.testing.assert_close(boxes, torch.tensor([[10.0, 20, 30, 40], [0, 0, 5, 8]]))
                assert difficult.tolist() == [False, True]
                seen += 1
    assert seen == 1


# ---------------------------------------------------------------- COCO 2017 (instances JSON)

CATS = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 90, "name": "toothbrush", "supercategory": "indoor"},
]


def write_coco(root: Path, part: str, images: list[tuple[int, int, int, list[dict]]]) -> None:
    folder = root / "coco2017" / part
    anns, infos, next_id = [], [], 1
    for image_id, w, h, objects in images:
        name = f"{image_id:012d}.jpg"
        solid(folder / name, (90, 160, 220), (w, h))
        infos.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for obj in objects:
            anns.append({"id": next_id, "image_id": image_id, "iscrowd": 0, **obj})
            next_id += 1
    (root / "coco2017" / "annotations").mkdir(parents=True, exist_ok=True)
    data = {
        "info": {"description": "fixture"},
        "licenses": [],
        "images": infos,
        "annotations": anns,
        "categories": CATS,
    }
    (root / "coco2017" / "annotations" / f"instances_{part}.json").write_text(json.dumps(data))


RECT = {
    "category_id": 3,
    "bbox": [10, 10, 20, 10],
    "area": 200.0,
    "segmentation": [[10, 10, 30, 10, 30, 20, 10, 20]],
}
TRIANGLE = {
    "category_id": 90,
    "bbox": [0, 0, 20, 20],
    "area": 200.0,
    "segmentation": [[0, 0, 20, 0, 0, 20]],
}
CROWD = {
    "category_id": 1,
    "bbox": [0, 0, 60, 40],
    "area": 2400.0,
    "iscrowd": 1,
    "segmentation": {"counts": [0, 2400], "size": [40, 60]},
}


def test_coco2017(tmp_path: Path) -> None:
    write_coco(
        tmp_path,
        "val2017",
        [
            (139, 60, 40, [RECT, TRIANGLE, CROWD]),
            (285, 48, 32, [{**RECT, "category_id": 1}]),
            (632, 30, 30, []),  # no annotations: skipped
            (724, 30, 30, [CROWD]),  # only a crowd annotation: skipped
        ],
    )
    dm = COCO2017DataModule(**common(tmp_path, IMNET_MEAN, IMNET_STD, 32))
    with pytest.raises(DatasetNotFoundError, match="train2017"):
        dm.dataset("train")
    assert len(load(dm, "val")["label"]) == 2  # val2017 stands in without train2017
    b = load(dm, "test")
    assert b["image"].shape == (2, 3, 32, 32) and b["orig_size"] == [(40, 60), (32, 48)]
    assert b["label"].shape == (2, 3)
    assert b["label"].tolist() == [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
    assert b["box_labels"][0].tolist() == [1, 2]  # cat ids 3, 90 -> contiguous 1, 2
    torch.testing.assert_close(b["boxes"][0], torch.tensor([[10.0, 10, 30, 20], [0, 0, 20, 20]]))
    assert b["difficult"][0].tolist() == [False, False]
    rect, tri = b["masks"][0]
    assert b["masks"][0].dtype == torch.bool and b["masks"][0].shape == (2, 40, 60)
    assert int(rect.sum()) == 200 and bool(rect[10:20, 10:30].all())  # the polygon's area
    assert 180 <= int(tri.sum()) <= 220 and tri[2, 2] and not tri[15, 15]
    ys, xs = tri.nonzero(as_tuple=True)
    assert int(xs.max()) < 20 and int(ys.max()) < 20  # inside its box
    torch.testing.assert_close(
        channel_means(b["image"][0]),
        normed((90, 160, 220), IMNET_MEAN, IMNET_STD),
        atol=JPEG_TOL / min(IMNET_STD),
        rtol=0,
    )

    write_coco(tmp_path, "train2017", [(i, 24, 24, [RECT]) for i in range(1, 6)])
    dm = COCO2017DataModule(**common(tmp_path, IMNET_MEAN, IMNET_STD, 32, val_fraction=0.2))
    assert [len(load(dm, s)["label"]) for s in ("train", "val", "test")] == [4, 1, 2]


# ---------------------------------------------------------------- missing files fail fast

MISSING = {
    "mnist": (MNISTDataModule, {}, "MNIST/raw"),
    "cifar10": (CIFARDataModule, {"variant": "cifar10"}, "cifar-10-batches-py"),
    "cifar100": (CIFARDataModule, {"variant": "cifar100"}, "cifar-100-python"),
    "food101": (Food101DataModule, {}, "food-101/images"),
    "birds250": (BirdsDataModule, {}, "birds250/valid"),
    "imagenet": (ImageNetDataModule, {}, "imagenet/val"),
    "voc07": (VOC2007DataModule, {}, "VOCdevkit/VOC2007"),
    "coco2017": (COCO2017DataModule, {}, "coco2017/val2017"),
}


@pytest.mark.parametrize("name", list(MISSING))
def test_missing_root_fails_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    import torchvision.datasets as tvd

    def no_download(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a download was attempted")

    for module in (tvd.mnist, tvd.cifar, tvd.food101, tvd.voc):
        monkeypatch.setattr(module, "download_and_extract_archive", no_download)
    cls, kwargs, rel = MISSING[name]
    root = tmp_path / "nowhere"
    dm = cls(**kwargs, **common(root, (0.5,) * 3, (0.2,) * 3, 32))
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError) as err:
        dm.setup("test")
    assert time.perf_counter() - start < 1.0
    assert str(root / rel) in str(err.value) and "Expected layout" in str(err.value)
    assert not root.exists()
