"""Pixel perturbation and deletion/insertion: known answers on a model that looks at one square,
orders and tie-breaks, fills, AUC, batching invariance, and end-to-end run / cache / resume."""

from __future__ import annotations

import importlib
import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch import Tensor, nn

import xai_bench.engine.benchmark as engine_module
import xai_bench.engine.jobs as jobs_module
from xai_bench.benchmarks.deletion_insertion import DeletionInsertion
from xai_bench.benchmarks.pixel_perturbation import PixelPerturbation
from xai_bench.engine.batches import EvalBatch
from xai_bench.methods.spec import MethodSet, MethodSpec
from xai_bench.metrics.perturbation import (
    blur_image,
    fill_values,
    fraction_counts,
    order_rank,
    pixel_order,
    random_order,
    rise_kernel1d,
    saliency_2d,
    step_counts,
    trapezoid_auc,
)
from xai_bench.metrics.postprocess import Postprocess
from xai_bench.run import run

F64 = torch.float64
SIZE, LO, HI = 8, 2, 5  # 8x8 images; the model looks at rows/cols 2..4 (9 pixels)
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


class SquareModel(nn.Module):
    """Logits ``[4 s, 0]`` with ``s`` the mean of the input over the square (all channels)."""

    def __init__(self) -> None:
        super().__init__()
        w = torch.zeros(1, 3, SIZE, SIZE, dtype=F64)
        w[..., LO:HI, LO:HI] = 1.0 / (3 * (HI - LO) ** 2)
        self.register_buffer("w", w)

    def forward(self, x: Tensor) -> Tensor:
        s = (x * self.w).flatten(1).sum(1)
        return torch.stack([4 * s, torch.zeros_like(s)], 1)


def square_images(b: int = 4) -> Tensor:
    """Dim background in [0.1, 0.3), the square at 1.0 (normalised space)."""
    g = torch.Generator().manual_seed(0)
    x = 0.1 + 0.2 * torch.rand(b, 3, SIZE, SIZE, generator=g, dtype=F64)
    x[..., LO:HI, LO:HI] = 1.0
    return x


def oracle(x: Tensor, target: Tensor) -> Tensor:
    m = torch.zeros(x.shape[0], 1, SIZE, SIZE)
    m[..., LO:HI, LO:HI] = 1.0
    return m


def seeded_noise(x: Tensor, target: Tensor) -> Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(x.shape[0], 1, SIZE, SIZE, generator=g)


def fake_ws(model: nn.Module) -> SimpleNamespace:
    meta = SimpleNamespace(mean=MEAN, std=STD, multilabel=False)
    return SimpleNamespace(model=model, meta=meta, seed=3)


def make_batch(model: nn.Module, x: Tensor, index: Tensor | None = None) -> EvalBatch:
    with torch.no_grad():
        logits = model(x)
    index = torch.arange(len(x)) if index is None else index
    return EvalBatch(0, x, logits.argmax(1), logits, {"index": index})


def values(table: pd.DataFrame, metric: str) -> np.ndarray:
    return table[table.metric == metric].value.to_numpy()


# --------------------------------------------------------------------------- metrics
def test_trapezoid_auc_known_curves() -> None:
    assert trapezoid_auc(torch.linspace(1, 0, 11, dtype=F64)).item() == pytest.approx(0.5)
    assert trapezoid_auc(torch.full((2, 7), 0.3, dtype=F64)).tolist() == pytest.approx([0.3] * 2)
    y = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0], dtype=F64)  # (5 - 0.5 - 0) / 4 with sum 1
    assert trapezoid_auc(y).item() == pytest.approx(0.125)
    x = torch.tensor([0.001, 0.01, 0.03, 0.05, 0.1], dtype=F64)
    ref = np.trapezoid(np.square(x.numpy()), x.numpy()) / (0.1 - 0.001)
    assert trapezoid_auc(x.square(), x).item() == pytest.approx(ref)


def test_schedules() -> None:
    counts = step_counts(1024, 9)
    assert len(counts) == math.ceil(1024 / 9) + 1 == 115
    assert counts[0] == 0 and counts[1] == 9 and counts[-1] == 1024 and counts[-2] == 113 * 9
    assert step_counts(50176, 448).numel() == 113
    assert fraction_counts(64, [0.001, 0.1, 0.5]).tolist() == [1, 6, 32]
    assert fraction_counts(50176, [0.001, 0.1]).tolist() == [50, 5017]
    di = DeletionInsertion()
    assert di.step(224 * 224) == 448 and di.step(32 * 32) == 9
    assert DeletionInsertion(step_fraction=0.01).step(224 * 224) == 502
    assert DeletionInsertion(step_reference_size=None, step_pixels=5).step(1024) == 5
    with pytest.raises(ValueError, match="fill"):
        PixelPerturbation(fill="gray")
    with pytest.raises(ValueError, match="fractions"):
        PixelPerturbation(fractions=[0.0, 0.1])
    with pytest.raises(ValueError, match="blur"):
        DeletionInsertion(blur="box")


