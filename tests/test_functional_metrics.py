"""The config-free scoring API (xai_bench/metrics/functional.py): known answers on hand-made
tensors, and the benchmarks' own numbers on a tiny random-weight ResNet-8, recomputed from the
same maps and inputs."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from tests.conftest import GRADIENT, tiny_context
from tests.test_bench_perturbation import HI, LO, MEAN, SIZE, STD, SquareModel, square_images
from xai_bench.benchmarks.class_sensitivity import ClassSensitivity
from xai_bench.benchmarks.deletion_insertion import DeletionInsertion
from xai_bench.benchmarks.pixel_perturbation import PixelPerturbation
from xai_bench.benchmarks.pointing_game import PointingGame
from xai_bench.benchmarks.sanity_checks import SanityChecks
from xai_bench.engine.batches import EvalBatch
from xai_bench.engine.context import RunContext
from xai_bench.methods.gradient import Gradient
from xai_bench.methods.input_x_gradient import InputXGradient
from xai_bench.methods.spec import MethodSet, MethodSpec
from xai_bench.metrics.functional import (
    class_sensitivity,
    deletion_insertion,
    input_invariance,
    pixel_perturbation,
    pointing_game,
    sanity_similarity,
)
from xai_bench.metrics.invariance import compare_explainers
from xai_bench.metrics.perturbation import trapezoid_auc
from xai_bench.metrics.pointing import boxes_to_masks, build_pairs
from xai_bench.metrics.similarity import SANITY_METRICS
from xai_bench.models.randomize import randomized_copy
from xai_bench.models.shift import constant_shift, shifted_twin
from xai_bench.models.small import MLP

F64 = torch.float64
DOC = Path(__file__).resolve().parent.parent / "docs" / "scoring_your_maps.md"


def spike(n: int, points: list[tuple[int, int]], size: int = 32) -> Tensor:
    """Maps ``[n, 1, size, size]`` of small noise with their maximum at ``points[i] = (u, v)``."""
    g = torch.Generator().manual_seed(0)
    m = 0.1 * torch.rand(n, 1, size, size, generator=g)
    for i, (u, v) in enumerate(points):
        m[i, 0, v, u] = 1.0
    return m


def gradient_spec() -> MethodSpec:
    return MethodSpec.create("gradient", GRADIENT)


def shapes_multi_context(tmp_path: Path, specs: list[MethodSpec]) -> RunContext:
    """:func:`tests.conftest.tiny_context` on two-object shapes (boxes of two classes per
    image, as the pointing game needs)."""
    from xai_bench.data.shapes import ShapesDataModule
    from xai_bench.models.meta import ModelMeta
    from xai_bench.models.small import ResNet8

    mean, std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    torch.manual_seed(0)
    net = ResNet8(num_classes=8, widths=(4, 8, 8)).eval()
    dm = ShapesDataModule(
        n_train=8,
        n_val=8,
        n_test=8,
        objects=2,
        root=str(tmp_path),
        mean=mean,
        std=std,
        image_size=32,
    )
    meta = ModelMeta.create(
        name="resnet8",
        num_classes=8,
        input_size=[3, 32, 32],
        mean=mean,
        std=std,
        cam_layer="layer3",
        multilabel=True,
    )
    return RunContext.create(net, meta, dm, MethodSet(specs), tmp_path)


def per_image(table: pd.DataFrame, metric: str, index: list[int], key: str = "index") -> np.ndarray:
    """The benchmark's value of ``metric`` for each image of ``index``, in that order."""
    return table[table.metric == metric].set_index(key).value.loc[index].to_numpy()


# =========================================================================== pointing game
def test_pointing_hit_inside_and_miss_outside_the_box() -> None:
    maps = spike(3, [(6, 6), (20, 5), (9, 11)])
    boxes = torch.tensor([[4.0, 4.0, 10.0, 10.0]] * 3)  # columns and rows 4..9
    got = pointing_game(maps, boxes, tolerance=3)
    assert got.hits.tolist() == [1.0, 0.0, 1.0]  # inside; 11 px right; 2 rows below (< 3)
    assert got.points.tolist() == [[6.0, 6.0], [20.0, 5.0], [9.0, 11.0]]
    assert got.image.tolist() == [0, 1, 2] and got.cls.tolist() == [0, 0, 0]
    assert got.accuracy == pytest.approx(2 / 3) and got.hit_rate == pytest.approx(2 / 3)
    one = pointing_game(maps[:1, 0], [boxes[0]], tolerance=3)  # [B, H, W] maps, batch of 1
    assert one.hits.tolist() == [1.0] and one.tolerance == 3.0


