"""Pointing game: known-answer cases with stand-in explainers, brute-force references on real
data (shapes_multi), VOC and COCO files in their real formats, and run/resume end to end."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import Tensor, nn

from tests.test_datasets_real import solid, voc_xml, write_coco
from xai_bench.benchmarks.pointing_game import PointingGame
from xai_bench.engine.batches import subset_indices
from xai_bench.methods.base import Explainer
from xai_bench.methods.random import RandomAttribution
from xai_bench.metrics.pointing import (
    argmax_points,
    box_hits,
    boxes_to_masks,
    build_pairs,
    gaussian_smooth,
    mask_hits,
)
from xai_bench.run import run
from xai_bench.utils.errors import UserInputError
from xai_bench.workspace import Workspace

K = 4  # classes of the crafted cases


class ChannelOfTarget(Explainer):
    """Stand-in: the map of class ``c`` is channel ``c`` of the input; records every call."""

    name = "channel_of_target"

    def __init__(self) -> None:
        super().__init__(nn.Identity())
        self.calls: list[list[int]] = []

    def attribute(self, x: Tensor, target: Tensor) -> Tensor:
        self.calls.append(target.tolist())
        return x[torch.arange(len(x)), target].unsqueeze(1)


def peaks(n: int, spots: dict[tuple[int, int], tuple[int, int]], size: int = 32) -> Tensor:
    """Inputs ``[n, K, size, size]``: image i's map of class c peaks at spots[(i, c)] = (u, v)."""
    x = torch.zeros(n, K, size, size)
    for (i, c), (u, v) in spots.items():
        x[i, c, v, u] = 1.0
    return x


def sample(objects: list[list[tuple]], sizes: list[tuple[int, int]] | None = None) -> dict:
    """A collated batch: objects[i] = [(class, x0, y0, x1, y1, difficult), ...]."""
    out: dict[str, Any] = {"index": torch.arange(len(objects)), "boxes": [], "box_labels": []}
    out["difficult"] = []
    for objs in objects:
        out["boxes"].append(torch.tensor([o[1:5] for o in objs], dtype=torch.float32))
        out["box_labels"].append(torch.tensor([o[0] for o in objs], dtype=torch.long))
        out["difficult"].append(torch.tensor([bool(o[5]) for o in objs]))
    if sizes is not None:
        out["orig_size"] = sizes
    return out


def scores(bench: PointingGame, explain: Any, x: Tensor, s: dict, **kw: Any) -> pd.DataFrame:
    target = kw.pop("target", torch.zeros(len(x), dtype=torch.long))
    return bench.evaluate(explain, x, target, s, K, **kw)


def accuracy(df: pd.DataFrame) -> float:
    return float(df.groupby("class")["hit"].mean().mean())


# ---------------------------------------------------------------- hit tests (pure functions)


def brute_hit(mask: Tensor, point: tuple[float, float], tol: float) -> bool:
    """TorchRay's PointingGame.evaluate, written out."""
    v, u = torch.meshgrid(
        (torch.arange(mask.shape[0]).double() - point[1]) ** 2,
        (torch.arange(mask.shape[1]).double() - point[0]) ** 2,
        indexing="ij",
    )
    return bool((mask & ((v + u) < tol**2)).any())