def test_fills() -> None:
    x = square_images(2)
    assert torch.allclose(fill_values(x, "image_mean", MEAN, STD)[:, :, 5, 6], x.mean((2, 3)))
    assert fill_values(x, "dataset_mean", MEAN, STD).abs().max() == 0
    black = fill_values(x, "zero", MEAN, STD)  # pixel value 0 after de-normalising
    std, mean = torch.tensor(STD, dtype=F64), torch.tensor(MEAN, dtype=F64)
    pixels = black * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    assert torch.allclose(pixels, torch.zeros(1, dtype=F64))
    const = torch.full((1, 3, 16, 16), 0.7, dtype=F64)
    assert torch.allclose(fill_values(const, "blur", MEAN, STD, 51, 50.0), const)
    rise = blur_image(const, 11, 5.0, "rise")  # zero padding: only the interior is unchanged
    assert torch.allclose(rise[..., 5:-5, 5:-5], const[..., 5:-5, 5:-5])
    assert rise[0, 0, 0, 0] < 0.7
    delta = np.zeros((11, 11))
    delta[5, 5] = 1.0
    k = rise_kernel1d(11, 5.0, dtype=F64).numpy()
    assert np.allclose(np.outer(k, k), gaussian_filter(delta, 5.0), atol=1e-12)  # RISE's gkern


# --------------------------------------------------------------------------- orders
def test_index_tie_break_is_numpy_order() -> None:
    s = torch.randint(0, 4, (3, 50)).double()  # many ties
    for descending in (True, False):
        order = pixel_order(s, descending, "index").numpy()
        ref = np.argsort(s.numpy(), axis=1, kind="stable")
        assert (order == (np.flip(ref, axis=1) if descending else ref)).all()


def test_random_tie_break() -> None:
    keys = torch.tensor([5, 9, 5])
    const = torch.zeros(3, 7, 7)
    order = pixel_order(const, True, "random", keys, seed=2)
    assert torch.equal(order, random_order(keys, 49, 2))
    assert torch.equal(order[0], order[2]) and not torch.equal(order[0], order[1])
    assert torch.equal(order.sort(1).values, torch.arange(49).expand(3, 49))  # permutations
    assert not torch.equal(order, pixel_order(const, True, "random", keys, seed=3))
    s = torch.randint(0, 3, (3, 7, 7)).float()
    full = pixel_order(s, False, "random", keys, seed=2)
    for i in range(3):  # per image == batched
        assert torch.equal(
            full[i], pixel_order(s[i : i + 1], False, "random", keys[i : i + 1], 2)[0]
        )
    ranked = s.flatten(1).gather(1, full)
    assert (ranked[:, 1:] >= ranked[:, :-1]).all()  # ascending values, ties in any order
    rank = order_rank(full)
    assert torch.equal(rank.gather(1, full), torch.arange(49).expand(3, 49))


# --------------------------------------------------------------------------- deletion/insertion
def test_deletion_insertion_oracle_known_answer() -> None:
    model, x = SquareModel(), square_images(4)
    batch, ws = make_batch(model, x), fake_ws(model)
    bench = DeletionInsertion(
        step_reference_size=None, step_pixels=1, blur="gcam", blur_kernel_size=51, blur_sigma=50
    )
    runs = {
        name: bench.score(ws, explainer, batch)  # type: ignore[arg-type]
        for name, explainer in (("oracle", oracle), ("noise", seeded_noise))
    }
    # oracle deletion: after k <= 9 square pixels s = (9 - k) / 9, then the square is gone
    k = torch.arange(65, dtype=F64)
    curve = torch.sigmoid(4 * (9 - k.clamp(max=9)) / 9)
    expected = trapezoid_auc(curve).item()
    assert values(runs["oracle"], "deletion_auc") == pytest.approx([expected] * 4, abs=1e-9)
    scores = runs["oracle"].query("metric == 'score' and curve == 'deletion' and index == 0")
    assert scores.value.to_numpy() == pytest.approx(curve.numpy(), abs=1e-9)
    assert len(scores) == 65 and scores.n_pixels.tolist() == list(range(65))
    oracle_del, noise_del = (values(runs[n], "deletion_auc") for n in ("oracle", "noise"))
    oracle_ins, noise_ins = (values(runs[n], "insertion_auc") for n in ("oracle", "noise"))
    assert (oracle_del < noise_del - 0.05).all() and (oracle_ins > noise_ins + 0.05).all()
    overall = values(runs["oracle"], "overall")
    assert overall == pytest.approx(oracle_ins - oracle_del)