def test_pointing_tolerance_is_strict_euclidean_and_scales_with_the_map() -> None:
    maps = spike(1, [(10, 10)])
    box = torch.tensor([[13.0, 14.0, 14.0, 15.0]])  # one pixel at distance 5 (3-4-5)
    for tol, hit in ((5.0 - 1e-4, 0.0), (5.0, 0.0), (5.0 + 1e-4, 1.0)):
        assert pointing_game(maps, box, tolerance=tol).hits.tolist() == [hit]
    assert pointing_game(maps, box).tolerance == pytest.approx(15 * 32 / 224)  # auto
    big = torch.zeros(1, 1, 224, 224)
    big[0, 0, 100, 100] = 1.0
    far = torch.tensor([[114.0, 100.0, 120.0, 101.0]])  # 14 px to the right: within 15
    got = pointing_game(big, far)
    assert got.tolerance == 15.0 and got.hits.tolist() == [1.0]


def test_pointing_classes_targets_restricted_and_degenerate_maps() -> None:
    boxes = [torch.tensor([[0.0, 0.0, 8.0, 8.0], [20.0, 20.0, 30.0, 30.0]])] * 3
    labels = [torch.tensor([2, 5])] * 3
    maps = spike(3, [(25, 25), (25, 25), (3, 3)])
    maps[2] = 0.5  # constant: degenerate, points at (0, 0)
    got = pointing_game(maps, boxes, torch.tensor([5, 2, 5]), labels, tolerance=1)
    assert got.cls.tolist() == [5, 2, 5] and got.hits.tolist() == [1.0, 0.0, 0.0]
    assert got.degenerate.tolist() == [False, False, True] and got.points[2].tolist() == [0, 0]
    # per class: class 2 0/1, class 5 1/2 -> mean 0.25; over pairs 1/3
    assert got.accuracy == pytest.approx(0.25) and got.hit_rate == pytest.approx(1 / 3)
    assert pointing_game(
        maps, boxes, torch.tensor([5, 2, 5]), labels, tolerance=1, num_classes=10, class_mean="all"
    ).accuracy == pytest.approx(0.05)
    # a target without a box forms no pair
    absent = pointing_game(maps, boxes, torch.tensor([7, 2, 5]), labels, tolerance=1)
    assert absent.image.tolist() == [1, 2]
    # restricted: each map against every class present
    res = pointing_game(maps, boxes, box_labels=labels, restricted=True, tolerance=1)
    assert res.image.tolist() == [0, 0, 1, 1, 2, 2] and res.cls.tolist() == [2, 5] * 3
    assert res.hits.tolist() == [0.0, 1.0, 0.0, 1.0, 1.0, 0.0]  # the constant map hits (0, 0)
    with pytest.raises(ValueError, match="no targets"):
        pointing_game(maps, boxes, torch.tensor([5, 2, 5]), labels, restricted=True)
    with pytest.raises(ValueError, match="targets"):
        pointing_game(maps, boxes, box_labels=labels)


