"""Pointing-game data as TorchRay reads it: COCO val2014 masks (polygons, crowd RLE, compressed
RLE), the EBP difficult flag file on a VOC07 test fixture in the real layouts, TorchRay's mean
class accuracy, and both subsets (all, difficult) from one run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pycocotools import mask as coco_mask

from tests.test_datasets_real import solid, voc_xml
from xai_bench.benchmarks.pointing_game import PointingGame
from xai_bench.data.base import DatasetNotFoundError
from xai_bench.data.coco import COCO2014DataModule
from xai_bench.data.pointing_flags import load_flags
from xai_bench.data.voc import VOC_CLASSES
from xai_bench.metrics.pointing import class_accuracies, mean_class_accuracy
from xai_bench.results.summary import write_summary
from xai_bench.run import run
from xai_bench.utils.errors import UserInputError

TINY = ("model.weights=random", "model.net.widths=[4,8,8]")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def grid(h: int, w: int, cells: list[tuple[int, int]]) -> torch.Tensor:
    """A bool ``[h, w]`` mask with the ``(row, col)`` cells set."""
    m = torch.zeros(h, w, dtype=torch.bool)
    for r, c in cells:
        m[r, c] = True
    return m


# ---------------------------------------------------------------- COCO val2014 (instances JSON)

H, W = 8, 10  # image 42
# polygon rectangle (2, 1)-(6, 4): COCO pixel (c, r) spans [c, c+1) x [r, r+1) and is in the
# polygon when its centre is, so columns 2..5 and rows 1..3
RECT = [[2, 1, 6, 1, 6, 4, 2, 4]]
RECT_PIXELS = [(r, c) for r in range(1, 4) for c in range(2, 6)]
# triangle (0, 0), (6, 0), (0, 6): centre (c + .5, r + .5) inside when c + r <= 4
TRI = [[0, 0, 6, 0, 0, 6]]
TRI_PIXELS = [(r, c) for r in range(5) for c in range(5) if r + c <= 4]
# crowd region, uncompressed RLE as in instances_val2014.json (column-major runs, zeros first):
# 66 zeros, rows 2..5 of column 8 (indices 66..69), 4 zeros, rows 2..5 of column 9, 2 zeros
CROWD_COUNTS = [66, 4, 4, 4, 2]
CROWD_PIXELS = [(r, c) for c in (8, 9) for r in range(2, 6)]
# compressed RLE string (pycocotools' encoding of a hand-made mask): rows 6..7, columns 0..2
PACKED_PIXELS = [(r, c) for r in (6, 7) for c in range(3)]


def packed_rle() -> dict:
    m = np.asfortranarray(grid(H, W, PACKED_PIXELS).numpy().astype(np.uint8))
    rle = coco_mask.encode(m)
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def write_coco2014(root: Path) -> None:
    """val2014 with TorchRay's file names: image 42 with a polygon person, a triangle car, a
    crowd (RLE) person and a compressed-RLE toothbrush; 73 without annotations; 74 crowd only."""
    anns = [
        {"image_id": 42, "category_id": 1, "iscrowd": 0, "bbox": [2, 1, 4, 3],
         "area": 12.0, "segmentation": RECT},
        {"image_id": 42, "category_id": 3, "iscrowd": 0, "bbox": [0, 0, 6, 6],
         "area": 15.0, "segmentation": TRI},
        {"image_id": 42, "category_id": 1, "iscrowd": 1, "bbox": [8, 2, 2, 4],
         "area": 8.0, "segmentation": {"counts": CROWD_COUNTS, "size": [H, W]}},
        {"image_id": 42, "category_id": 90, "iscrowd": 0, "bbox": [0, 6, 3, 2],
         "area": 6.0, "segmentation": packed_rle()},
        {"image_id": 74, "category_id": 3, "iscrowd": 1, "bbox": [0, 0, 4, 4],
         "area": 16.0, "segmentation": {"counts": [0, 4, 4, 4, 4, 4, 4, 4, 52], "size": [H, W]}},
    ]  # fmt: skip
    images = []
    for image_id in (42, 73, 74):
        name = f"COCO_val2014_{image_id:012d}.jpg"
        solid(root / "coco2014" / "val2014" / name, (90, 160, 220), (W, H))
        images.append({"id": image_id, "file_name": name, "width": W, "height": H})
    data = {
        "info": {"description": "fixture"},
        "licenses": [],
        "images": images,
        "annotations": [{"id": i + 1, **a} for i, a in enumerate(anns)],
        "categories": [
            {"id": 1, "name": "person", "supercategory": "person"},
            {"id": 3, "name": "car", "supercategory": "vehicle"},
            {"id": 90, "name": "toothbrush", "supercategory": "indoor"},
        ],
    }
    (root / "coco2014" / "annotations").mkdir(parents=True)
    (root / "coco2014" / "annotations" / "instances_val2014.json").write_text(json.dumps(data))


def test_coco2014_masks_from_polygons_and_rle(tmp_path: Path) -> None:
    write_coco2014(tmp_path)
    dm = COCO2014DataModule(str(tmp_path), MEAN, STD, 16, limit=None)
    ds = dm.dataset("test")
    assert len(ds) == 2  # 73 has no annotation; 74 (crowd only) is kept, as TorchRay
    s = ds[0]
    assert s["orig_size"] == (H, W) and s["image"].shape == (3, 16, 16)
    assert s["box_labels"].tolist() == [0, 1, 0, 2]  # category ids 1, 3, 1, 90 -> 0, 1, 0, 2
    assert s["label"].tolist() == [1.0, 1.0, 1.0]
    want = [RECT_PIXELS, TRI_PIXELS, CROWD_PIXELS, PACKED_PIXELS]
    assert s["masks"].dtype == torch.bool and s["masks"].shape == (4, H, W)
    for got, pixels in zip(s["masks"], want, strict=True):
        assert torch.equal(got, grid(H, W, pixels))
    torch.testing.assert_close(s["boxes"][2], torch.tensor([8.0, 2, 10, 6]))
    crowd = ds[1]  # uncompressed RLE: columns 0..3, rows 0..3
    assert crowd["box_labels"].tolist() == [1]
    assert torch.equal(crowd["masks"][0], grid(H, W, [(r, c) for r in range(4) for c in range(4)]))
    assert dm.skipped_annotations("test", [0, 1]) == 0
    assert dm.sources() == [tmp_path / "coco2014"]


def test_coco2014_pointing_run_scores_crowd_masks(make_cfg, tmp_path: Path) -> None:
    """Centre (5, 4), tolerance 2.5, masks: person hit (rectangle pixel (5, 3) at 1 px); car
    missed on 42 (triangle pixel (3, 1) at 3.6 px) and hit on 74 through its crowd RLE (pixel
    (3, 3) at 2.24 px); toothbrush missed (3.6 px): mean (1 + 1/2 + 0) / 3."""
    write_coco2014(tmp_path / "data")
    cfg = make_cfg(
        "benchmark=pointing_game", *TINY, "dataset=coco2014", "dataset.image_size=32",
        f"paths.data_dir={tmp_path / 'data'}", "benchmark.methods=[random]",
        "benchmark.gt=masks", "benchmark.tolerance=2.5",
    )  # fmt: skip
    out = run(cfg, tmp_path / "run")
    assert out["n_pairs"] == 4 and out["n_images"] == 2
    assert out["accuracy/center"] == pytest.approx(0.5)
    assert out["hit_rate/center"] == pytest.approx(0.5)


def test_coco2014_missing_files_are_one_line(tmp_path: Path) -> None:
    dm = COCO2014DataModule(str(tmp_path), MEAN, STD, 16)
    with pytest.raises(DatasetNotFoundError) as err:
        dm.setup("test")
    assert "\n" not in str(err.value)
    assert f"image folder {tmp_path / 'coco2014' / 'val2014'} does not exist" in str(err.value)
    (tmp_path / "coco2014" / "val2014").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as err:
        COCO2014DataModule(str(tmp_path), MEAN, STD, 16).setup("test")
    path = tmp_path / "coco2014" / "annotations" / "instances_val2014.json"
    message = str(err.value)
    assert "\n" not in message and f"annotations file {path} does not exist" in message


# ---------------------------------------------------------------- TorchRay's mean class accuracy


def test_mean_class_accuracy_on_a_hand_made_table() -> None:
    """Class 0: 3 hits, 1 miss; class 1: 2 misses; class 2: 1 hit; class 3: no pair."""
    table = [(0, 1), (0, 1), (1, 0), (0, 0), (2, 1), (0, 1), (1, 0)]  # (class, hit)
    classes = torch.tensor([c for c, _ in table])
    hits = torch.tensor([float(h) for _, h in table])
    n_hits, counts, acc = class_accuracies(hits, classes, 4)
    assert n_hits.tolist() == [3, 0, 1, 0] and counts.tolist() == [4, 2, 1, 0]
    assert mean_class_accuracy(acc, counts) == pytest.approx((0.75 + 0 + 1) / 3)
    assert mean_class_accuracy(acc, counts, "all") == pytest.approx(1.75 / 4)
    misses = counts - n_hits  # TorchRay's PointingGame.accuracy, written out
    torchray = (n_hits.double() / (n_hits + misses).clamp(min=1)).mean()
    assert mean_class_accuracy(acc, counts, "all") == pytest.approx(float(torchray))
    assert float(hits.mean()) == pytest.approx(4 / 7)  # the hit rate is another number
    assert math.isnan(mean_class_accuracy(acc, torch.zeros(4, dtype=torch.long)))
    with pytest.raises(ValueError, match="over must be"):
        mean_class_accuracy(acc, counts, "mean")


# ---------------------------------------------------------------- VOC07 test + EBP flag file

# id -> (W, H, objects (name, xmin, ymin, xmax, ymax, difficult)), 1-based inclusive corners.
# Centre points (W/2, H/2) at tolerance 15: hit, miss (16 px), hit, miss, hit, (skipped), miss,
# hit.
VOC_TEST = {
    "000001": (64, 48, [("dog", 20, 15, 40, 35, 0), ("person", 49, 1, 64, 48, 0)]),
    "000002": (32, 32, [("train", 1, 1, 32, 32, 0)]),
    "000003": (80, 60, [("cat", 1, 1, 10, 10, 0), ("person", 30, 20, 50, 40, 0)]),
    "000004": (100, 50, [("dog", 40, 20, 60, 30, 1), ("bird", 1, 1, 5, 5, 0)]),
    "000005": (40, 40, [("train", 1, 1, 40, 40, 0)]),
}
# The EBP difficult file as TorchRay ships it: `<id>\t<20 flags>\n` per line, class order of
# VOC_CLASSES; 000004 is absent, so all its pairs are in the difficult subset (TorchRay).
DIFFICULT = {"000001": ["person"], "000002": [], "000003": ["cat", "person"], "000005": []}


def flag_line(name: str, classes: list[str]) -> str:
    return name + "".join(f"\t{int(c in classes)}" for c in VOC_CLASSES) + "\n"


def write_voc_with_flags(root: Path) -> Path:
    """VOCdevkit/VOC2007 (Annotations/*.xml, JPEGImages/*.jpg, ImageSets/Main/test.txt) and
    the flag file beside it; returns the flag file."""
    voc = root / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for name, (w, h, objects) in VOC_TEST.items():
        solid(voc / "JPEGImages" / f"{name}.jpg", (120, 90, 60), (w, h))
        (voc / "Annotations" / f"{name}.xml").write_text(voc_xml(name, w, h, objects))
    (voc / "ImageSets" / "Main" / "test.txt").write_text("\n".join(VOC_TEST) + "\n")
    flags = voc / "pointing_game_ebp_voc07_difficult.txt"
    flags.write_text("".join(flag_line(n, c) for n, c in DIFFICULT.items()))
    return flags


def test_flag_file_format(tmp_path: Path) -> None:
    flags = load_flags(write_voc_with_flags(tmp_path))
    assert list(flags) == list(DIFFICULT)
    assert flags["000003"].nonzero().flatten().tolist() == [7, 14]  # cat, person
    assert flags["000002"].dtype == torch.bool and flags["000002"].shape == (20,)
    assert not flags["000002"].any()
    crlf = tmp_path / "crlf.txt"  # Windows line ends and a blank line read the same
    crlf.write_bytes((flag_line("000001", ["dog"]) + "\n").replace("\n", "\r\n").encode())
    assert load_flags(crlf)["000001"].nonzero().flatten().tolist() == [11]


def voc_run(make_cfg, root: Path, flags: Path, *extra: str) -> str:
    return make_cfg(
        "benchmark=pointing_game", *TINY, "dataset=voc07", "dataset.image_size=32",
        f"dataset.datamodule.root={root}", "benchmark.methods=[random]",
        "benchmark.n_images=null", "benchmark.tolerance=15", f"benchmark.subset_flags={flags}",
        *extra,
    )  # fmt: skip


def test_one_run_reports_all_and_difficult_subsets(make_cfg, tmp_path: Path) -> None:
    """Centre baseline, by hand. All 7 pairs: dog 1/1, person 1/2, train 2/2, cat 0/1, bird 0/1
    -> mean 2.5/5, hit rate 4/7. Difficult (flagged, or image absent from the file): person
    1/2, cat 0/1, bird 0/1 -> mean 0.5/3, hit rate 1/4. TorchRay's mean over all 20 classes:
    2.5/20 and 0.5/20."""
    flags = write_voc_with_flags(tmp_path / "voc")
    out = run(voc_run(make_cfg, tmp_path / "voc", flags), tmp_path / "run")
    assert out["n_pairs"] == 7 and out["difficult/n_pairs"] == 4
    assert out["accuracy/center"] == pytest.approx(0.5)
    assert out["hit_rate/center"] == pytest.approx(4 / 7)
    assert out["difficult/accuracy/center"] == pytest.approx(1 / 6)
    assert out["difficult/hit_rate/center"] == pytest.approx(1 / 4)
    table = pd.read_csv(tmp_path / "run" / "results.csv")
    center = table[table.method == "center"]
    acc = center[center.metric == "accuracy"].set_index("subset")
    assert acc["value"].to_dict() == pytest.approx({"all": 0.5, "difficult": 1 / 6})
    assert acc["n"].to_dict() == {"all": 7, "difficult": 4}
    per_class = center[(center.metric == "class_accuracy") & (center.subset == "difficult")]
    index = {str(VOC_CLASSES.index(c)): c for c in ("bird", "cat", "person")}  # no names
    got = {index[c]: v for c, v in zip(per_class["class"], per_class["value"])}
    assert got == {"bird": 0.0, "cat": 0.0, "person": 0.5}
    assert set(table[table.method == "random"]["subset"]) == {"all", "difficult"}
    assert (tmp_path / "run" / "pointing_game_difficult.png").exists()
    md = write_summary(tmp_path / "run")[1].read_text()  # summary.md keeps the subsets apart
    assert "| accuracy ↑ subset=all | 0.5 (n=7) |" in md
    assert "| accuracy ↑ subset=difficult | 0.1667 (n=4) |" in md
    out = run(
        voc_run(make_cfg, tmp_path / "voc", flags, "benchmark.class_mean=all"), tmp_path / "all"
    )
    assert out["accuracy/center"] == pytest.approx(2.5 / 20)
    assert out["difficult/accuracy/center"] == pytest.approx(0.5 / 20)


# ---------------------------------------------------------------- bad flag files: one line

BAD_FLAGS = {
    "spaces": ("000001 " + " ".join("0" * 20) + "\n", "line 1: no tab-separated flags"),
    "not01": (flag_line("000001", []).replace("\t0\n", "\t2\n"), "line 1: a flag is not 0 or 1"),
    "ragged": (flag_line("000001", []) + "000002\t0\t1\n", "line 2: 2 flags where"),
    "twice": (flag_line("000001", []) * 2, "line 2: image '000001' is listed twice"),
    "empty": ("\n", "has no line"),
}


@pytest.mark.parametrize("case", list(BAD_FLAGS))
def test_malformed_flag_file_is_one_line(tmp_path: Path, case: str) -> None:
    text, message = BAD_FLAGS[case]
    path = tmp_path / "flags.txt"
    path.write_text(text)
    with pytest.raises(UserInputError) as err:
        PointingGame(subset_flags=str(path))
    assert "\n" not in str(err.value) and f"subset_flags file {path}" in str(err.value)
    assert message in str(err.value) and "TAB" in str(err.value)


def test_missing_or_mismatched_flag_file_is_one_line(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"flags\.txt does not exist") as err:
        PointingGame(subset_flags=str(tmp_path / "flags.txt"))
    assert "\n" not in str(err.value)
    write_voc_with_flags(tmp_path / "voc")
    coco_flags = tmp_path / "coco_flags.txt"  # a COCO file (80 flags) on VOC
    coco_flags.write_text("000001" + "\t0" * 80 + "\n")
    with pytest.raises(UserInputError, match="has 80 flags per line but dataset 'voc07' has 20"):
        run(voc_run(make_cfg, tmp_path / "voc", coco_flags), tmp_path / "run")


def test_posagg_claims_read_the_difficult_subset_not_the_mean_of_both() -> None:
    """POSAGG Tables 1/3 are on the multi-class (EBP difficult) subset: with both subsets in the
    rows, the pointing claims use the difficult rows only."""
    from xai_bench.results.claims import check_claims

    def rows(benchmark: str, subset: str, gradcam: float, gradient: float) -> pd.DataFrame:
        return pd.DataFrame(
            [{"experiment": "e", "benchmark": benchmark, "model": "vgg16", "dataset": "voc07",
              "metric": "accuracy", "method": m, "value": v, "subset": subset}
             for m, v in (("gradcam", gradcam), ("gradient", gradient))]
        )  # fmt: skip

    long = pd.concat([
        rows("pointing_game", "all", 0.9, 0.8), rows("pointing_game", "difficult", 0.7, 0.6),
        rows("pointing_game_restricted", "all", 0.5, 0.5),
        rows("pointing_game_restricted", "difficult", 0.4, 0.4),
    ])  # fmt: skip
    table = check_claims(long)
    row = table[table["claim"].str.contains("restricted clearly below", regex=False)].iloc[0]
    assert "0.70/0.40" in row["ours"] and "0.60/0.40" in row["ours"]