def test_constant_maps_give_the_random_order_and_nonfinite_maps_nan() -> None:
    model, x = SquareModel(), square_images(3)
    batch, ws = make_batch(model, x, torch.tensor([4, 8, 15])), fake_ws(model)
    bench = DeletionInsertion(step_reference_size=None, step_pixels=3)
    perm = random_order(batch.sample["index"], SIZE * SIZE, ws.seed)
    ranked = torch.empty(3, SIZE * SIZE).scatter_(1, perm, torch.arange(64.0, 0, -1).expand(3, 64))

    def run_map(m: Tensor) -> pd.DataFrame:
        return bench.score(ws, lambda xx, t: m, batch)  # type: ignore[arg-type]

    random_rows = run_map(ranked.view(3, 1, SIZE, SIZE))
    const_rows = run_map(torch.full((3, 3, SIZE, SIZE), 0.25))
    nan_rows = run_map(torch.full((3, 1, SIZE, SIZE), math.nan))
    assert np.array_equal(const_rows.value.to_numpy(), random_rows.value.to_numpy())
    assert not const_rows.value.isna().any() and const_rows.map_nonfinite.eq(0).all()
    # a map with a NaN or an inf has no order: every row NaN, flagged, counted, never averaged
    partly = oracle(x, batch.target)
    partly[0, :, LO, LO] = math.nan
    partly[1, :, LO, LO] = math.inf
    partly_rows = run_map(partly)
    assert nan_rows.value.isna().all() and nan_rows.map_nonfinite.eq(1).all()
    bad = partly_rows["index"].isin([4, 8])  # the first two images
    assert partly_rows.value[bad].isna().all() and partly_rows.map_nonfinite[bad].eq(1).all()
    assert not partly_rows.value[~bad].isna().any() and partly_rows.map_nonfinite[~bad].eq(0).all()
    summary = bench.summarize(partly_rows.assign(method="partly"))
    assert summary["nonfinite_maps"] == {"partly": 2} and math.isnan(summary["partly/overall"])
    assert saliency_2d(partly, Postprocess([]))[:2].eq(-math.inf).all()  # sorts like a constant


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5),
    ).to(F64).eval()  # fmt: skip


def test_batched_equals_per_image_and_internal_batch_size() -> None:
    model, ws = small_cnn(), fake_ws(small_cnn())
    x = torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2), dtype=F64)
    full = make_batch(model, x, torch.tensor([3, 1, 4, 0]))
    maps = seeded_noise(x, full.target)
    keys = ["index", "curve", "metric", "step"]
    for bench in (
        DeletionInsertion(step_fraction=0.1, internal_batch_size=None, blur="rise"),
        PixelPerturbation(fractions=[0.05, 0.2], internal_batch_size=None, fill="blur"),
    ):
        whole = bench.score(ws, lambda xx, t: maps, full)  # type: ignore[arg-type]
        bench.internal_batch_size = 3  # chunked forward passes: the same numbers
        chunked = bench.score(ws, lambda xx, t: maps, full)  # type: ignore[arg-type]
        assert np.allclose(chunked.value, whole.value, atol=1e-12, rtol=0)
        parts = []
        for i in range(4):  # one image at a time, with the same map and key
            one = make_batch(model, x[i : i + 1], full.sample["index"][i : i + 1])
            m = maps[i : i + 1]
            parts.append(bench.score(ws, lambda xx, t, m=m: m, one))  # type: ignore[arg-type]
        single = pd.concat(parts)
        cols = [c for c in keys if c in whole] + (["fraction"] if "fraction" in whole else [])
        a = whole.sort_values(cols).value.to_numpy()
        b = single.sort_values(cols).value.to_numpy()
        assert len(a) == len(b) and np.allclose(a, b, atol=1e-12, rtol=0)


# --------------------------------------------------------------------------- pixel perturbation
def test_pixel_perturbation_oracle_known_answer() -> None:
    model, x = SquareModel(), square_images(4)
    batch, ws = make_batch(model, x), fake_ws(model)
    fractions = [0.02, 0.1, 0.5, 0.85]  # 1, 6, 32, 54 pixels: all fit outside the square
    least = PixelPerturbation(fractions=fractions, order="least_first")
    most = PixelPerturbation(fractions=fractions, order="most_first")
    lerf = least.score(ws, oracle, batch)  # type: ignore[arg-type]
    morf = most.score(ws, oracle, batch)  # type: ignore[arg-type]
    assert values(lerf, "output_change").max() == 0.0 and values(lerf, "auc").max() == 0.0
    # most important first: k square pixels to the image mean m_c -> change = k/9 (1 - mean m)
    k = np.minimum(fraction_counts(64, fractions).numpy(), 9)
    m = x.mean((2, 3)).mean(1).numpy()
    expected = (k[None, :] / 9) * (1 - m[:, None])
    assert values(morf, "output_change") == pytest.approx(expected.reshape(-1), abs=1e-12)
    assert (values(morf, "auc") > 0.1).all()
    # y = 0 makes |y' - y| / |y| undefined: NaN rows, counted in the summary
    zero = make_batch(model, torch.zeros(2, 3, SIZE, SIZE, dtype=F64))
    rows = least.score(ws, oracle, zero).assign(method="z")  # type: ignore[arg-type]
    assert rows.value.isna().all()
    assert least.summarize(rows)["undefined_rows"] == {"z": 8}