def test_pointing_nonfinite_maps_sizes_masks_and_difficult() -> None:
    maps = spike(2, [(5, 5), (5, 5)])
    maps[1, 0, 0, 0] = math.nan
    got = pointing_game(maps, torch.tensor([[9.0, 9.0, 12.0, 12.0]] * 2), tolerance=1)
    assert got.hits[0] == 0.0 and math.isnan(got.hits[1]) and got.points[1].isnan().all()
    assert math.isnan(got.hit_rate) and math.isnan(got.accuracy)
    # originals of 64 x 64: the point doubles (a tie of 2x2 pixels -> the first)
    clean = torch.zeros(1, 1, 32, 32)
    clean[0, 0, 5, 5] = 1.0
    box = torch.tensor([[10.0, 10.0, 11.0, 11.0]])
    up = pointing_game(clean, box, sizes=[(64, 64)], tolerance=1)
    assert up.points.tolist() == [[10.0, 10.0]] and up.hits.tolist() == [1.0]
    # an L-shaped mask inside its box: the box hits, the mask misses
    lshape = torch.zeros(1, 32, 32, dtype=torch.bool)
    lshape[0, 0:12, 0:3] = lshape[0, 9:12, 0:12] = True
    corner = spike(1, [(10, 2)])
    lbox = torch.tensor([[0.0, 0.0, 12.0, 12.0]])
    assert pointing_game(corner, lbox, tolerance=2).hits.tolist() == [1.0]
    assert pointing_game(corner, lbox, tolerance=2, masks=[lshape]).hits.tolist() == [0.0]
    # difficult boxes count, unless excluded; a class of difficult boxes only has no pair
    two = [torch.tensor([[0.0, 0.0, 4.0, 4.0], [20.0, 20.0, 24.0, 24.0]])]
    flags = [torch.tensor([True, False])]
    near = spike(1, [(2, 2)])
    kw = {"tolerance": 1, "difficult": flags}
    assert pointing_game(near, two, **kw).hits.tolist() == [1.0]
    assert pointing_game(near, two, exclude_difficult=True, **kw).hits.tolist() == [0.0]
    only = pointing_game(near, [two[0][:1]], tolerance=1, difficult=[flags[0][:1]])
    assert len(only.hits) == 0 and math.isnan(only.accuracy)


def test_pointing_game_equals_the_benchmarks_pairs() -> None:
    """``PointingGame.evaluate`` (difficult boxes, original sizes, smoothing, masks) against
    the functional API on the maps the benchmark computed."""
    g = torch.Generator().manual_seed(4)
    k = 4
    x = torch.rand(3, k, 32, 32, generator=g)
    objs = [
        [(0, 2, 3, 14, 12, 0), (1, 15, 18, 30, 31, 1), (1, 0, 20, 6, 30, 0)],
        [(2, 5, 5, 25, 11, 0), (3, 8, 8, 9, 9, 1)],
        [(0, 0, 0, 32, 16, 0), (3, 18, 2, 31, 29, 0)],
    ]
    sizes = [(48, 64), (32, 32), (100, 75)]
    sample = {
        "index": torch.arange(3),
        "boxes": [torch.tensor([o[1:5] for o in im], dtype=torch.float32) for im in objs],
        "box_labels": [torch.tensor([o[0] for o in im]) for im in objs],
        "difficult": [torch.tensor([bool(o[5]) for o in im]) for im in objs],
        "orig_size": sizes,
    }
    scale = [torch.tensor([w / 32, h / 32, w / 32, h / 32]) for h, w in sizes]
    sample["boxes"] = [b * s for b, s in zip(sample["boxes"], scale)]
    sample["masks"] = [boxes_to_masks(b, s) for b, s in zip(sample["boxes"], sizes)]
    seen: list[tuple[Tensor, Tensor]] = []

    def explain(xx: Tensor, t: Tensor) -> Tensor:
        out = xx[torch.arange(len(xx)), t].unsqueeze(1) * torch.linspace(0.5, 1.5, 32)
        seen.append((out, t))
        return out

    for gt in ("boxes", "masks"):
        for smooth in (False, True):
            seen.clear()
            bench = PointingGame(tolerance=6, gt=gt, smooth_sigma=0.05, batch_size=2)
            rows = bench.evaluate(explain, x, torch.zeros(3, dtype=torch.long), sample, k, smooth)
            pairs = build_pairs(sample, k)
            image = pairs.image.tolist()
            got = pointing_game(
                torch.cat([m for m, _ in seen]),
                [sample["boxes"][i] for i in image],
                torch.cat([t for _, t in seen]),
                [sample["box_labels"][i] for i in image],
                tolerance=6,
                sizes=[sizes[i] for i in image],
                difficult=[sample["difficult"][i] for i in image],
                masks=[sample["masks"][i] for i in image] if gt == "masks" else None,
                smooth_sigma=0.05 if smooth else None,
            )
            assert got.hits.tolist() == rows["hit"].tolist()
            assert got.points.tolist() == rows[["u", "v"]].values.tolist()
            assert got.cls.tolist() == rows["class"].tolist()


