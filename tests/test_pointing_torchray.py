"""``dataset.resize=torchray``: TorchRay's aspect-kept inputs on a VOC07 fixture, batches of one
size, and pointing-game points at original resolution."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate

from tests.test_datasets_real import solid, voc_xml
from xai_bench.benchmarks.pointing_game import PointingGame
from xai_bench.data.base import collate_samples
from xai_bench.data.resize import check_resize
from xai_bench.data.voc import VOC2007DataModule
from xai_bench.engine.batches import BatchPlan, size_batches
from xai_bench.run import run
from xai_bench.utils.errors import UserInputError

TINY = ("model.weights=random", "model.net.widths=[4,8,8]")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# id -> (W, H, objects (name, xmin, ymin, xmax, ymax, difficult), 1-based inclusive corners,
# model input (H', W') at shorter side 32: int(32 * long / short), e.g. 32 * 50 / 33 = 48.48)
VOC = {
    "000001": (64, 48, [("dog", 25, 15, 40, 30, 0)], (32, 42)),  # centre (32, 24): hit
    "000002": (50, 33, [("cat", 1, 1, 5, 5, 0)], (32, 48)),  # centre 24.4 px away: miss
    "000003": (48, 72, [("person", 20, 30, 30, 40, 0)], (48, 32)),  # portrait; centre: hit
    "000004": (80, 60, [("dog", 1, 1, 8, 8, 0), ("cat", 72, 52, 80, 60, 0)], (32, 42)),
    "000005": (40, 40, [("train", 1, 1, 40, 40, 0)], (32, 32)),  # centre: hit
}
# centre baseline: dog 1/2, cat 0/2, person 1/1, train 1/1 -> mean 2.5 / 4, hit rate 3 / 6
GROUPS = [[0, 3], [1], [2], [4]]  # the images of each input size, sizes in order of appearance


def write_voc(root: Path) -> Path:
    voc = root / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for name, (w, h, objects, _) in VOC.items():
        solid(voc / "JPEGImages" / f"{name}.jpg", (120, 90, 60), (w, h))
        (voc / "Annotations" / f"{name}.xml").write_text(voc_xml(name, w, h, objects))
    (voc / "ImageSets" / "Main" / "test.txt").write_text("\n".join(VOC) + "\n")
    return root


def voc(root: Path, resize: str) -> VOC2007DataModule:
    return VOC2007DataModule(str(root), MEAN, STD, image_size=32, resize=resize)


def test_torchray_resize_keeps_the_aspect_and_the_boxes(tmp_path: Path) -> None:
    dm = voc(write_voc(tmp_path), "torchray")
    test = dm.dataset("test")
    for i, (w, h, objects, size) in enumerate(VOC.values()):
        sample = test[i]
        assert tuple(sample["image"].shape) == (3, *size)
        assert min(size) == 32 and sample["orig_size"] == (h, w)  # shorter side 32, original
        assert sample["boxes"][0].tolist() == [objects[0][1] - 1, objects[0][2] - 1,
                                               objects[0][3], objects[0][4]]  # fmt: skip
    assert dm.input_sizes("test", range(5)) == [v[3] for v in VOC.values()]
    square = voc(tmp_path, "square")
    assert {tuple(square.dataset("test")[i]["image"].shape) for i in range(5)} == {(3, 32, 32)}
    assert square.input_sizes("test", range(5)) is None
    with pytest.raises(UserInputError) as info:
        voc(tmp_path, "aspect")
    assert "\n" not in str(info.value) and "use square" in str(info.value)
    assert check_resize("torchray") == "torchray"


def test_configs_select_the_resize_with_the_model(make_cfg) -> None:
    for model, resize in (("vgg16_torchray", "torchray"), ("resnet50_torchray", "torchray"),
                          ("resnet8", "square")):  # fmt: skip
        for dataset in ("voc07", "coco2014", "coco2017"):
            cfg = make_cfg(f"model={model}", f"dataset={dataset}")
            assert cfg.dataset.resize == cfg.dataset.datamodule.resize == resize
    cfg = make_cfg("model=vgg16_torchray", "dataset=voc07", "dataset.resize=square")
    assert instantiate(cfg.dataset.datamodule).resize == "square"
    cfg = make_cfg("experiment=pointing_torchray", "model=resnet50_torchray", "dataset=coco2014")
    assert (cfg.model.name, cfg.dataset.name, cfg.dataset.resize) == (
        "resnet50_torchray", "coco2014", "torchray")  # fmt: skip
    assert cfg.benchmark.n_images is None and cfg.benchmark.tolerance == 15
    assert cfg.benchmark.smooth_sigma == 0.02 and cfg.benchmark.class_mean == "all"


def test_batches_hold_one_size_and_mixed_sizes_fail_in_one_line(tmp_path: Path) -> None:
    ctx = SimpleNamespace(datamodule=voc(write_voc(tmp_path), "torchray"), seed=0)
    assert BatchPlan("test", None, 32).chunks(ctx) == GROUPS  # type: ignore[arg-type]
    assert BatchPlan("test", None, 1).n_batches(ctx) == 5  # type: ignore[arg-type]
    ctx.datamodule = voc(tmp_path, "square")  # one size: consecutive runs, as before
    assert BatchPlan("test", None, 2).chunks(ctx) == [[0, 1], [2, 3], [4]]  # type: ignore[arg-type]
    assert size_batches([3, 5, 8, 9, 12], None, 2) == [[3, 5], [8, 9], [12]]
    sizes = [(1, 2), (2, 1), (1, 2), (1, 2), (2, 1)]
    assert size_batches([3, 5, 8, 9, 12], sizes, 2) == [[3, 8], [9], [5, 12]]
    images = [
        {"image": torch.zeros(3, 4, 6), "index": 0},
        {"image": torch.zeros(3, 6, 4), "index": 1},
    ]
    with pytest.raises(UserInputError) as info:
        collate_samples(images)
    assert "\n" not in str(info.value) and "[(4, 6), (6, 4)]" in str(info.value)


def test_points_are_found_at_original_resolution(tmp_path: Path) -> None:
    """A map rising to the bottom-right corner of the 32 x 42 input points at the corner of the
    60 x 80 original, (79, 59): the cat there is hit, the dog at the top left missed (tolerance
    3 px, boxes in original pixels)."""
    dm = voc(write_voc(tmp_path), "torchray")
    sample = collate_samples([dm.dataset("test")[i] for i in GROUPS[0]])
    x = sample["image"]
    assert x.shape == (2, 3, 32, 42)
    ramp = torch.arange(32.0).view(-1, 1) + torch.arange(42.0).view(1, -1)

    def explain(inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ramp.expand(len(inputs), 1, 32, 42)

    game = PointingGame(tolerance=3, center_baseline=False)
    rows = game.evaluate(explain, x, torch.zeros(2, dtype=torch.long), sample, 20)
    got = {(r["index"], r["class"]): (r["u"], r["v"], r["hit"]) for _, r in rows.iterrows()}
    assert got == {(0, 11): (63.0, 47.0, 0.0), (3, 11): (79.0, 59.0, 0.0),
                   (3, 7): (79.0, 59.0, 1.0)}  # fmt: skip


def test_pointing_runs_end_to_end_on_aspect_kept_images(make_cfg, tmp_path: Path) -> None:
    """Tiny ResNet-8, 5 images of 4 input sizes: one batch per size and method (centre,
    gradient, Grad-CAM), the centre's known accuracy, and the same at batch size 1."""
    root = write_voc(tmp_path / "voc")
    overrides = (
        "benchmark=pointing_game", *TINY, "dataset=voc07", "dataset.image_size=32",
        "dataset.resize=torchray", f"dataset.datamodule.root={root}",
        "benchmark.methods=[gradient,gradcam]", "benchmark.n_images=null",
        "benchmark.tolerance=15",
    )  # fmt: skip
    out = run(make_cfg(*overrides), tmp_path / "run")
    assert out["n_pairs"] == 6 and out["chunks_computed"] == len(GROUPS) * 3
    assert out["accuracy/center"] == pytest.approx(2.5 / 4)
    assert out["hit_rate/center"] == pytest.approx(3 / 6)
    for method in ("gradient", "gradcam"):
        assert 0 <= out[f"accuracy/{method}"] <= 1
    one = run(make_cfg(*overrides, "benchmark.batch_size=1"), tmp_path / "one")
    assert one["chunks_computed"] == 5 * 3
    for key in ("accuracy/center", "accuracy/gradient", "accuracy/gradcam"):
        assert one[key] == pytest.approx(out[key])


def test_square_resize_keeps_the_checkpoint_keys(make_cfg) -> None:
    """Checkpoints trained on voc07 / coco before ``dataset.resize`` existed keep their keys
    (no retraining); the torchray resize gets its own."""
    from omegaconf import open_dict

    from xai_bench.workspace import Workspace

    for dataset in ("voc07", "coco2014"):
        cfg = make_cfg("model=vgg16", f"dataset={dataset}")
        key = Workspace(cfg, cfg.paths.output_dir).checkpoint_dir.name
        with open_dict(cfg):  # the config as it was before the option
            del cfg.dataset.resize, cfg.dataset.datamodule.resize
        assert Workspace(cfg, cfg.paths.output_dir).checkpoint_dir.name == key
        cfg = make_cfg("model=vgg16", f"dataset={dataset}", "dataset.resize=torchray")
        assert Workspace(cfg, cfg.paths.output_dir).checkpoint_dir.name != key
