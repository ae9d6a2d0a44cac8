"""Degenerate values are named, never hidden: a map with a NaN or an infinite value gives NaN
in every similarity metric and benchmark score, is counted in the summary and warned about;
constant maps keep their documented convention."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import Tensor, nn

from tests.conftest import RANDOM, tiny_context
from xai_bench.benchmarks.class_sensitivity import ClassSensitivity
from xai_bench.benchmarks.pixel_perturbation import PixelPerturbation
from xai_bench.benchmarks.sanity_checks import METRICS, SanityChecks, compare, map_views
from xai_bench.methods.base import Explainer, MethodNotApplicableError
from xai_bench.methods.spec import MethodSpec
from xai_bench.metrics import similarity as sim
from xai_bench.metrics.aggregate import aggregate, flagged_mean
from xai_bench.metrics.invariance import compare_explainers, compare_maps
from xai_bench.metrics.pointing import class_accuracies, maps_to_points
from xai_bench.metrics.postprocess import Postprocess, clip_percentile, maxabs, minmax
from xai_bench.models.meta import ModelMeta

VIEWS = sorted({view for view, _ in METRICS.values()})


class NonFiniteMaps(Explainer):
    """``x * (target + 1)``, except the images at even batch positions: all NaN (``nan``),
    one ``+inf`` pixel (``inf``); ``unfit`` does not fit any model."""

    name = "nonfinite_maps"

    def __init__(self, model: nn.Module, meta: ModelMeta | None = None, kind: str = "nan"):
        super().__init__(model, meta)
        if kind == "unfit":
            raise MethodNotApplicableError("nonfinite_maps(unfit) fits no model")
        self.kind = kind

    def attribute(self, x: Tensor, target: Tensor) -> Tensor:
        out = x * (target.view(-1, 1, 1, 1) + 1.0)
        if self.kind == "nan":
            out[::2] = math.nan
        else:
            out[::2, 0, 3, 5] = math.inf
        return out


def spec(kind: str) -> MethodSpec:
    node = {"_target_": f"{__name__}.NonFiniteMaps", "_partial_": True, "kind": kind}
    return MethodSpec.create("nonfinite_maps", node, label=f"{kind}_maps")


def _maps(seed: int, shape=(2, 3, 32, 32)) -> Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _broken(x: Tensor, kind: str) -> Tensor:
    out = x.clone()
    if kind == "nan":
        out[:] = math.nan
    else:
        out[:, 0, 3, 5] = math.inf if kind == "inf" else -math.inf
    return out


# ------------------------------------------------------------------ similarity and views
def test_finite_maps_keep_their_known_answers() -> None:
    a, b = _maps(0), _maps(1)
    rho = sim.spearman(a, b)
    ref = [spearmanr(x.flatten().numpy(), y.flatten().numpy())[0] for x, y in zip(a, b)]
    assert rho.tolist() == pytest.approx(ref, abs=1e-12)
    assert sim.spearman(a, -a).tolist() == pytest.approx([-1.0, -1.0], abs=1e-12)
    s = sim.ssim(a, b)
    ref = [
        structural_similarity(x.numpy(), y.numpy(), gaussian_weights=True, sigma=1.5,
                              data_range=1.0, channel_axis=0)
        for x, y in zip(a, b)
    ]  # fmt: skip
    assert s.tolist() == pytest.approx(ref, abs=1e-10)
    assert sim.hog_spearman(a, a, 8).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)
    va, vb = map_views(a, VIEWS, 8), map_views(b, VIEWS, 8)
    for metric in METRICS:  # identical maps: 1; independent noise: far from 1, never NaN
        assert compare(va, va, metric, True).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
        assert compare(va, vb, metric, True).abs().max() < 0.5, metric


@pytest.mark.parametrize("kind", ["nan", "inf", "-inf"])
def test_a_nonfinite_map_gives_nan_in_every_similarity(kind: str) -> None:
    a, b = _maps(0), _maps(1)
    bad = _broken(a, kind)
    for x, y in ((bad, b), (b, bad), (bad, bad)):
        for name, value in {
            "spearman": sim.spearman(x, y),
            "spearman_undefined": sim.spearman(x, y, defined=False),
            "ssim": sim.ssim(x, y),
            "hog_spearman": sim.hog_spearman(x, y, 8),
        }.items():
            assert value.isnan().all(), (kind, name)
        vx, vy = map_views(x, VIEWS, 8), map_views(y, VIEWS, 8)
        for metric in METRICS:  # before: all-NaN ssim 1.0, one +inf pixel 0.995
            assert compare(vx, vy, metric, True).isnan().all(), (kind, metric)
    # only the broken sample is NaN
    mixed = torch.cat([bad[:1], b[1:]])
    rho = sim.spearman(mixed, b)
    assert math.isnan(rho[0]) and rho[1] == pytest.approx(1.0)
    out = ClassSensitivity(hog_cell=8, constant_maps="define").similarities(bad, b)
    assert all(v.isnan().all() for v in out.values())


@pytest.mark.parametrize("kind", ["nan", "inf", "-inf"])
def test_normalisations_never_turn_a_nonfinite_map_finite(kind: str) -> None:
    a = _maps(0)
    bad = _broken(a, kind)
    for f in (minmax, maxabs, clip_percentile, sim.abs_view, sim.diverging_view, sim.maxabs_view):
        out = f(bad)
        assert out.isnan().all(), (kind, f.__name__)
        assert torch.isfinite(f(a)).all()
    assert sim.hog(bad, 8).isnan().all() and torch.isfinite(sim.hog(a, 8)).all()
    for steps in (["relu"], ["channel_mean", "abs", "minmax"], ["channel_max_abs", "maxabs"]):
        assert Postprocess(steps)(bad).isnan().all(), steps  # relu(-inf) would be 0
    big = torch.full((1, 1, 4, 4), 1e30)  # finite, but squared past float32's range
    assert Postprocess(["square"])(big).isnan().all()


def test_constant_maps_keep_their_convention() -> None:
    zero, const = torch.zeros(2, 3, 32, 32), torch.full((2, 3, 32, 32), 0.5)
    ramp = _maps(3)
    assert sim.spearman(const, zero).tolist() == [1.0, 1.0]  # both constant: 1
    assert sim.spearman(const, ramp).tolist() == [0.0, 0.0]  # one constant: 0
    assert sim.spearman(const, ramp, defined=False).isnan().all()  # SciPy's NaN
    assert minmax(const).eq(0).all() and maxabs(zero).eq(0).all()
    assert clip_percentile(zero).eq(0).all()
    vz, vc, vr = (map_views(m, VIEWS, 8) for m in (zero, const, ramp))
    assert compare(vz, vz, "ssim", True).tolist() == pytest.approx([1.0, 1.0])
    assert compare(vz, vz, "spearman_abs", True).tolist() == [1.0, 1.0]
    assert compare(vc, vr, "spearman_abs", True).tolist() == [0.0, 0.0]
    assert compare(vc, vr, "spearman_abs", False).isnan().all()


# ------------------------------------------------------------------ aggregation
def test_means_never_hide_nonfinite_maps_but_skip_undefined_values() -> None:
    rows = pd.DataFrame(
        {"method": ["m"] * 4 + ["c"] * 3, "metric": "x",
         "value": [1.0, math.nan, 0.5, 0.0, 1.0, math.nan, 0.0],
         "map_nonfinite": [0, 1, 0, 0, 0, 0, 0]}
    )  # fmt: skip
    recs = {r["method"]: r for r in aggregate(rows, ["method", "metric"])}
    assert math.isnan(recs["m"]["mean"]) and math.isnan(recs["m"]["std"])
    assert (recs["m"]["n"], recs["m"]["n_nan"], recs["m"]["n_nonfinite"]) == (3, 1, 1)
    # c: a NaN of a constant map (constant_maps=nan) is left out and counted
    assert recs["c"]["mean"] == 0.5 and (recs["c"]["n_nan"], recs["c"]["n_nonfinite"]) == (1, 0)
    m = rows[rows.method == "m"]
    assert math.isnan(flagged_mean(m.value, m.map_nonfinite))
    assert flagged_mean(m.value) == pytest.approx(0.5)


# ------------------------------------------------------------------ other metrics
def test_pointing_and_invariance_scores_are_nan() -> None:
    maps = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    maps[0] = math.nan
    maps[1, 2, 2] = math.inf
    points, degenerate = maps_to_points(maps, torch.tensor([[8, 8]] * 3))
    assert points[:2].isnan().all() and torch.isfinite(points[2]).all()
    assert degenerate.tolist() == [False, False, False]
    _, _, acc = class_accuracies(torch.tensor([1.0, math.nan, 0.0]), torch.tensor([0, 0, 1]), 2)
    assert math.isnan(acc[0]) and acc[1] == 0.0
    a = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    b = a.clone()
    b[0, 0, 0, 0] = math.inf
    diff, rel = compare_maps(a, b)
    assert diff[0].isnan() and rel[0].isnan() and diff[1] == 0 and rel[1] == 0
    x = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    values, note, _ = compare_explainers(lambda x, t: a, lambda x, t: b, [(x, None)], x, 1e-4)
    assert all(math.isnan(v) for v in values.values())  # before: invariant = 0
    assert note == "non-finite maps for 1 images"


# ------------------------------------------------------------------ through the engine
def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_pixel_perturbation_counts_and_warns(tmp_path, caplog) -> None:
    specs = [spec("nan"), spec("inf"), MethodSpec.create("random", RANDOM), spec("unfit")]
    ctx = tiny_context(tmp_path, specs)
    bench = PixelPerturbation(n_images=8, batch_size=4, fractions=[0.1, 0.5])
    with caplog.at_level(logging.WARNING):
        out = bench.run(ctx).summary
    # 4 of the 8 images (even batch positions) per method: 2 change rows + 1 AUC row each
    assert out["nonfinite"] == {"nan_maps": 12, "inf_maps": 12}
    assert out["nonfinite_maps"] == {"nan_maps": 4, "inf_maps": 4}
    assert out["undefined_rows"] == {}
    for label in ("nan_maps", "inf_maps"):  # before: finite means over the other images
        assert math.isnan(out[f"{label}/auc"]) and math.isnan(out[f"{label}/change@0.1"])
    assert math.isfinite(out["random/auc"]) and out["skipped"] == {
        "unfit_maps": "nonfinite_maps(unfit) fits no model"
    }
    lines = _warnings(caplog)
    for label in ("nan_maps", "inf_maps"):
        assert (
            f"pixel_perturbation: {label}: 12 of 24 results are NaN "
            "(12 of non-finite saliency maps)" in lines
        )
    assert "pixel_perturbation: unfit_maps: skipped (nonfinite_maps(unfit) fits no model)" in lines
    assert not any("random" in line for line in lines)


def test_sanity_checks_counts_and_warns(tmp_path, caplog) -> None:
    specs = [spec("nan"), spec("inf"), MethodSpec.create("random", RANDOM)]
    ctx = tiny_context(tmp_path, specs)
    bench = SanityChecks(n_images=8, batch_size=4, hog_cell=8, blocks=["fc"])
    with caplog.at_level(logging.WARNING):
        result = bench.run(ctx)
    out, table = result.summary, result.table
    # 4 broken images x 2 stages (original, fc) x 4 metrics, of 8 x 2 x 4
    assert out["nonfinite"] == {"nan_maps": 32, "inf_maps": 32}
    for rec in out["aggregate"]:
        if rec["method"] == "random":
            assert rec["mean"] == pytest.approx(1.0) and rec["n_nonfinite"] == 0
        else:  # before: ssim 1.0 (all NaN) and 0.99 (one +inf pixel)
            assert math.isnan(rec["mean"]) and (rec["n"], rec["n_nonfinite"]) == (4, 4), rec
    broken = table[table.method.isin(["nan_maps", "inf_maps"])]
    assert broken.value.isna().sum() == 64 and broken.map_nonfinite.sum() == 64
    finite = broken[broken.map_nonfinite == 0].value.to_numpy()
    assert np.allclose(finite, 1.0, atol=1e-6)  # the other images' maps do not change
    lines = _warnings(caplog)
    assert (
        "sanity_checks: nan_maps: 32 of 64 results are NaN (32 of non-finite saliency maps)"
        in lines
    )
    assert sum("results are NaN" in line for line in lines) == 2  # one line per method


def test_roar_does_not_retrain_on_nonfinite_maps(tmp_path, caplog) -> None:
    from xai_bench.benchmarks.roar import ROAR

    ctx = tiny_context(tmp_path, [spec("nan"), spec("inf")])
    ctx.attribution_dir = tmp_path / "attributions"
    with caplog.at_level(logging.WARNING):
        result = ROAR(fractions=[0.5], attribution_batch_size=4).run(ctx)
    out, table = result.summary, result.table
    counts = {"train": 4, "val": 4, "test": 4}  # even positions of each 4-image shard
    assert out["nonfinite_maps"] == {"nan_maps": counts, "inf_maps": counts}
    # one row per RESULT_METRICS entry of the skipped retrain, plus its roar_auc row
    assert out["retrained"] == 0 and out["nonfinite"] == {"nan_maps": 7, "inf_maps": 7}
    assert table[table.metric == "test_acc"].value.isna().all()
    assert all(math.isnan(v) for v in out["roar_auc"].values())
    assert "roar: nan_maps: 7 of 7 results are NaN (7 of non-finite saliency maps)" in _warnings(
        caplog
    )


def test_pointing_game_counts_pairs_and_warns(tmp_path, caplog) -> None:
    from xai_bench.benchmarks.pointing_game import PointingGame

    ctx = tiny_context(tmp_path, [spec("inf"), MethodSpec.create("random", RANDOM)])
    with caplog.at_level(logging.WARNING):
        result = PointingGame(n_images=8, batch_size=4).run(ctx)
    out, table = result.summary, result.table
    overall = table[(table["class"] == "all") & (table.metric == "hit_rate")].set_index("method")
    n_bad, n = int(overall.loc["inf_maps", "n_nonfinite"]), int(overall.loc["inf_maps", "n"])
    assert 0 < n_bad < n and out["nonfinite"] == {"inf_maps": n_bad}  # before: no NaN at all
    assert math.isnan(out["accuracy/inf_maps"]) and math.isnan(out["hit_rate/inf_maps"])
    assert math.isfinite(out["accuracy/random"]) and math.isfinite(out["accuracy/center"])
    line = f"pointing_game: inf_maps: {n_bad} of {n} results are NaN ({n_bad} of non-finite"
    assert any(msg.startswith(line) for msg in _warnings(caplog))