@pytest.mark.parametrize("restricted", [False, True])
def test_pointing_game_agrees_with_a_benchmark_run(tmp_path: Path, restricted: bool) -> None:
    spec = gradient_spec()
    ctx = shapes_multi_context(tmp_path, [spec])
    bench = PointingGame(n_images=8, batch_size=4, restricted=restricted, center_baseline=False)
    table = bench.run(ctx).table
    rows = table[table["class"] == "all"].set_index("metric").value
    explainer = ctx.explainer(spec)
    maps, targets, boxes, labels, sizes = [], [], [], [], []
    for number in range(bench.plan.n_batches(ctx)):
        batch = bench.plan.batch(ctx, number)
        s = batch.sample
        if restricted:  # one map per image, for the top-scoring class
            maps.append(explainer(batch.x, batch.target))
            images = list(range(len(batch.x)))
        else:  # one map per (image, class present), explained 4 at a time as the benchmark
            pairs = build_pairs(s, 8)
            image, cls = pairs.image, pairs.cls
            maps += [
                explainer(batch.x[image[i : i + 4]], cls[i : i + 4]) for i in range(0, len(cls), 4)
            ]
            targets.append(cls)
            images = image.tolist()
        boxes += [s["boxes"][i] for i in images]
        labels += [s["box_labels"][i] for i in images]
        sizes += [s["orig_size"][i] for i in images]
    kw = {"restricted": True} if restricted else {"targets": torch.cat(targets)}
    got = pointing_game(torch.cat(maps), boxes, box_labels=labels, sizes=sizes, **kw)
    assert got.accuracy == rows["accuracy"] and got.hit_rate == rows["hit_rate"]
    assert len(got.hits) == 16  # two classes per image
    per_class = table[table.metric == "class_accuracy"]
    names = ctx.datamodule.class_names
    for c in got.cls.unique().tolist():
        hits = got.hits[got.cls == c]
        assert float(hits.mean()) == pytest.approx(
            per_class[per_class["class"] == names[c]].value.item(), abs=1e-12
        )


# =========================================================================== deletion/insertion
def test_deletion_insertion_oracle_known_answer_and_ordering() -> None:
    model, x = SquareModel(), square_images(3)
    t = torch.zeros(3, dtype=torch.long)
    oracle = torch.zeros(3, 1, SIZE, SIZE)
    oracle[..., LO:HI, LO:HI] = 1.0
    g = torch.Generator().manual_seed(1)
    anti = 1.0 - oracle + 0.01 * torch.rand(3, 1, SIZE, SIZE, generator=g)
    good = deletion_insertion(model, x, t, oracle, mean=MEAN, std=STD)
    bad = deletion_insertion(model, x, t, anti, mean=MEAN, std=STD)
    # the default step: 448 px at 224 px, scaled to 8 x 8 -> 1 px, 65 points
    assert good.n_pixels.tolist() == list(range(65)) and good.deletion.shape == (3, 65)
    k = torch.arange(65, dtype=F64)  # oracle deletion: s = (9 - k) / 9 until the square is gone
    curve = torch.sigmoid(4 * (9 - k.clamp(max=9)) / 9)
    torch.testing.assert_close(good.deletion, curve.expand(3, 65), atol=1e-9, rtol=0)
    assert good.deletion_auc.tolist() == pytest.approx([trapezoid_auc(curve).item()] * 3)
    assert (good.deletion_auc < bad.deletion_auc - 0.1).all()
    assert (good.insertion_auc > bad.insertion_auc).all()  # the blurred start is near 1 already
    assert (good.overall > bad.overall + 0.1).all()
    torch.testing.assert_close(good.overall, good.insertion_auc - good.deletion_auc)
    # a map with a NaN: every value of that image NaN
    oracle[1, 0, 0, 0] = math.nan
    nan = deletion_insertion(model, x, t, oracle[:, 0], mean=MEAN, std=STD, step=8)
    assert nan.nonfinite.tolist() == [False, True, False] and nan.deletion.shape == (3, 9)
    assert nan.deletion[1].isnan().all() and math.isnan(nan.overall[1])
    assert not nan.deletion[[0, 2]].isnan().any()


def fake_ctx(model: nn.Module, seed: int = 3):
    from types import SimpleNamespace

    meta = SimpleNamespace(mean=MEAN, std=STD, multilabel=False)
    return SimpleNamespace(model=model, meta=meta, seed=seed)


