"""Input invariance (UNREL): the shifted twin, the crafted shift and the benchmark."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from xai_bench.benchmarks.input_invariance import InputInvariance
from xai_bench.methods.base import input_gradient
from xai_bench.metrics.invariance import compare_maps, pearson
from xai_bench.models.shift import (
    check_twin,
    checkerboard_shift,
    constant_shift,
    crafted_shift,
    first_layer,
    shifted_twin,
)
from xai_bench.models.small import MLP
from xai_bench.run import run
from xai_bench.utils.errors import UserInputError
from xai_bench.workspace import Workspace

SMALL = (
    "benchmark=input_invariance", "model=mlp", "dataset=digits", "model.weights=random",
    "model.net.hidden=[48,48]", "benchmark.n_images=8", "benchmark.batch_size=8",
    "benchmark.n_figure=1", "dataset.datamodule.limit=300",
)  # fmt: skip
METHODS = (
    "benchmark.methods=[gradient,input_x_gradient,integrated_gradients_black,pattern_attribution,"
    "smoothgrad]"
)


@pytest.fixture
def one_thread():
    """One intra-op thread: torch's CPU ``index_add_`` (IG, SmoothGrad) takes ~60 ms per call
    instead of ~25 us with two threads on a busy 2-core machine; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MLP(in_features=3 * 8 * 8, hidden=(32, 32), num_classes=5).double().eval()


def test_twin_has_identical_logits_for_random_shifts() -> None:
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(16, 3, 8, 8, generator=gen, dtype=torch.float64)
    for scale in (0.1, 1.0, 10.0):
        m2 = scale * torch.randn(3, 8, 8, generator=gen, dtype=torch.float64)
        twin = shifted_twin(model, m2)
        assert check_twin(model, twin, x, m2, tolerance=1e-10) < 1e-9
        # the gradient is the same function of the original input: invariant for any weights
        t = torch.randint(0, 5, (16,), generator=gen)
        g1 = input_gradient(model, x, t)[0]
        g2 = input_gradient(twin, x + m2, t)[0]
        assert torch.allclose(g1, g2, rtol=0, atol=1e-12)
        assert not torch.allclose(twin.fc0.bias, model.fc0.bias)
    for k, v in model.state_dict().items():  # the original is never changed
        assert torch.equal(v, before[k])
    # a wrong sign of the bias correction is detected
    wrong = shifted_twin(model, -m2)
    with pytest.raises(RuntimeError, match="not equivalent"):
        check_twin(model, wrong, x, m2, tolerance=1e-6)


def test_float32_twin_within_stated_tolerance() -> None:
    model = _mlp().float()
    x = torch.rand(32, 3, 8, 8)
    m2 = constant_shift((3, 8, 8), -1.0)
    assert check_twin(model, shifted_twin(model, m2), x, m2, tolerance=1e-4) < 1e-4


def test_conv_first_layer_supported_only_without_padding() -> None:
    torch.manual_seed(0)
    ok = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 5)).double()
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    m2 = constant_shift((3, 8, 8), -1.0).double()
    assert check_twin(ok, shifted_twin(ok, m2), x, m2, 1e-10) < 1e-9
    with pytest.raises(ValueError, match="varies over positions"):
        shifted_twin(ok, checkerboard_shift((3, 8, 8)).double())  # not spatially constant
    padded = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.Flatten()).double()
    with pytest.raises(ValueError, match="varies over positions"):
        shifted_twin(padded, m2)


