"""Windows and kernels defined at 224 px scale with the input (``auto``); numbers stay pixels."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from xai_bench.benchmarks.class_sensitivity import ClassSensitivity
from xai_bench.benchmarks.deletion_insertion import DeletionInsertion
from xai_bench.benchmarks.sanity_checks import SanityChecks
from xai_bench.utils.resolution import (
    float_option,
    px_option,
    resolve_blur,
    scale_px,
    scale_sigma,
)


def meta(side: int) -> SimpleNamespace:
    return SimpleNamespace(
        meta=SimpleNamespace(input_size=[3, side, side], name="m", blocks=["fc"], num_classes=8)
    )


def test_scaling_rules() -> None:
    assert scale_px(16, 224) == 16 and scale_px(16, 448) == 32 and scale_px(16, 32) == 2
    assert scale_px(16, 8, minimum=2) == 2  # never below the minimum
    assert scale_px(51, 32, odd=True) == 7 and scale_px(11, 32, minimum=3, odd=True) == 3
    assert scale_px(51, 64, odd=True) == 15  # 14.6 -> 15, odd
    assert scale_sigma(50, 32) == pytest.approx(50 * 32 / 224)
    assert scale_sigma(1.5, 32, minimum=0.5) == 0.5
    assert resolve_blur("auto", "auto", (51, 50.0), 224) == (51, 50.0)
    assert resolve_blur(9, "auto", (51, 50.0), 32) == (9, pytest.approx(50 * 32 / 224))
    assert px_option("auto", "x") == "auto" and px_option(None, "x") == "auto"
    assert px_option(8, "x") == 8 and float_option(2.5, "x") == 2.5
    for bad in (0, -1, 2.5, "big", True):
        with pytest.raises(ValueError, match="must be 'auto' or an integer"):
            px_option(bad, "hog_cell")
    with pytest.raises(ValueError, match="must be 'auto' or a number > 0"):
        float_option(0, "tolerance")


@pytest.mark.parametrize(("side", "cell", "sigma"), [(224, 16, 1.5), (32, 2, 0.5), (64, 5, 0.5)])
def test_sanity_and_class_sensitivity_resolve_auto_for_the_input(side, cell, sigma) -> None:
    sanity = SanityChecks()
    sanity.check(meta(side))  # type: ignore[arg-type]
    assert (sanity.cell_px, sanity.sigma_px) == (cell, pytest.approx(sigma))
    sens = ClassSensitivity()
    sens.check(meta(side))  # type: ignore[arg-type]
    assert sens.cell_px == cell
    fixed = SanityChecks(hog_cell=8, ssim_sigma=1.5)  # numbers are pixels, never rescaled
    fixed.check(meta(side))  # type: ignore[arg-type]
    assert (fixed.cell_px, fixed.sigma_px) == (8, 1.5)
    assert "cell_px" in sanity.params()  # the resolved size keys the chunks


def test_pointing_tolerance_and_deletion_blur_scale() -> None:
    from xai_bench.benchmarks.pointing_game import PointingGame

    assert PointingGame().tolerance == 15.0  # at 224 px until a model's input is known
    assert PointingGame(tolerance=6).tolerance == 6.0
    assert DeletionInsertion().blur(224) == (51, 50.0, "gcam")
    k, sigma, _ = DeletionInsertion().blur(32)
    assert (k, sigma) == (7, pytest.approx(50 * 32 / 224))
    assert DeletionInsertion(blur="rise").blur(32) == (3, pytest.approx(5 * 32 / 224), "rise")
    assert DeletionInsertion(blur_kernel_size=51, blur_sigma=50).blur(32) == (51, 50.0, "gcam")


def test_pointing_tolerance_resolves_from_the_model_input(make_cfg, tmp_path) -> None:
    from xai_bench.run import run

    args = (
        "model.weights=random", "model.net.widths=[4,8,8]", "dataset=shapes_multi",
        "dataset.image_size=64", "dataset.datamodule.n_test=8", "benchmark=pointing_game",
        "benchmark.n_images=4", "benchmark.methods=[random]",
    )  # fmt: skip
    out = run(make_cfg(*args), tmp_path / "auto")
    fixed = run(make_cfg(*args, "benchmark.tolerance=15"), tmp_path / "fixed")
    assert out["tolerance"] == pytest.approx(15 * 64 / 224) and fixed["tolerance"] == 15.0


def test_method_blurs_scale_with_the_input() -> None:
    import torch

    from xai_bench.methods.groupcam import GroupCAM
    from xai_bench.methods.integrated_gradients import IntegratedGradients

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
    small, paper = torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 224, 224)
    ig = IntegratedGradients(net, baseline="blur")
    assert ig.blur(paper) == (51, 50.0)
    assert ig.blur(small) == (7, pytest.approx(50 * 32 / 224))
    cam = GroupCAM(net, layer="0")
    assert cam.blur(small) == ig.blur(small) and cam.blur(paper) == (51, 50.0)
    assert GroupCAM(net, layer="0", blur_kernel=11, blur_sigma=5).blur(small) == (11, 5.0)