def test_tidy_table_lists_skipped_methods() -> None:
    methods = MethodSet([MethodSpec.create(n, {"_target_": "x"}) for n in ("gradient", "gradcam")])
    ctx = SimpleNamespace(identity={"experiment": "e", "model": "m"}, seed=0, methods=methods)
    rows = pd.DataFrame({"index": [1], "metric": ["auc"], "value": [0.5]})
    rows = rows.assign(**methods[0].identity)
    table = jobs_module.tidy_table(ctx, "bench", rows, {"gradcam": "needs a CNN"})  # type: ignore[arg-type]
    assert list(table.columns[:10]) == [
        "experiment", "model", "seed", "benchmark", "method", "method_config", "method_hash",
        "metric", "value", "index",
    ]  # fmt: skip
    skipped = table[table.method == "gradcam"].iloc[0]
    assert skipped.metric == "applicable" and skipped.value == 0 and skipped.note == "needs a CNN"
    assert skipped.method_hash == methods[1].hash and skipped.method_config == "gradcam"


# --------------------------------------------------------------------------- end to end
TINY = (
    "model.weights=random", "model.net.widths=[4,8,8]", "dataset.datamodule.n_test=16",
    "benchmark.n_images=4", "benchmark.batch_size=2", "benchmark.methods=[gradient,gradcam,random]",
)  # fmt: skip
EXTRA = {"pixel_perturbation": (), "deletion_insertion": ("benchmark.step_fraction=0.1",)}
# where each benchmark's forward passes are looked up (both score through the functional API)
MODULES = {
    "pixel_perturbation": "xai_bench.metrics.functional",
    "deletion_insertion": "xai_bench.metrics.functional",
}


@pytest.mark.parametrize("name", ["pixel_perturbation", "deletion_insertion"])
def test_end_to_end_run_cache_and_resume(name, make_cfg, tmp_path, monkeypatch) -> None:
    cfg = make_cfg(f"benchmark={name}", *TINY, *EXTRA[name])
    out = run(cfg, tmp_path / "full")
    assert out["cached"] is False and out["n_images"] == 4
    table = pd.read_csv(tmp_path / "full" / "results.csv")
    assert set(table.method) == {"gradient", "gradcam", "random"}
    assert set(table.benchmark) == {name} and set(table.dataset) == {"shapes"}
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert (tmp_path / "full" / f"{name}.png").stat().st_size > 5_000
    assert all(math.isfinite(v) for k, v in summary.items() if "/" in k)
    assert run(cfg, tmp_path / "full")["cached"] is True

    module = importlib.import_module(MODULES[name])
    stores, calls = [], {"n": 0}
    real_store = engine_module.chunk_store
    real_scores = module.perturbation_scores

    def store(*args, **kwargs):
        stores.append(real_store(*args, **kwargs))
        return stores[-1]

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > (4 if name == "deletion_insertion" else 2):
            raise KeyboardInterrupt("interrupted")
        return real_scores(*args, **kwargs)

    monkeypatch.setattr(engine_module, "chunk_store", store)
    monkeypatch.setattr(module, "perturbation_scores", failing)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "resumed")
    assert len(stores[0].computed) == 3 and not (tmp_path / "resumed" / "summary.json").exists()
    monkeypatch.setattr(module, "perturbation_scores", real_scores)
    again = run(cfg, tmp_path / "resumed")
    assert len(stores[1].loaded) == 2 and len(stores[1].computed) == 4  # 2 batches x 3 methods
    resumed = pd.read_csv(tmp_path / "resumed" / "results.csv")
    pd.testing.assert_frame_equal(resumed, table)
    assert (again["chunks_loaded"], again["chunks_computed"]) == (2, 4)
    engine_keys = ("run_dir", "figures", "cached", "chunks_loaded", "chunks_computed")
    assert {k: v for k, v in again.items() if k not in engine_keys} == {
        k: v for k, v in out.items() if k not in engine_keys
    }
