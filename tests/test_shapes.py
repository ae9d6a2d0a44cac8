"""The procedural shapes dataset: seeded, exact boxes and masks, cached, distinct classes."""

from __future__ import annotations

import torch

from xai_bench.data.base import collate_samples
from xai_bench.data.shapes import (
    CLASSES,
    ShapesDataModule,
    _boxes,
    generate_shapes,
    load_or_generate,
)


def test_generation_is_deterministic_by_seed() -> None:
    a = generate_shapes(40, size=32, seed=3)
    b = generate_shapes(40, size=32, seed=3)
    c = generate_shapes(40, size=32, seed=4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["images"], c["images"])


def test_boxes_are_tight_around_masks() -> None:
    d = generate_shapes(64, size=48, objects=2, seed=1)
    masks, boxes = d["masks"], d["boxes"]
    assert masks.shape == (64, 2, 48, 48) and boxes.shape == (64, 2, 4)
    for i in range(8):
        for j in range(2):
            ys, xs = torch.nonzero(masks[i, j], as_tuple=True)
            expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert boxes[i, j].tolist() == [float(v) for v in expected]
    assert not (masks[:, 0] & masks[:, 1]).any(), "the two objects never overlap"
    assert (d["labels"][:, 0] != d["labels"][:, 1]).all(), "classes differ within an image"


def test_boxes_helper_known_answer() -> None:
    m = torch.zeros(1, 10, 12, dtype=torch.bool)
    m[0, 2:5, 3:9] = True
    assert _boxes(m).tolist() == [[3.0, 2.0, 9.0, 5.0]]


def test_every_class_occurs_and_objects_are_visible() -> None:
    d = generate_shapes(400, size=32, seed=0)
    counts = torch.bincount(d["labels"][:, 0], minlength=len(CLASSES))
    assert (counts > 20).all()
    area = d["masks"].flatten(1).sum(1).float()
    assert area.min() > 0.04 * 32 * 32


def test_cache_is_reused(tmp_path) -> None:
    a = load_or_generate(tmp_path, 30, 32, 1, 0)
    files = list((tmp_path / "shapes").glob("*.pt"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    b = load_or_generate(tmp_path, 30, 32, 1, 0)
    assert files[0].stat().st_mtime_ns == mtime
    assert torch.equal(a["images"], b["images"])


def test_datamodule_samples_and_collate(tmp_path) -> None:
    dm = ShapesDataModule(
        n_train=20, n_val=10, n_test=12, objects=2, root=str(tmp_path),
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), image_size=40, batch_size=5,
    )  # fmt: skip
    batch = next(iter(dm.dataloader("test")))
    assert batch["image"].shape == (5, 3, 40, 40)
    assert batch["label"].shape == (5, 8) and (batch["label"].sum(1) == 2).all()
    assert len(batch["boxes"]) == 5 and batch["boxes"][0].shape == (2, 4)
    raw = generate_shapes(12, size=40, objects=2, seed=2)  # test split seed = 3 * seed + 2
    assert torch.allclose(batch["image"][0], (raw["images"][0] - 0.5) / 0.25)
    assert torch.allclose(dm.denormalize(batch["image"][:1])[0], raw["images"][0], atol=1e-6)
    one = collate_samples([dm.dataset("val")[0]])
    assert one["index"].tolist() == [0]
