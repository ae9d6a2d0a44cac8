"""ROAR: removal known answers, the attribution cache, retraining, resumption and reuse."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from xai_bench.data.roar import RemovedDataset
from xai_bench.metrics.perturbation import random_order
from xai_bench.metrics.removal import IMAGENET_MEAN, removal_mask, remove, roar_fill
from xai_bench.results.attributions import AttributionCache
from xai_bench.run import build_benchmark, run
from xai_bench.utils.errors import UserInputError

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
TINY = (
    "benchmark=roar", "model.weights=random", "model.net.widths=[4,8,8]",
    "dataset.datamodule.n_train=96", "dataset.datamodule.n_val=32",
    "dataset.datamodule.n_test=32", "benchmark.recipe.max_epochs=1",
    "benchmark.recipe.batch_size=32", "benchmark.train_limit=null",
    "benchmark.attribution_batch_size=40", "trainer=cpu",
)  # fmt: skip


# ----------------------------------------------------------------------------- removal
def test_removal_mask_takes_exactly_the_top_pixels() -> None:
    sal = torch.arange(16.0).view(1, 4, 4)  # pixel 15 most salient, then 14, ...
    mask = removal_mask(sal, 0.25)  # int(16 * 0.25) = 4 pixels
    assert mask.shape == (1, 1, 4, 4)
    assert mask.flatten().nonzero().flatten().tolist() == [12, 13, 14, 15]
    assert not removal_mask(sal, 0.0).any()
    assert int(removal_mask(sal, 0.3).sum()) == int(16 * 0.3)


def test_per_value_ranking_removes_single_channel_values() -> None:
    sal = torch.zeros(1, 3, 2, 2)
    sal[0, 1, 0, 1] = 5.0
    sal[0, 2, 1, 1] = 4.0
    mask = removal_mask(sal, 2 / 12)
    assert mask.shape == (1, 3, 2, 2)
    assert mask.sum() == 2 and mask[0, 1, 0, 1] and mask[0, 2, 1, 1]


def test_constant_map_removes_a_seeded_random_set() -> None:
    keys = torch.tensor([3, 7])
    mask = removal_mask(torch.ones(2, 4, 4), 0.5, keys=keys, seed=1)
    order = random_order(keys, 16, 1)
    expected = torch.zeros(2, 16, dtype=torch.bool).scatter_(1, order[:, :8], True)
    assert torch.equal(mask.view(2, 16), expected)
    assert not torch.equal(mask[0], mask[1])  # each image its own random pixels


def test_fills_are_the_three_published_variants() -> None:
    x = torch.randn(2, 3, 5, 5)
    assert torch.allclose(roar_fill(x, "image_mean", MEAN, STD)[:, :, 0, 0], x.mean((2, 3)))
    assert torch.equal(roar_fill(x, "dataset_mean", MEAN, STD), torch.zeros_like(x))
    imnet = roar_fill(x, "imagenet_mean", MEAN, STD)[0, :, 2, 2]
    back = imnet * torch.tensor(STD) + torch.tensor(MEAN)  # de-normalised: the ImageNet mean
    assert torch.allclose(back, torch.tensor(IMAGENET_MEAN), atol=1e-6)
    with pytest.raises(ValueError, match="fill"):
        roar_fill(x, "black", MEAN, STD)


def test_remove_replaces_top_pixels_in_every_channel_and_nothing_else() -> None:
    x = torch.randn(1, 3, 4, 4)
    sal = torch.zeros(1, 4, 4)
    sal[0, 0, 0], sal[0, 3, 3] = 2.0, 1.0
    out = remove(x, sal, 2 / 16, "dataset_mean", MEAN, STD)
    assert torch.equal(out[:, :, 0, 0], torch.zeros(1, 3)) and torch.equal(
        out[:, :, 3, 3], torch.zeros(1, 3)
    )
    keep = torch.ones(4, 4, dtype=torch.bool)
    keep[0, 0] = keep[3, 3] = False
    assert torch.equal(out[:, :, keep], x[:, :, keep])


def test_removed_dataset_applies_removal_then_augmentation() -> None:
    base = [{"image": torch.full((3, 4, 4), 2.0), "label": torch.tensor(1), "index": i}
            for i in range(3)]  # fmt: skip
    sal = np.zeros((3, 4, 4), dtype=np.float32)
    sal[:, 1, 2] = 1.0
    ds = RemovedDataset(base, sal, 1 / 16, "dataset_mean", MEAN, STD)
    img = ds[1]["image"]
    assert img[:, 1, 2].eq(0).all() and (img.sum() == 2.0 * 45)
    flipped = RemovedDataset(base, sal, 1 / 16, "dataset_mean", MEAN, STD,
                             augment=lambda t: t.flip(-1))[1]["image"]  # fmt: skip
    assert flipped[:, 1, 1].eq(0).all()  # the hole moved with the flip: removal came first
    with pytest.raises(ValueError, match="maps for"):
        RemovedDataset(base, sal[:2], 0.1, "dataset_mean", MEAN, STD)


# ----------------------------------------------------------------------------- cache
def test_attribution_cache_joins_shards_resumes_and_reuses(tmp_path: Path) -> None:
    calls: list[list[int]] = []

    def compute(idx: list[int]) -> torch.Tensor:
        calls.append(idx)
        return torch.tensor(idx, dtype=torch.float32).view(-1, 1, 1).expand(-1, 2, 2) * 1.5

    cache = AttributionCache(tmp_path, {"method": "m", "split": "train"})
    cache.write_shard(0, compute([0, 1, 2, 3]))
    stray = cache.dir / ".saliency.npy.999999999@nohost.x.tmp"  # a killed writer's
    stray.write_bytes(b"half")
    old = 0.0
    os.utime(stray, (old, old))  # another host's, a day old
    cache.write_shard(1, compute([4, 5, 6, 7]))
    cut = cache.shard(1).read_bytes()
    cache.shard(1).write_bytes(cut[: len(cut) // 2])  # a shard cut short: computed again
    calls.clear()  # shard 0 "finished before an interruption"
    maps = cache.build(10, 4, compute)
    assert calls == [[4, 5, 6, 7], [8, 9]]  # only the missing and the corrupt shards
    assert maps.shape == (10, 2, 2) and np.allclose(maps[:, 0, 0], np.arange(10) * 1.5)
    assert not (cache.dir / "shards").exists() and not stray.exists()
    again = AttributionCache(tmp_path, {"method": "m", "split": "train"}).build(10, 4, compute)
    assert calls == [[4, 5, 6, 7], [8, 9]] and np.array_equal(again, maps)  # reused
    other = AttributionCache(tmp_path, {"method": "m2", "split": "train"})
    assert other.dir != cache.dir and not other.done
    assert json.loads((cache.dir / "key.json").read_text())["method"] == "m"

    # a changed array is detected by its digest and computed again; force=True recomputes all
    edited = np.load(cache.path)
    edited[3] = 12345.0
    np.save(cache.path, edited)
    calls.clear()
    fixed = AttributionCache(tmp_path, {"method": "m", "split": "train"}).build(10, 4, compute)
    expected = np.arange(10, dtype=np.float32)[:, None, None].repeat(2, 1).repeat(2, 2) * 1.5
    assert len(calls) == 3 and np.array_equal(fixed, expected)
    calls.clear()
    forced = AttributionCache(tmp_path, {"method": "m", "split": "train"}, force=True)
    assert not forced.done and np.array_equal(forced.build(10, 4, compute), expected)
    assert len(calls) == 3


# ----------------------------------------------------------------------------- benchmark
def _attribution_arrays(root: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in root.rglob("saliency.npy")}


def test_roar_end_to_end_resumes_and_reuses_caches(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(*TINY, "benchmark.methods=[random,gradient]", "benchmark.fractions=[0.2,0.6]")
    out = run(cfg, tmp_path / "run")
    table = pd.read_csv(tmp_path / "run" / "results.csv")
    acc = table[table.metric == "test_acc"]
    assert len(acc) == 4 and set(acc.method) == {"random", "gradient"}
    assert set(acc.fraction) == {0.2, 0.6} and acc.value.between(0, 1).all()
    assert out["retrained"] == 4 and out["reused"] == 0
    assert set(out["roar_auc"]) == {"random", "gradient"}
    assert (tmp_path / "run" / "roar.png").stat().st_size > 5_000
    caches = _attribution_arrays(tmp_path / "outputs" / "cache" / "attributions")
    assert len(caches) == 6  # 2 methods x train/val/test

    # killed after the retrains, before the summary: rerun retrains nothing, same numbers
    (tmp_path / "run" / "summary.json").unlink()
    again = run(cfg, tmp_path / "run")
    assert again["retrained"] == 0 and again["reused"] == 4
    assert again["curves"] == out["curves"]

    # another run (new fractions, a new method): cached maps of the old methods are reused
    more = make_cfg(*TINY, "benchmark.methods=[random,gradient,input_x_gradient]",
                    "benchmark.fractions=[0.4]")  # fmt: skip
    run(more, tmp_path / "run2")
    after = _attribution_arrays(tmp_path / "outputs" / "cache" / "attributions")
    assert len(after) == 9 and all(after[k] == v for k, v in caches.items())


def test_train_limit_explains_only_the_images_the_retrains_see(make_cfg, tmp_path: Path) -> None:
    """With ``train_limit`` the train maps cover the union of the retrain seeds' subsets (not
    the whole split), and each is the map the whole-split cache holds for that image."""
    from xai_bench.data.roar import subset_rows

    def train_cache(root: Path) -> np.ndarray:
        for path in root.rglob("saliency.npy"):
            if json.loads((path.parent / "key.json").read_text())["split"] == "train":
                return np.load(path)
        raise AssertionError("no train maps")

    common = (*TINY, "benchmark.methods=[gradient]", "benchmark.fractions=[0.5]")
    limited = make_cfg(*common, "benchmark.train_limit=40", "benchmark.seeds=[0,1]",
                       "paths.output_dir=" + str(tmp_path / "a"))  # fmt: skip
    out = run(limited, tmp_path / "a" / "run")
    rows = sorted(set(subset_rows(96, 40, 0)) | set(subset_rows(96, 40, 1)))
    assert 40 < len(rows) < 96 and out["retrained"] == 2
    sparse = train_cache(tmp_path / "a" / "cache")
    assert sparse.shape[0] == len(rows)
    run(make_cfg(*common, "paths.output_dir=" + str(tmp_path / "b")), tmp_path / "b" / "run")
    full = train_cache(tmp_path / "b" / "cache")
    assert full.shape[0] == 96
    np.testing.assert_allclose(sparse, full[rows], rtol=1e-5, atol=1e-7)


def test_method_variants_get_their_own_maps_and_retrains(make_cfg, tmp_path: Path) -> None:
    """Two variants of one method (two labels, other params) have their own maps, retrains and
    rows; a relabelled copy of one shares its maps (same config) but not its retrains; the
    fraction-0 retrain on clean data is one for all."""
    methods = "[{name:random,label:r1},{name:random,label:r2,seed:1},{name:random,label:r3}]"
    cfg = make_cfg(*TINY, f"benchmark.methods={methods}", "benchmark.fractions=[0.0,0.5]")
    out = run(cfg, tmp_path / "run")
    table = pd.read_csv(tmp_path / "run" / "results.csv")
    acc = table[table.metric == "test_acc"]
    assert list(dict.fromkeys(acc.method)) == ["r1", "r2", "r3"] and len(acc) == 6
    assert set(acc.method_config) == {"random"}
    hashes = acc.groupby("method").method_hash.first()
    assert hashes["r1"] == hashes["r3"] != hashes["r2"]
    auc = table[table.metric == "roar_auc"]
    assert auc.method.tolist() == ["r1", "r2", "r3"] and set(out["roar_auc"]) == {"r1", "r2", "r3"}

    caches = sorted((tmp_path / "outputs" / "cache" / "attributions").rglob("saliency.npy"))
    assert len(caches) == 6  # r1 (= r3) and r2, x train/val/test
    keys = [json.loads((p.parent / "key.json").read_text()) for p in caches]
    assert {k["method_hash"] for k in keys} == {hashes["r1"], hashes["r2"]}
    assert out["retrained"] == 4 and out["reused"] == 2  # clean once + 3 variants at 0.5
    units = sorted(p.name for p in (tmp_path / "run").rglob("retrain/*") if p.is_dir())
    assert len(units) == 4 and units[0] == "clean_seed=0"
    assert [u.split("-")[0] for u in units[1:]] == ["r1", "r2", "r3"]

    half = acc[acc.fraction == 0.5].set_index("method").value
    assert half["r1"] == half["r3"], "same maps and seed: the same retrain, number for number"
    clean = acc[acc.fraction == 0.0].value
    assert clean.nunique() == 1, "one shared clean retrain"


def test_roar_finetune_without_epochs_keeps_the_model_accuracy(make_cfg, tmp_path) -> None:
    """Known answer: fraction 0 + fine-tuning for 0 epochs is the evaluated model itself."""
    cfg = make_cfg(*TINY, "benchmark.methods=[random]", "benchmark.fractions=[0.0]",
                   "benchmark.init=finetune", "benchmark.recipe.max_epochs=0")  # fmt: skip
    out = run(cfg, tmp_path / "run")
    assert out["curves"]["random"]["0"] == pytest.approx(out["base_test_acc"])
    assert not list((tmp_path / "outputs" / "cache").rglob("saliency.npy"))  # no maps needed


def test_roar_rejects_bad_settings(make_cfg, tmp_path) -> None:
    with pytest.raises(ValueError, match="fractions"):
        run(make_cfg(*TINY, "benchmark.fractions=[1.5]"), tmp_path / "a")
    with pytest.raises(ValueError, match="fill"):
        run(make_cfg(*TINY, "benchmark.fill=black"), tmp_path / "b")
    with pytest.raises(UserInputError, match=r"benchmark\.recipe: unknown key.*valid keys"):
        run(make_cfg(*TINY, "+benchmark.recipe.epochs=3"), tmp_path / "c")
    with pytest.raises(UserInputError, match="optimizer must be one of"):
        run(make_cfg(*TINY, "benchmark.recipe.optimizer=rmsprop"), tmp_path / "d")


def test_recipe_block_fingerprints_every_recipe_field(make_cfg) -> None:
    """Every recipe field (and init, train_limit) is in the retrains' fingerprint."""
    bench = build_benchmark(make_cfg("benchmark=roar").benchmark)
    assert bench.fingerprint_recipe() == {
        "optimizer": "adam", "lr": 3e-3, "weight_decay": 1e-4, "batch_size": 32,
        "max_epochs": 5, "step_size": 3, "gamma": 0.5, "label_smoothing": 0.0,
        "augment": False, "milestones": [], "warmup_epochs": 0.0, "momentum": 0.9,
        "nesterov": True, "val_every": 0, "train_limit": None, "init": "scratch",
    }  # fmt: skip