def square_batch(model: nn.Module, x: Tensor, index: list[int]) -> EvalBatch:
    with torch.no_grad():
        logits = model(x)
    return EvalBatch(0, x, logits.argmax(1), logits, {"index": torch.tensor(index)})


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "step_reference_size": None,
            "step_pixels": 5,
            "tie_break": "index",
            "blur": "rise",
            "deletion_fill": "zero",
            "score": "logit",
            "internal_batch_size": 7,
        },
    ],
)
def test_deletion_insertion_equals_the_benchmark_on_one_batch(options: dict) -> None:
    model, x = SquareModel(), square_images(4)
    batch = square_batch(model, x, [9, 2, 7, 4])
    maps = torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    maps[0] = 1.0  # a constant map: the seeded random order of its key
    bench = DeletionInsertion(**options)
    rows = bench.score(fake_ctx(model), lambda xx, t: maps, batch)  # type: ignore[arg-type]
    kw = {
        "step": bench.step(SIZE * SIZE),
        "deletion_fill": bench.deletion_fill,
        "blur": bench.blur_preset,
        "score": bench.output,
        "tie_break": bench.tie_break,
        "internal_batch_size": bench.internal_batch_size,
    }
    got = deletion_insertion(
        model, x, batch.target, maps, mean=MEAN, std=STD, keys=batch.sample["index"], seed=3, **kw
    )
    for curve in ("deletion", "insertion"):
        part = rows[(rows.metric == "score") & (rows.curve == curve)]
        np.testing.assert_array_equal(getattr(got, curve).double().numpy().ravel(), part.value)
        auc = rows[rows.metric == f"{curve}_auc"].value
        np.testing.assert_array_equal(getattr(got, f"{curve}_auc").double().numpy(), auc)
    np.testing.assert_array_equal(
        got.overall.double().numpy(), rows[rows.metric == "overall"].value
    )
    assert part.n_pixels.tolist()[: len(got.n_pixels)] == got.n_pixels.tolist()


def test_deletion_insertion_agrees_with_a_benchmark_run(tmp_path: Path) -> None:
    spec = gradient_spec()
    ctx = tiny_context(tmp_path, [spec])
    bench = DeletionInsertion(n_images=6, batch_size=4)
    table = bench.run(ctx).table
    explainer = ctx.explainer(spec)
    for number in range(bench.plan.n_batches(ctx)):
        batch = bench.plan.batch(ctx, number)
        maps = explainer(batch.x, batch.target)
        got = deletion_insertion(
            ctx.model,
            batch.x,
            batch.target,
            maps,
            mean=ctx.meta.mean,
            std=ctx.meta.std,
            keys=batch.sample["index"],
            seed=ctx.seed,
        )
        index = batch.sample["index"].tolist()
        assert got.n_pixels[1] == 9 and len(got.n_pixels) == 115  # 448 px at 224 -> 9 at 32
        for metric in ("deletion_auc", "insertion_auc", "overall"):
            want = per_image(table, metric, index)
            np.testing.assert_array_equal(getattr(got, metric).double().numpy(), want)


# =========================================================================== pixel perturbation
def test_pixel_perturbation_oracle_removes_nothing_that_matters() -> None:
    model, x = SquareModel(), square_images(3)
    t = torch.zeros(3, dtype=torch.long)
    oracle = torch.zeros(3, 1, SIZE, SIZE)
    oracle[..., LO:HI, LO:HI] = 1.0
    good = pixel_perturbation(model, x, t, oracle + 0.01 * torch.rand(3, 1, SIZE, SIZE))
    bad = pixel_perturbation(model, x, t, 1.0 - oracle)
    # k = max(1, int(64 p)) = 1, 1, 1, 3, 6 background pixels: the output never moves
    assert good.n_pixels.tolist() == [1, 1, 1, 3, 6] and good.change.shape == (3, 5)
    assert good.change.abs().max() < 1e-12 and good.auc.abs().max() < 1e-12
    assert (bad.change > 0.01).all() and (bad.auc > 0.05).all()
    assert good.fractions == [0.001, 0.01, 0.03, 0.05, 0.1]
    # one fraction: its change is the AUC; fractions are sorted
    one = pixel_perturbation(model, x, t, 1.0 - oracle, fractions=[0.1])
    torch.testing.assert_close(one.auc, one.change[:, 0])
    two = pixel_perturbation(model, x, t, 1.0 - oracle, fractions=[0.1, 0.05])
    assert two.fractions == [0.05, 0.1]
    torch.testing.assert_close(two.change, bad.change[:, 3:])


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "order": "most_first",
            "fill": "blur",
            "output": "softmax",
            "tie_break": "index",
            "fractions": [0.5, 0.02],
            "internal_batch_size": 3,
        },
    ],
)
def test_pixel_perturbation_equals_the_benchmark_on_one_batch(options: dict) -> None:
    model, x = SquareModel(), square_images(4)
    batch = square_batch(model, x, [9, 2, 7, 4])
    maps = torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(6))
    maps[2] = 0.0
    bench = PixelPerturbation(**options)
    rows = bench.score(fake_ctx(model), lambda xx, t: maps, batch)  # type: ignore[arg-type]
    kw = {
        key: getattr(bench, key)
        for key in ("fractions", "order", "fill", "output", "tie_break", "internal_batch_size")
    }
    got = pixel_perturbation(
        model, x, batch.target, maps, mean=MEAN, std=STD, keys=batch.sample["index"], seed=3, **kw
    )
    change = rows[rows.metric == "output_change"].value
    np.testing.assert_array_equal(got.change.double().numpy().ravel(), change)
    np.testing.assert_array_equal(got.auc.double().numpy(), rows[rows.metric == "auc"].value)


