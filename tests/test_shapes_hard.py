"""The hard shapes variant (issue 12): the difficulty options leave the original images and
cache files unchanged, draw occluders over the objects without touching labels, boxes or
masks, and are seeded."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from xai_bench.data.shapes import (
    DIFFICULTY,
    ShapesDataModule,
    difficulty_options,
    generate_shapes,
    load_or_generate,
)
from xai_bench.utils.configs import CONFIG_DIR

_BLOCK = OmegaConf.load(Path(CONFIG_DIR) / "dataset" / "shapes_hard.yaml").datamodule
HARD = {k: v for k, v in OmegaConf.to_container(_BLOCK).items() if k in DIFFICULTY}


def _sha(t: torch.Tensor) -> str:
    return hashlib.sha1(t.contiguous().numpy().tobytes()).hexdigest()[:16]


# Recorded from the generator before the difficulty options existed (GENERATOR_VERSION 1).
OLD = {
    (64, 32, 1, 3): {
        "labels": "c27621d615a21d31", "boxes": "41e8b955facaee8e", "masks": "fce92e1d9318265e",
        "sum": 94498.37505543348, "pixel": [0.2267817109823227, 0.4807278513908386,
                                            0.5449581742286682],
    },
    (32, 64, 2, 1): {
        "labels": "b24e7bfa9c458e6f", "boxes": "3fa792f3b519bd03", "masks": "b3cf90be7ae14152",
        "sum": 197567.3726487346, "pixel": [0.6302316188812256, 0.6158310174942017,
                                            0.4341890215873718],
    },
}  # fmt: skip


@pytest.mark.parametrize("args", list(OLD))
def test_defaults_reproduce_the_original_generator(args) -> None:
    n, size, objects, seed = args
    new = generate_shapes(n, size=size, objects=objects, seed=seed)
    explicit = generate_shapes(n, size=size, objects=objects, seed=seed, **DIFFICULTY)
    assert set(new) == {"images", "labels", "boxes", "masks"}  # no `occluded` key
    assert all(torch.equal(new[k], explicit[k]) for k in new)
    ref = OLD[args]
    for key in ("labels", "boxes", "masks"):
        assert _sha(new[key]) == ref[key], key
    assert new["images"].double().sum().item() == pytest.approx(ref["sum"], abs=1e-3)
    assert new["images"][0, :, 10, 10].tolist() == pytest.approx(ref["pixel"], abs=1e-6)


def test_default_cache_files_keep_their_names(tmp_path) -> None:
    load_or_generate(tmp_path, 30, 32, 1, 0)
    load_or_generate(tmp_path, 20, 64, 2, 4, strokes=3, noise=0.06, occluders=0)  # = defaults
    names = sorted(p.name for p in (tmp_path / "shapes").iterdir())
    assert names == ["shapes-1obj-32px-30-s0-e03f9551da.pt", "shapes-2obj-64px-20-s4-3137e67176.pt"]
    # the datamodule with default options reads the same file (test split seed = 3 * 0 + 2)
    dm = ShapesDataModule(n_train=4, n_val=4, n_test=30, root=str(tmp_path), mean=(0.5,) * 3,
                          std=(0.25,) * 3, image_size=32, batch_size=5, seed=0)  # fmt: skip
    assert dm.difficulty == {}
    dm.dataset("test")
    assert "shapes-1obj-32px-30-s2-" in " ".join(p.name for p in (tmp_path / "shapes").iterdir())
    load_or_generate(tmp_path, 30, 32, 1, 0, **HARD)
    hard = [p.name for p in (tmp_path / "shapes").iterdir() if p.name.startswith("shapes-hard-")]
    assert len(hard) == 1 and hard[0].startswith("shapes-hard-1obj-32px-30-s0-")


def test_hard_config_sets_every_option() -> None:
    assert set(HARD) == set(DIFFICULTY)
    assert difficulty_options(**HARD)["occluders"] >= 1
    with pytest.raises(ValueError, match="unknown"):
        difficulty_options(blur=1)
    with pytest.raises(ValueError, match="out of range"):
        difficulty_options(contrast=1.5)


def test_occluders_cover_objects_but_not_labels_boxes_or_masks() -> None:
    n = 400
    hard = generate_shapes(n, size=32, seed=11, **HARD)
    bare = generate_shapes(n, size=32, seed=11, **{**HARD, "occluders": 0})  # one chunk
    for key in ("labels", "boxes", "masks"):  # occluders are drawn after the objects
        assert torch.equal(hard[key], bare[key]), key
    occ, mask = hard["occluded"], hard["masks"][:, 0]
    assert occ.shape == (n, 32, 32) and occ.dtype == torch.bool
    assert occ.flatten(1).any(1).all(), "every image has occluder pixels"
    covered = (occ & mask).flatten(1).sum(1).float() / mask.flatten(1).sum(1)
    assert (covered > 0).float().mean() > 0.95, "occluders lie over the objects"
    assert 0.1 < covered.mean() < 0.6 and (covered < 0.9).all(), "objects stay partly visible"
    if HARD["noise_after"] == 0:  # pixels outside the occluders are the bare image's
        same = (hard["images"] == bare["images"]).all(1)
        assert same[~occ].all() and same[occ].float().mean() < 0.01
    # masks include the occluded pixels (amodal) and the boxes are tight around them
    for i in range(20):
        ys, xs = torch.nonzero(mask[i], as_tuple=True)
        tight = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert hard["boxes"][i, 0].tolist() == [float(v) for v in tight]
    counts = torch.bincount(hard["labels"][:, 0], minlength=8)
    assert (counts > 25).all()


def test_hard_objects_are_smaller_and_fainter() -> None:
    hard = generate_shapes(300, size=32, seed=4, **HARD)
    easy = generate_shapes(300, size=32, seed=4)
    area_hard = hard["masks"].float().mean().item()
    area_easy = easy["masks"].float().mean().item()
    assert area_hard == pytest.approx(area_easy * HARD["scale"] ** 2, rel=0.15)

    # mean |object - image mean| contrast drops with `contrast` (occluders excluded)
    def object_contrast(d: dict) -> float:
        img, m = d["images"], d["masks"][:, 0]
        vis = m & ~d.get("occluded", torch.zeros_like(m))
        dev = (img - img.mean((2, 3), keepdim=True)).abs().mean(1)
        return dev[vis].mean().item()

    assert object_contrast(hard) < object_contrast(easy)


def test_hard_generation_is_deterministic_per_seed() -> None:
    a = generate_shapes(50, size=32, seed=7, chunk=16, **HARD)
    b = generate_shapes(50, size=32, seed=7, chunk=16, **HARD)
    c = generate_shapes(50, size=32, seed=8, chunk=16, **HARD)
    assert set(a) == {"images", "labels", "boxes", "masks", "occluded"}
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["images"], c["images"])
    assert not torch.equal(a["occluded"], c["occluded"])