def test_one_channel_map_in_value_mode_ranks_whole_pixels() -> None:
    x = torch.randn(2, 3, 4, 4)
    sal = torch.rand(2, 4, 4)
    keys = torch.tensor([0, 1])
    per_pixel = remove(x, sal, 0.25, "image_mean", MEAN, STD, keys=keys)
    one_channel = remove(x, sal[:, None], 0.25, "image_mean", MEAN, STD, keys=keys)
    assert torch.equal(per_pixel, one_channel)
    changed = (per_pixel != x).any(1)  # a removed pixel loses all its channels
    assert changed.sum() == 2 * 4 and ((per_pixel != x).sum(1)[changed] == 3).all()


def test_cache_shared_with_a_job_that_finished_it_meanwhile(tmp_path, monkeypatch) -> None:
    """Two sweep jobs share one cache: when the other job joins the maps and removes the shards
    while this one is writing a shard, this job returns the finished maps (no error)."""
    import shutil

    from xai_bench.results import attributions
    from xai_bench.utils.digest import file_digest

    cache = AttributionCache(tmp_path, {"k": 1})
    final = np.arange(12, dtype=np.float32).reshape(6, 2)
    real_write = attributions.write_checked

    def write(path, payload):
        if path.name == "000001.pt":  # the other job finishes the cache during this write
            np.save(cache.path, final)
            (cache.dir / attributions.DIGEST_FILE).write_text(file_digest(cache.path))
            shutil.rmtree(cache.dir / "shards")
        return real_write(path, payload)

    monkeypatch.setattr(attributions, "write_checked", write)
    out = cache.build(6, 2, lambda idx: torch.from_numpy(final[idx]))
    assert np.array_equal(out, final) and not (cache.dir / "shards").exists()