def test_pixel_perturbation_agrees_with_a_benchmark_run(tmp_path: Path) -> None:
    spec = gradient_spec()
    ctx = tiny_context(tmp_path, [spec])
    bench = PixelPerturbation(n_images=6, batch_size=4)
    table = bench.run(ctx).table
    explainer = ctx.explainer(spec)
    for number in range(bench.plan.n_batches(ctx)):
        batch = bench.plan.batch(ctx, number)
        maps = explainer(batch.x, batch.target)
        got = pixel_perturbation(
            ctx.model,
            batch.x,
            batch.target,
            maps,
            mean=ctx.meta.mean,
            std=ctx.meta.std,
            keys=batch.sample["index"],
            seed=ctx.seed,
        )
        index = batch.sample["index"].tolist()
        np.testing.assert_array_equal(got.auc.double().numpy(), per_image(table, "auc", index))
        changes = table[table.metric == "output_change"].set_index(["index", "fraction"]).value
        for j, p in enumerate(got.fractions):
            want = changes.loc[[(i, p) for i in index]].to_numpy()
            np.testing.assert_array_equal(got.change[:, j].double().numpy(), want)


# =========================================================================== sanity checks
def test_sanity_similarity_known_answers() -> None:
    g = torch.Generator().manual_seed(7)
    a = torch.randn(3, 3, 48, 48, generator=g)
    for metric in SANITY_METRICS:
        same = sanity_similarity(a, a.clone(), metric)
        assert same.dtype == F64 and same.shape == (3,)
        torch.testing.assert_close(same, torch.ones(3, dtype=F64), atol=1e-12, rtol=0)
    flipped = {m: sanity_similarity(a, -a, m) for m in SANITY_METRICS}
    torch.testing.assert_close(flipped["spearman_abs"], torch.ones(3, dtype=F64))
    torch.testing.assert_close(flipped["spearman_signed"], -torch.ones(3, dtype=F64))
    other = sanity_similarity(a, torch.randn(3, 3, 48, 48, generator=g), "spearman_abs")
    assert other.abs().max() < 0.2
    zeros = torch.zeros(2, 1, 48, 48)
    assert sanity_similarity(zeros, zeros).tolist() == [1.0, 1.0]  # define: constant maps 1
    assert sanity_similarity(zeros, a[:2, :1]).tolist() == [0.0, 0.0]
    assert sanity_similarity(zeros, zeros, constant_maps="nan").isnan().all()
    bad = a[:2].clone()
    bad[0, 0, 0, 0] = math.inf
    assert sanity_similarity(bad, a[:2], "ssim").isnan().tolist() == [True, False]
    assert sanity_similarity(a[:1, 0], a[:1, 0], "hog_spearman", hog_cell=8).item() == 1.0
    with pytest.raises(ValueError, match="unknown metric"):
        sanity_similarity(a, a, "pearson")