def test_refuses_first_layers_that_cannot_absorb_the_shift() -> None:
    bn_first = nn.Sequential(nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(192, 5)).eval()
    with pytest.raises(ValueError, match="BatchNorm2d"):
        first_layer(bn_first, (3, 8, 8))

    class Normalising(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(192, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc((x.flatten(1) - 0.5) / 0.25)

    with pytest.raises(ValueError, match="raw input"):
        first_layer(Normalising(), (3, 8, 8))


def test_shift_patterns() -> None:
    board = checkerboard_shift((1, 28, 28), cells=4, values=(-1.0, 0.0))
    assert board.shape == (1, 28, 28) and set(board.unique().tolist()) == {-1.0, 0.0}
    assert board[0, 0, 0] == -1.0 and board[0, 0, 7] == 0.0 and board[0, 7, 7] == -1.0
    assert (board == -1).float().mean() == 0.5
    assert torch.equal(constant_shift((2, 3, 3), -1.0), -torch.ones(2, 3, 3))


def test_crafted_shift_makes_gradient_x_input_show_the_target() -> None:
    model = _mlp(3)
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 8, 8, generator=gen, dtype=torch.float64)
    t = torch.tensor([1])
    grad = input_gradient(model, x, t)[0][0]
    s_hat = torch.zeros(3, 8, 8, dtype=torch.float64)
    s_hat[:, 2:6, 3:5] = 0.3 * grad.abs().max()  # a bar
    clipped, raw = crafted_shift(grad, x[0], s_hat, clip=0.3)
    assert clipped.abs().max() <= 0.3 and raw.abs().max() > 0.3
    gi = {}
    for name, m2 in (("raw", raw), ("clipped", clipped)):
        twin = shifted_twin(model, m2)
        gi[name] = (x + m2) * input_gradient(twin, x + m2, t)[0]
    assert pearson(gi["raw"], s_hat) > 0.999  # exactly s_hat before clipping
    assert pearson(x * grad, s_hat) < 0.5
    assert pearson(gi["clipped"], s_hat) > pearson(x * grad, s_hat)
    # zero-gradient guard: no shift where the gradient vanishes
    g0 = grad.clone()
    g0[:, 0, 0] = 0
    assert crafted_shift(g0, x[0], s_hat)[1][:, 0, 0].eq(0).all()


def test_compare_maps_zero_and_nonfinite() -> None:
    a = torch.zeros(4, 1, 3, 3)
    b = torch.zeros(4, 1, 3, 3)
    a[1] = 2.0
    b[1] = 2.0 + 1e-3
    b[2] = 1.0  # original zero, twin not: infinitely different
    a[3, 0, 0, 0] = math.nan
    diff, rel = compare_maps(a, b)
    assert diff[0] == 0 and rel[0] == 0
    assert float(rel[1]) == pytest.approx(5e-4, rel=1e-4)
    assert math.isinf(rel[2])
    assert math.isnan(diff[3]) and math.isnan(rel[3])
    assert math.isnan(pearson(torch.ones(5), torch.arange(5.0)))


def test_benchmark_known_answers_figures_cache_and_resume(
    make_cfg, tmp_path, monkeypatch, one_thread
) -> None:
    cfg = make_cfg(*SMALL, METHODS)
    out = run(cfg, tmp_path / "a")
    table = pd.read_csv(tmp_path / "a" / "results.csv")
    inv = table[table.metric == "invariant"].set_index(["method", "shift"]).value
    # UNREL: gradient and PatternAttribution invariant to every shift, gradient x input to none,
    # IG with the (shifted) data minimum as baseline to the constant shift only.
    for shift in ("constant", "checkerboard", "crafted"):
        assert inv["gradient", shift] == 1 and inv["pattern_attribution", shift] == 1
        assert inv["input_x_gradient", shift] == 0
        assert inv["smoothgrad", shift] == 1  # same noise, same absolute noise level
    assert inv["integrated_gradients_black", "constant"] == 1
    assert inv["integrated_gradients_black", "checkerboard"] == 0
    assert inv["integrated_gradients_black", "crafted"] == 0
    rel = table[table.metric == "rel_diff"].set_index(["method", "shift"]).value
    assert rel["gradient", "constant"] < 1e-10 and rel["input_x_gradient", "constant"] > 0.1
    model_rows = table[table.method == "model"].set_index(["metric", "shift"]).value
    assert (model_rows["logit_max_abs_diff"] < 1e-9).all()
    assert (model_rows["accuracy_original"] == model_rows["accuracy_twin"]).all()
    pear = table[table.metric.str.startswith("pearson")].set_index("metric").value
    assert pear["pearson_target_unclipped"] > 0.999
    assert out["invariant/constant"] == [
        "gradient", "integrated_gradients_black", "pattern_attribution", "smoothgrad"
    ]  # fmt: skip
    assert out["not_applicable"] == [] and out["nonfinite"] == {}
    assert len(out["figures"]) == 4
    assert all((tmp_path / "a" / f).is_file() for f in ("summary.json", "results.csv"))
    assert all(pd.io.common.file_exists(f) for f in out["figures"])
    assert run(cfg, tmp_path / "a")["cached"] is True

    # interrupted after 3 (method, shift) chunks: the rerun computes only the rest
    calls = {"n": 0}
    original = InputInvariance._compare

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(InputInvariance, "_compare", failing)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "b")
    monkeypatch.setattr(InputInvariance, "_compare", original)
    counted = {"n": 0}

    def counting(self, *args, **kwargs):
        counted["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(InputInvariance, "_compare", counting)
    resumed = run(cfg, tmp_path / "b")
    assert resumed["cached"] is False and counted["n"] == 5 * 3 - 3
    again = pd.read_csv(tmp_path / "b" / "results.csv")
    pd.testing.assert_frame_equal(again, table)


def test_benchmark_refuses_convolutional_first_layer_with_padding(make_cfg, tmp_path) -> None:
    cfg = make_cfg(
        "benchmark=input_invariance", "model=resnet8", "dataset=shapes", "model.weights=random",
        "model.net.widths=[4,8,8]", "dataset.datamodule.n_train=16", "dataset.datamodule.n_val=8",
        "dataset.datamodule.n_test=8", "benchmark.n_images=4", "benchmark.batch_size=4",
        "benchmark.methods=[gradient]", "benchmark.shifts=[constant]", "benchmark.n_figure=1",
    )  # fmt: skip
    with pytest.raises(ValueError, match="varies over positions"):
        run(cfg, tmp_path / "r")
    with pytest.raises(ValueError, match="shift must be one of"):
        InputInvariance(shifts=["sideways"])
    assert Workspace(cfg, tmp_path).meta.convolutional


def test_float32_and_per_image_noise_level(make_cfg, tmp_path, one_thread) -> None:
    """float32 with its 1e-3 tolerance keeps the exact answers; SmoothGrad with the config's
    per-image noise level (``noise=config``) breaks on the checkerboard, whose shifted inputs
    have twice the value range, and only there."""
    cfg = make_cfg(
        *SMALL, "benchmark.methods=[gradient,pattern_net,smoothgrad]", "benchmark.dtype=float32",
        "benchmark.noise=config", "benchmark.shifts=[constant,checkerboard]",
    )  # fmt: skip
    out = run(cfg, tmp_path / "f32")
    assert out["tolerance"] == 1e-3 and out["dtype"] == "float32"
    assert out["invariant/constant"] == ["gradient", "pattern_net", "smoothgrad"]
    assert out["invariant/checkerboard"] == ["gradient", "pattern_net"]
    assert out["not_invariant/checkerboard"] == ["smoothgrad"]
    assert out["logit_max_abs_diff/checkerboard"] < 1e-4


def test_labelled_specs_and_smoothgrad_over_by_label(make_cfg, tmp_path, one_thread) -> None:
    """Rows carry each spec's label, config and hash; `smoothgrad_over` wraps a method of the
    run (by label) in the run's smoothgrad noise tunnel, labelled `<tunnel>(<method>)`."""
    methods = (
        "benchmark.methods=[{name:gradient,label:grad_a},{name:input_x_gradient,label:ixg},"
        "{name:smoothgrad,label:sg,n_samples:4}]"
    )
    args = (
        *SMALL,
        methods,
        "benchmark.smoothgrad_over=[grad_a,ixg]",
        "benchmark.shifts=[constant]",
    )
    out = run(make_cfg(*args), tmp_path / "r")
    table = pd.read_csv(tmp_path / "r" / "results.csv")
    inv = table[table.metric == "invariant"].set_index("method")
    assert list(inv.index) == ["grad_a", "ixg", "sg", "sg(grad_a)", "sg(ixg)"]
    assert (
        list(inv.method_config)
        == ["gradient", "input_x_gradient", "smoothgrad"] + ["smoothgrad"] * 2
    )
    # the hash is the config's: smoothgrad over gradient is the `sg` config itself
    assert inv.method_hash.nunique() == 4
    assert inv.method_hash["sg(grad_a)"] == inv.method_hash["sg"]
    assert out["invariant/constant"] == ["grad_a", "sg", "sg(grad_a)"]
    assert out["not_invariant/constant"] == ["ixg", "sg(ixg)"]
    assert out["headline"] == {"invariant": True, "rel_diff": False}
    assert out["chunks_computed"] == 1 + 5 and out["skipped"] == {}
    # a label that is not a method of the run, or no smoothgrad to take the tunnel from
    for extra, match in (
        ("benchmark.smoothgrad_over=[nope]", "smoothgrad_over lists 'nope'"),
        ("benchmark.methods=[gradient]", "needs a `smoothgrad` entry"),
    ):
        cfg = make_cfg(*args, extra)
        with pytest.raises(UserInputError, match=match) as err:
            run(cfg, tmp_path / "bad")
        assert "\n" not in str(err.value)