def test_box_and_mask_hits_match_torchray_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    n, h, w = 300, 40, 50
    xy0 = torch.rand(n, 2, generator=g) * torch.tensor([w, h])
    wh = torch.rand(n, 2, generator=g) * 20
    boxes = torch.cat([xy0, xy0 + wh], 1)
    boxes[:5] = torch.tensor([3.0, 4.0, 3.0, 9.0])  # empty boxes: never hit
    points = torch.rand(n, 2, generator=g) * torch.tensor([w, h])
    points[: n // 2] = points[: n // 2].floor()  # integer (argmax) and fractional (centre) points
    sizes = torch.tensor([[h, w]] * n)
    masks = torch.stack([boxes_to_masks(b[None], (h, w))[0] for b in boxes])
    blobs = torch.rand(n, h, w, generator=g) < 0.01  # scattered pixels
    for tol in (1.0, 7.5, 15.0):
        ref = torch.tensor([brute_hit(m, tuple(p.tolist()), tol) for m, p in zip(masks, points)])
        assert ref.any() and not ref.all()
        assert torch.equal(box_hits(points, boxes, sizes, tol), ref)
        assert torch.equal(mask_hits(points, masks, tol), ref)
        ref = torch.tensor([brute_hit(m, tuple(p.tolist()), tol) for m, p in zip(blobs, points)])
        assert torch.equal(mask_hits(points, blobs, tol), ref)


def test_argmax_points_first_max_and_degenerate_maps() -> None:
    m = torch.zeros(6, 5, 6)
    m[0, 3, 1] = m[0, 2, 4] = 2.0  # tie: the first in row-major order is row 2
    m[1] = float("nan")
    m[1, 4, 5], m[1, 0, 0] = -1.0, -2.0  # finite values win over NaNs
    m[2] = 3.0  # constant
    m[3] = float("nan")  # nothing finite
    m[4] = 5.0 + 1e-6 * torch.rand(5, 6)  # float noise around a constant: constant
    m[5] = 5.0
    m[5, 1, 1] = 5.001  # a small but real peak
    points, degenerate = argmax_points(m)
    assert points.tolist() == [[4, 2], [5, 4], [0, 0], [0, 0], [0, 0], [1, 1]]
    assert degenerate.tolist() == [False, False, True, True, True, False]


def test_gaussian_smooth_matches_scipy() -> None:
    x = torch.rand(2, 1, 30, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for sigma in (1.25, 2.0):  # 4 sigma integer: scipy's and TorchRay's truncation agree
        ref = torch.stack(
            [torch.from_numpy(gaussian_filter(a[0].numpy(), sigma, mode="nearest")) for a in x]
        )
        torch.testing.assert_close(gaussian_smooth(x, sigma)[:, 0], ref)


# ---------------------------------------------------------------- known answers with stand-ins


def test_map_inside_box_scores_one_and_outside_scores_zero() -> None:
    g = torch.Generator().manual_seed(2)
    objs = [[(0, 4, 4, 12, 10, 0)], [(1, 20, 18, 30, 28, 0), (2, 2, 20, 9, 31, 0)]]
    s = sample(objs)
    inside = torch.zeros(2, K, 32, 32)
    outside = torch.rand(2, K, 32, 32, generator=g) + 0.1
    for i, img in enumerate(objs):
        for c, x0, y0, x1, y1, _ in img:
            inside[i, c, y0:y1, x0:x1] = torch.rand(y1 - y0, x1 - x0, generator=g) + 0.1
            box = boxes_to_masks(torch.tensor([[x0, y0, x1, y1]]), (32, 32)).float()
            near = F.max_pool2d(box[None], 9, 1, 4)[0, 0] > 0
            outside[i, c][near] = 0.0  # zero within 4 px (Chebyshev) of the box
    bench = PointingGame(tolerance=4, center_baseline=False)
    assert accuracy(scores(bench, ChannelOfTarget(), inside, s)) == 1.0
    assert accuracy(scores(bench, ChannelOfTarget(), outside, s)) == 0.0
    # a larger tolerance reaches the object from the outside map's nearest possible maxima
    assert accuracy(scores(PointingGame(tolerance=50), ChannelOfTarget(), outside, s)) == 1.0


@pytest.mark.parametrize(
    ("pixel", "dist"), [((13, 14), 5.0), ((15, 10), 5.0), ((10, 3), 7.0)]
)  # Euclidean 3-4-5, horizontal, vertical
def test_tolerance_is_strict_euclidean(pixel: tuple[int, int], dist: float) -> None:
    x = peaks(1, {(0, 0): (10, 10)})
    s = sample([[(0, pixel[0], pixel[1], pixel[0] + 1, pixel[1] + 1, 0)]])
    for tol, hit in ((dist - 1e-4, 0), (dist, 0), (dist + 1e-4, 1)):
        for gt in ("boxes", "masks"):
            s["masks"] = [boxes_to_masks(s["boxes"][0], (32, 32))]
            df = scores(PointingGame(tolerance=tol, gt=gt), ChannelOfTarget(), x, s)
            assert df["hit"].tolist() == [hit], (tol, gt)


def test_maps_resized_to_original_size_per_image() -> None:
    """Input 32 px; originals 64 x 64 (x2: tie -> first, 2r) and 96 x 64 (x3 rows: 3r + 1)."""
    x = peaks(2, {(0, 0): (7, 5), (1, 0): (7, 5)})
    s = sample([[(0, 0, 0, 1, 1, 0)]] * 2, sizes=[(64, 64), (96, 64)])
    df = scores(PointingGame(tolerance=1), ChannelOfTarget(), x, s)
    assert df[["u", "v"]].values.tolist() == [[14.0, 10.0], [14.0, 16.0]]
    # against a per-image reference on random maps of mixed sizes
    m = torch.rand(5, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    sizes = torch.tensor([[48, 64], [32, 32], [48, 64], [100, 75], [32, 32]])
    points, _ = PointingGame().points(m, sizes, smooth=False)
    for i in range(5):
        r = F.interpolate(m[i : i + 1], sizes[i].tolist(), mode="bilinear", align_corners=False)
        idx = int(r.flatten().argmax())
        assert points[i].tolist() == [idx % int(sizes[i, 1]), idx // int(sizes[i, 1])]


def test_per_class_mean_differs_from_overall_hit_rate() -> None:
    objs = [[(0, 0, 0, 4, 4, 0)]] * 3 + [[(1, 0, 0, 4, 4, 0)]]
    x = peaks(4, {(0, 0): (1, 1), (1, 0): (2, 2), (2, 0): (3, 3), (3, 1): (30, 30)})
    df = scores(PointingGame(tolerance=3), ChannelOfTarget(), x, sample(objs))
    assert df["hit"].tolist() == [1, 1, 1, 0]
    assert accuracy(df) == 0.5 and df["hit"].mean() == 0.75


def test_difficult_boxes_count_but_difficult_only_classes_are_skipped() -> None:
    objs = [
        [(0, 0, 0, 5, 5, 1), (1, 20, 20, 25, 25, 0)],  # class 0 only difficult: skipped
        [(2, 10, 10, 12, 12, 1), (2, 28, 0, 32, 4, 0)],  # the difficult box is the one hit
    ]
    x = peaks(2, {(0, 0): (1, 1), (0, 1): (22, 22), (1, 2): (11, 11)})
    explain = ChannelOfTarget()
    df = scores(PointingGame(tolerance=2), explain, x, sample(objs))
    assert list(zip(df["index"], df["class"], df["hit"])) == [(0, 1, 1), (1, 2, 1)]
    assert explain.calls == [[1, 2]]  # no map for the skipped class
    df = scores(PointingGame(tolerance=2, exclude_difficult=True), explain, x, sample(objs))
    assert df["hit"].tolist() == [1, 0]
    pairs = build_pairs(sample(objs), K, keep=torch.tensor([[1, 1, 1, 1], [1, 1, 0, 1]]).bool())
    assert pairs.cls.tolist() == [1]  # subset flags drop the pair (1, class 2)


def test_masks_versus_boxes_on_an_l_shaped_object() -> None:
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[0:20, 0:5] = True
    mask[15:20, 0:20] = True  # an L: its box [0, 0, 20, 20] covers the empty corner
    s = sample([[(3, 0, 0, 20, 20, 0)]])
    s["masks"] = [mask[None]]
    x = peaks(1, {(0, 3): (15, 5)})  # in the box, 10 px from the L (rows 15..19)
    for gt, tol, hit in (("boxes", 5, 1), ("masks", 5, 0), ("masks", 10, 0), ("masks", 10.5, 1)):
        df = scores(PointingGame(tolerance=tol, gt=gt), ChannelOfTarget(), x, s)
        assert df["hit"].tolist() == [hit], (gt, tol)


def test_restricted_uses_one_map_of_the_top_class_for_every_class() -> None:
    objs = [[(0, 0, 0, 4, 4, 0), (1, 24, 24, 28, 28, 0)], [(1, 0, 0, 4, 4, 0), (2, 8, 8, 9, 9, 0)]]
    spots = {(0, 3): (1, 1), (1, 0): (26, 26), (0, 0): (26, 26), (0, 1): (1, 1), (1, 1): (1, 1)}
    x = peaks(2, {**spots, (1, 2): (20, 20)})
    top = torch.tensor([3, 0])  # the model's top-scoring class per image
    explain = ChannelOfTarget()
    df = scores(PointingGame(restricted=True, tolerance=3), explain, x, sample(objs), target=top)
    assert explain.calls == [[3, 0]]  # one call, one map per image, for the top class
    assert df[["u", "v"]].values.tolist() == [[1, 1], [1, 1], [26, 26], [26, 26]]
    assert df["hit"].tolist() == [1, 0, 0, 0]
    explain = ChannelOfTarget()
    df = scores(PointingGame(tolerance=3), explain, x, sample(objs), target=top)
    assert explain.calls == [[0, 1, 1, 2]] and df["hit"].tolist() == [0, 0, 1, 0]


def test_constant_maps_are_degenerate_misses_and_nonfinite_maps_nan() -> None:
    x = peaks(3, {(2, 0): (20, 20)})
    x[0, 0] = float("nan")  # no finite value
    x[1, 0] = 0.5  # constant
    x[2, 0, 0, 0] = float("inf")  # non-finite pixel beside a real peak
    s = sample([[(0, 18, 18, 22, 22, 0)]] * 3)
    df = scores(PointingGame(tolerance=2, smooth_sigma=0.05), ChannelOfTarget(), x, s, smooth=True)
    # a non-finite map is neither hit nor miss (NaN, flagged); a constant one is a miss
    assert df["degenerate"].tolist() == [0, 1, 0] and df["map_nonfinite"].tolist() == [1, 0, 1]
    assert math.isnan(df["hit"][0]) and df["hit"][1] == 0 and math.isnan(df["hit"][2])
    assert df[["u", "v"]].values.tolist()[1] == [0, 0]
    assert df[["u", "v"]].iloc[[0, 2]].isna().all().all()


def test_smoothing_moves_the_point_from_a_spike_to_a_blob() -> None:
    x = torch.zeros(1, K, 32, 32)
    x[0, 0, 2, 2] = 1.0  # a one-pixel spike ...
    x[0, 0, 20:28, 20:28] = 0.8  # ... and a broad blob
    s = sample([[(0, 20, 20, 28, 28, 0)]])
    bench = PointingGame(tolerance=2, smooth_sigma=0.05)
    assert scores(bench, ChannelOfTarget(), x, s)["hit"].tolist() == [0]
    assert scores(bench, ChannelOfTarget(), x, s, smooth=True)["hit"].tolist() == [1]


def test_center_baseline_point() -> None:
    s = sample([[(0, 0, 0, 1, 1, 0)], [(0, 0, 0, 1, 1, 0)]], sizes=[(48, 64), (31, 20)])
    df = scores(PointingGame(), None, torch.zeros(2, K, 32, 32), s)
    assert df[["u", "v"]].values.tolist() == [[32.0, 24.0], [10.0, 15.5]]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="gt must be"):
        PointingGame(gt="polygons")
    with pytest.raises(ValueError, match="tolerance"):
        PointingGame(tolerance=0)


# ---------------------------------------------------------------- real runs

TINY = ("model.weights=random", "model.net.widths=[4,8,8]")
SHAPES = (*TINY, "dataset=shapes_multi", "dataset.datamodule.n_test=48")


def bench_args(**kw: Any) -> list[str]:
    return [f"benchmark.{k}={v}" for k, v in kw.items()]


def test_shapes_multi_matches_brute_force_reference(make_cfg, tmp_path: Path) -> None:
    """Centre and random baselines on shapes_multi against a per-pair TorchRay-style loop."""
    args = bench_args(methods="[random]", n_images=20, batch_size=8, tolerance=4)
    cfg = make_cfg("benchmark=pointing_game", *SHAPES, *args)
    out = run(cfg, tmp_path / "run")
    table = pd.read_csv(tmp_path / "run" / "results.csv")
    ws = Workspace(cfg, tmp_path / "ref")
    ds = ws.datamodule.dataset("test")
    rand = RandomAttribution(nn.Identity(), seed=int(cfg.seed))
    hits: dict[str, dict[int, list[int]]] = {"center": {}, "random": {}}
    for i in subset_indices(len(ds), 20, ws.seed):
        item = ds[i]
        x = item["image"][None]
        r = rand(x, 0)[0, 0]
        flat = int(r.flatten().argmax())
        w = r.shape[1]
        for c in item["box_labels"].unique().tolist():
            gt = torch.zeros(64, 64, dtype=torch.bool)
            for box in item["boxes"][item["box_labels"] == c].long().tolist():
                gt[box[1] : box[3], box[0] : box[2]] = True
            hits["random"].setdefault(c, []).append(brute_hit(gt, (flat % w, flat // w), 4))
            hits["center"].setdefault(c, []).append(brute_hit(gt, (32.0, 32.0), 4))
    names = ws.datamodule.class_names
    for method, per_class in hits.items():
        rows = table[table.method == method].set_index("metric")
        expected = {names[c]: sum(v) / len(v) for c, v in per_class.items()}
        per = table[(table.method == method) & (table.metric == "class_accuracy")]
        assert dict(zip(per["class"], per["value"])) == pytest.approx(expected)
        assert rows.loc["accuracy", "value"] == pytest.approx(sum(expected.values()) / 8)
        all_hits = [h for v in per_class.values() for h in v]
        assert rows.loc["hit_rate", "value"] == pytest.approx(sum(all_hits) / len(all_hits))
        assert out[f"accuracy/{method}"] == pytest.approx(rows.loc["accuracy", "value"])
    assert out["n_pairs"] == 40 and out["n_images"] == 20


def test_run_cached_and_resume_after_interruption(make_cfg, tmp_path, monkeypatch) -> None:
    args = bench_args(methods="[gradient,gradcam]", n_images=12, batch_size=4)
    cfg = make_cfg("benchmark=pointing_game_restricted", *SHAPES, *args)
    full = run(cfg, tmp_path / "full")
    assert full["cached"] is False and full["chunks_computed"] == 9  # 3 batches x 3 methods
    assert full["variant"] == "restricted" and full["n_pairs"] == 24
    assert Path(full["figures"][0]).is_file()
    assert run(cfg, tmp_path / "full")["cached"] is True

    original, calls = PointingGame.evaluate, []

    def flaky(self: PointingGame, *a: Any, **kw: Any) -> pd.DataFrame:
        if len(calls) == 4:
            raise RuntimeError("interrupted")
        calls.append(1)
        return original(self, *a, **kw)

    monkeypatch.setattr(PointingGame, "evaluate", flaky)
    with pytest.raises(RuntimeError, match="interrupted"):
        run(cfg, tmp_path / "resumed")
    monkeypatch.setattr(PointingGame, "evaluate", original)
    resumed = run(cfg, tmp_path / "resumed")
    assert resumed["chunks_loaded"] == 4 and resumed["chunks_computed"] == 5
    a = pd.read_csv(tmp_path / "full" / "results.csv")
    b = pd.read_csv(tmp_path / "resumed" / "results.csv")
    pd.testing.assert_frame_equal(a, b)
    assert set(a.method) == {"center", "gradient", "gradcam"}
    assert a["value"].notna().all() and a["value"].between(0, 1).all()


def test_two_labelled_variants_of_one_method(make_cfg, tmp_path: Path) -> None:
    """Two entries of gradcam in `benchmark.methods` give two rows each with its own label and
    hash; the variant without the ReLU points elsewhere on some pairs; smooth_methods selects
    by label."""
    methods = "[{name:gradcam,label:gc_a},{name:gradcam,label:gc_b,relu:false}]"
    args = bench_args(methods=methods, n_images=12, batch_size=4, tolerance=4)
    cfg = make_cfg("benchmark=pointing_game", *SHAPES, *args, "benchmark.center_baseline=false")
    out = run(cfg, tmp_path / "run")
    table = pd.read_csv(tmp_path / "run" / "results.csv")
    acc = table[table.metric == "accuracy"].set_index("method")
    assert list(acc.index) == ["gc_a", "gc_b"]
    assert set(acc.method_config) == {"gradcam"}
    assert acc.loc["gc_a", "method_hash"] != acc.loc["gc_b", "method_hash"]
    assert out["chunks_computed"] == 6 and out["n_pairs"] == 24
    assert set(out) >= {"accuracy/gc_a", "accuracy/gc_b", "hit_rate/gc_b", "headline"}
    assert out["headline"] == {"accuracy": True, "hit_rate": True}
    # the chunks are keyed by label and hash: each variant has its own
    chunks = sorted(p.name for p in (tmp_path / "run" / "partial").rglob("*.chunk"))
    assert [c.split("-")[0] for c in chunks] == ["gc_a"] * 3 + ["gc_b"] * 3
    # smoothing selects by label: only gc_b is blurred, gc_a keeps its numbers
    smooth = bench_args(smooth_sigma=0.1, smooth_methods="[gc_b]", center_baseline="false")
    run(make_cfg("benchmark=pointing_game", *SHAPES, *args, *smooth), tmp_path / "smooth")
    blurred = pd.read_csv(tmp_path / "smooth" / "results.csv")
    for method, same in (("gc_a", True), ("gc_b", False)):
        a = table[table.method == method].value.to_numpy()
        b = blurred[blurred.method == method].value.to_numpy()
        assert bool(len(a) == len(b) and (a == b).all()) is same, method


def test_dataset_without_boxes_or_masks_is_refused(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("benchmark=pointing_game", "model=mlp", "dataset=digits", "model.weights=random")
    with pytest.raises(UserInputError, match="needs object boxes; dataset 'digits'") as err:
        run(cfg, tmp_path / "digits")
    assert "\n" not in str(err.value)
    cfg = make_cfg(
        "benchmark=pointing_game",
        *TINY,
        "dataset=shapes",
        "benchmark.n_images=4",
        "benchmark.methods=[random]",
        "dataset.datamodule.n_test=8",
    )
    assert run(cfg, tmp_path / "shapes")["n_pairs"] == 4  # single-object shapes has boxes


VOC_TEST = {  # id -> (W, H, objects (name, xmin, ymin, xmax, ymax, difficult)), 1-based corners
    "000001": (64, 48, [("dog", 49, 1, 64, 48, 0), ("person", 8, 12, 20, 44, 1)]),
    "000002": (32, 32, [("train", 1, 1, 32, 32, 0)]),
    "000003": (80, 60, [("cat", 1, 1, 10, 10, 0), ("cat", 36, 26, 45, 35, 1)]),
}


def write_voc(root: Path) -> None:
    voc = root / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for name, (w, h, objects) in VOC_TEST.items():
        solid(voc / "JPEGImages" / f"{name}.jpg", (120, 90, 60), (w, h))
        (voc / "Annotations" / f"{name}.xml").write_text(voc_xml(name, w, h, objects))
    (voc / "ImageSets" / "Main" / "test.txt").write_text("\n".join(VOC_TEST) + "\n")


def test_voc07_files_centre_known_answers(make_cfg, tmp_path: Path) -> None:
    """Centre (32, 24) is 16 px from the dog; person (difficult only) skipped; cat hit only
    through its difficult box; subset flags leave the train out of the flagged subset only."""
    write_voc(tmp_path / "voc")
    base = (
        "benchmark=pointing_game",
        *TINY,
        "dataset=voc07",
        "dataset.image_size=32",
        f"dataset.datamodule.root={tmp_path / 'voc'}",
        "benchmark.methods=[gradient]",
        "benchmark.tolerance=15",  # TorchRay's px at original resolution, not scaled
    )
    flags = tmp_path / "flags.txt"
    flags.write_text("000002\t" + "\t".join("0" * 20) + "\n")
    cases = {
        "default": ([], 2 / 3, 3),
        "tol17": (["benchmark.tolerance=17"], 1.0, 3),
        "exclude": (["benchmark.exclude_difficult=true"], 1 / 3, 3),
        "flags": ([f"benchmark.subset_flags={flags}"], 2 / 3, 3),
    }
    for tag, (extra, acc, n) in cases.items():
        out = run(make_cfg(*base, *extra), tmp_path / tag)
        assert out["accuracy/center"] == pytest.approx(acc), tag
        assert out["n_pairs"] == n and 0 <= out["accuracy/gradient"] <= 1, tag
    assert out["difficult/accuracy/center"] == 0.5 and out["difficult/n_pairs"] == 2


def test_coco2017_files_masks_versus_boxes(make_cfg, tmp_path: Path) -> None:
    ell = {
        "category_id": 1,
        "bbox": [0, 0, 58, 48],
        "area": 800.0,
        "segmentation": [[0, 0, 58, 0, 58, 8, 8, 8, 8, 48, 0, 48]],
    }
    rect = {
        "category_id": 3,
        "bbox": [10, 10, 20, 10],
        "area": 200.0,
        "segmentation": [[10, 10, 30, 10, 30, 20, 10, 20]],
    }
    tri = {
        "category_id": 90,
        "bbox": [0, 0, 20, 20],
        "area": 200.0,
        "segmentation": [[0, 0, 20, 0, 0, 20]],
    }
    write_coco(
        tmp_path / "coco", "val2017", [(1, 60, 50, [ell]), (2, 48, 32, [rect]), (3, 60, 40, [tri])]
    )
    base = (
        "benchmark=pointing_game",
        *TINY,
        "dataset=coco2017",
        "dataset.image_size=32",
        f"dataset.datamodule.root={tmp_path / 'coco'}",
        "benchmark.methods=[gradient]",
        "benchmark.tolerance=15",  # TorchRay's px at original resolution, not scaled
    )
    boxes = run(make_cfg(*base), tmp_path / "boxes")
    masks = run(make_cfg(*base, "benchmark.gt=masks", "benchmark.batch_size=2"), tmp_path / "m")
    assert boxes["accuracy/center"] == 1.0 and boxes["n_pairs"] == 3
    assert masks["accuracy/center"] == pytest.approx(1 / 3)  # only the rectangle: L and triangle
    assert 0 <= masks["accuracy/gradient"] <= 1 and not math.isnan(masks["hit_rate/gradient"])
    write_voc(tmp_path / "voc")
    voc = (
        *TINY,
        "dataset=voc07",
        "dataset.image_size=32",
        f"dataset.datamodule.root={tmp_path}/voc",
    )
    with pytest.raises(UserInputError, match="gt=masks"):
        run(make_cfg("benchmark=pointing_game", *voc, "benchmark.gt=masks"), tmp_path / "vocm")