def test_sanity_similarity_agrees_with_a_benchmark_run(tmp_path: Path) -> None:
    spec = gradient_spec()
    ctx = tiny_context(tmp_path, [spec])
    bench = SanityChecks(
        n_images=4, batch_size=4, blocks=["fc", "layer3"], metrics=list(SANITY_METRICS)
    )
    table = bench.run(ctx).table
    batch = bench.plan.batch(ctx, 0)
    index = batch.sample["index"].tolist()
    reference = ctx.explainer(spec)(batch.x, batch.target)  # the trained model's maps
    for stage, blocks in (("fc", ["fc"]), ("layer3", ["fc", "layer3"])):  # cascading
        model = randomized_copy(ctx.model, blocks, "normal", 0.01, ctx.seed)
        with torch.no_grad():
            target = model(batch.x).argmax(1)
        maps = ctx.explainer(spec, model=model)(batch.x, target)
        rows = table[table.stage == stage]
        for metric in SANITY_METRICS:
            got = sanity_similarity(maps, reference, metric)  # auto cell and sigma at 32 px
            np.testing.assert_array_equal(got.numpy(), per_image(rows, metric, index, "image"))


# =========================================================================== class sensitivity
def test_class_sensitivity_known_answers() -> None:
    g = torch.Generator().manual_seed(8)
    a = torch.randn(2, 3, 32, 32, generator=g)
    torch.testing.assert_close(class_sensitivity(a, a), torch.ones(2, dtype=F64))
    torch.testing.assert_close(class_sensitivity(a, -a), -torch.ones(2, dtype=F64))
    hog = class_sensitivity(a, -a, "hog_spearman")  # HOG orientations ignore the sign
    torch.testing.assert_close(hog, torch.ones(2, dtype=F64))
    zeros = torch.zeros(2, 1, 32, 32)
    assert class_sensitivity(zeros, a[:, :1]).isnan().all()  # Rebuffi: NaN for constant maps
    assert class_sensitivity(zeros, a[:, :1], constant_maps="define").tolist() == [0.0, 0.0]
    post = class_sensitivity(a, -a, postprocess=["abs"])
    torch.testing.assert_close(post, torch.ones(2, dtype=F64))
    with pytest.raises(ValueError, match="unknown metric"):
        class_sensitivity(a, a, "ssim")


def test_class_sensitivity_agrees_with_a_benchmark_run(tmp_path: Path) -> None:
    spec = gradient_spec()
    ctx = tiny_context(tmp_path, [spec])
    bench = ClassSensitivity(n_images=6, batch_size=4)
    table = bench.run(ctx).table
    explainer = ctx.explainer(spec)
    for number in range(bench.plan.n_batches(ctx)):
        batch = bench.plan.batch(ctx, number)
        top, bottom = batch.logits.argmax(1), batch.logits.argmin(1)
        a, b = explainer(batch.x, top), explainer(batch.x, bottom)
        index = batch.sample["index"].tolist()
        for metric in ("spearman", "hog_spearman"):
            got = class_sensitivity(a, b, metric)
            np.testing.assert_array_equal(got.numpy(), per_image(table, metric, index, "image"))


# =========================================================================== input invariance
def test_input_invariance_known_answers() -> None:
    a = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(9), dtype=F64)
    same = input_invariance(a, a.clone())
    assert same.rel_diff.tolist() == [0.0] * 3 and same.invariant.tolist() == [1.0] * 3
    off = input_invariance(a, a * 1.01)
    torch.testing.assert_close(off.rel_diff, torch.full((3,), 0.01, dtype=F64))
    assert off.invariant.tolist() == [0.0] * 3
    assert input_invariance(a, a * (1 + 5e-4)).invariant.tolist() == [0.0] * 3  # float64: 1e-4
    assert input_invariance(a.float(), a.float() * (1 + 5e-4)).invariant.tolist() == [1.0] * 3
    assert input_invariance(a, a * 1.01, tolerance=0.02).invariant.tolist() == [1.0] * 3
    b = a.clone()
    b[1, 0, 0, 0] = math.nan
    nan = input_invariance(a, b)
    assert nan.invariant[1].isnan() and nan.invariant[[0, 2]].tolist() == [1.0, 1.0]


def test_input_invariance_agrees_with_the_benchmarks_comparison() -> None:
    torch.manual_seed(0)
    model = MLP(in_features=3 * 8 * 8, hidden=(16, 16), num_classes=4).double().eval()
    m2 = constant_shift((3, 8, 8)).double()
    twin = shifted_twin(model, m2)
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64)
    t = torch.tensor([0, 1, 2, 3, 0])
    for method, invariant in ((Gradient, 1.0), (InputXGradient, 0.0)):
        e1, e2 = method(model), method(twin)
        values, _, _ = compare_explainers(e1, e2, [(x, t)], m2, 1e-3)
        got = input_invariance(e1(x, t), e2(x + m2, t), tolerance=1e-3)
        assert float(got.rel_diff.max()) == values["rel_diff"]
        assert float(got.max_abs_diff.max()) == values["max_abs_diff"]
        assert float(got.invariant.min()) == values["invariant"] == invariant


# =========================================================================== batch size and device
def _all_scores(device: str) -> dict[str, Tensor]:
    """Every function on 3 images of the square model, computed on ``device``; every result is
    checked to be on ``device`` and returned on the CPU."""
    import copy

    model = copy.deepcopy(SquareModel()).to(device)
    x, t = square_images(3).to(device), torch.tensor([0, 1, 0], device=device)
    g = torch.Generator().manual_seed(11)
    maps = torch.rand(3, 3, SIZE, SIZE, generator=g).to(device)
    other = torch.rand(3, 3, SIZE, SIZE, generator=g).to(device)
    keys = torch.tensor([5, 1, 9])
    di = deletion_insertion(model, x, t, maps, keys=keys, seed=2, step=3)
    pp = pixel_perturbation(model, x, t, maps, keys=keys, seed=2)
    pg = pointing_game(maps, torch.tensor([[2.0, 2.0, 5.0, 5.0]] * 3), t, tolerance=2)
    big_a = torch.rand(3, 1, 24, 24, generator=g).to(device)
    big_b = big_a + 0.3 * torch.rand(3, 1, 24, 24, generator=g).to(device)
    out = {
        "deletion": di.deletion,
        "insertion_auc": di.insertion_auc,
        "change": pp.change,
        "pp_auc": pp.auc,
        "hits": pg.hits,
        "points": pg.points,
        "invariance": input_invariance(maps, other).rel_diff,
        "class": class_sensitivity(maps, other),
        "hog": class_sensitivity(big_a, big_b, "hog_spearman"),
    }
    out.update({m: sanity_similarity(big_a, big_b, m) for m in SANITY_METRICS})
    for key, value in out.items():
        assert value.device.type == torch.device(device).type, key
    return {k: v.cpu() for k, v in out.items()}


def test_batched_equals_one_image_at_a_time() -> None:
    model, x = SquareModel(), square_images(3)
    t = torch.tensor([0, 1, 0])  # class 1's logit is 0: its output change is NaN (undefined)
    maps = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(12))
    maps[1] = 0.5  # a constant map: the random order of its key
    keys = torch.tensor([5, 1, 9])
    full = _all_scores("cpu")
    di = deletion_insertion(model, x, t, maps, keys=keys, seed=2, internal_batch_size=5)
    pp = pixel_perturbation(model, x, t, maps, keys=keys, seed=2, internal_batch_size=None)
    for i in range(3):
        one = slice(i, i + 1)
        d1 = deletion_insertion(model, x[one], t[one], maps[one], keys=keys[one], seed=2)
        p1 = pixel_perturbation(model, x[one], t[one], maps[one], keys=keys[one], seed=2)
        torch.testing.assert_close(d1.deletion[0], di.deletion[i], rtol=0, atol=1e-12)
        torch.testing.assert_close(d1.insertion_auc[0], di.insertion_auc[i], rtol=0, atol=1e-12)
        torch.testing.assert_close(p1.change[0], pp.change[i], rtol=0, atol=1e-12, equal_nan=True)
    assert full["change"][1].isnan().all() and not full["deletion"].isnan().any()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_numbers() -> None:
    cpu, cuda = _all_scores("cpu"), _all_scores("cuda")
    for key, value in cpu.items():
        torch.testing.assert_close(cuda[key], value, rtol=1e-5, atol=1e-5, equal_nan=True)


# =========================================================================== the documented example
def test_the_documented_example_runs() -> None:
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)[0]
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(code, str(DOC), "exec"), scope)
    assert scope["hits"].shape == (4,) and set(scope["hits"].tolist()) <= {0.0, 1.0}
    di, pp = scope["di"], scope["pp"]
    assert di.deletion.shape == (4, 115) and di.overall.isfinite().all()
    assert pp.change.shape == (4, 5) and pp.auc.isfinite().all()
    assert scope["rho"].shape == (4,) and scope["cs"].shape == (4,)
