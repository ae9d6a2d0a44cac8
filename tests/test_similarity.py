"""Map similarity: Spearman, SSIM and HOG against SciPy / scikit-image, views, constant maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import rankdata as sp_rankdata
from scipy.stats import spearmanr
from skimage.feature import hog as sk_hog
from skimage.metrics import structural_similarity

from xai_bench.metrics import similarity as sim


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_rankdata_averages_ties_like_scipy() -> None:
    x = torch.randint(0, 6, (5, 40), generator=_gen()).double()
    ref = np.stack([sp_rankdata(r) for r in x.numpy()])
    assert np.array_equal(sim.rankdata(x).numpy(), ref)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_spearman_matches_scipy(dtype: torch.dtype, tol: float) -> None:
    g = _gen(1)
    a = torch.randn(6, 2, 9, 7, generator=g, dtype=torch.float64)
    b = 0.5 * a + torch.randn(6, 2, 9, 7, generator=g, dtype=torch.float64)
    b[:3] = b[:3].round()  # many ties on half of the batch
    a, b = a.to(dtype), b.to(dtype)
    ref = [spearmanr(x.ravel(), y.ravel())[0] for x, y in zip(a.numpy(), b.numpy())]
    assert np.allclose(sim.spearman(a, b).numpy(), ref, atol=tol, rtol=0)


def test_spearman_known_answers_and_constant_maps() -> None:
    x = torch.rand(4, 1, 16, 16, generator=_gen(2))
    assert torch.allclose(sim.spearman(x, x), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(sim.spearman(x, -x), -torch.ones(4, dtype=torch.float64))
    assert torch.allclose(sim.spearman(x, 3 * x**3 + 1), torch.ones(4, dtype=torch.float64))
    # independent maps: |rho| ~ 1/sqrt(N) = 0.018 for N = 3072
    noise = torch.rand(8, 3, 32, 32, generator=_gen(3)), torch.rand(8, 3, 32, 32, generator=_gen(4))
    assert sim.spearman(*noise).abs().max() < 0.1
    const, zero = torch.full((1, 1, 4, 4), 2.0), torch.zeros(1, 1, 4, 4)
    ramp = torch.arange(16.0).view(1, 1, 4, 4)
    assert sim.spearman(const, zero).item() == 1.0  # both constant: identical (tied) rankings
    assert sim.spearman(const, ramp).item() == 0.0  # one constant: no order information
    assert math.isnan(sim.spearman(const, ramp, defined=False).item())  # SciPy's convention
    assert math.isnan(sim.spearman(const, zero, defined=False).item())
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    rho, s = sim.spearman(bad, x), sim.ssim(bad, x)
    assert math.isnan(rho[0]) and math.isnan(s[0]) and rho[1:].eq(1).all() and s[1:].gt(0.99).all()
    with pytest.raises(ValueError, match="shapes differ"):
        sim.spearman(ramp, ramp.view(1, 1, 2, 8))


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_skimage(channels: int) -> None:
    g = _gen(5)
    a = torch.rand(3, channels, 28, 35, generator=g, dtype=torch.float64)
    b = (a + 0.3 * torch.rand(3, channels, 28, 35, generator=g, dtype=torch.float64)) / 1.3
    ref = [
        structural_similarity(x, y, gaussian_weights=True, sigma=1.5, data_range=1, channel_axis=0)
        for x, y in zip(a.numpy(), b.numpy())
    ]
    assert np.allclose(sim.ssim(a, b).numpy(), ref, atol=1e-10, rtol=0)
    assert np.allclose(sim.ssim(a.float(), b.float()).numpy(), ref, atol=1e-5, rtol=0)
    ref2 = [
        structural_similarity(x, y, gaussian_weights=True, data_range=2, channel_axis=0)
        for x, y in zip(a.numpy(), b.numpy())
    ]
    assert np.allclose(sim.ssim(a, b, data_range=2).numpy(), ref2, atol=1e-10, rtol=0)


def test_ssim_known_answers() -> None:
    x = torch.rand(2, 1, 32, 32, generator=_gen(6))
    assert torch.allclose(sim.ssim(x, x), torch.ones(2, dtype=torch.float64), atol=1e-6)
    y = torch.rand(2, 1, 32, 32, generator=_gen(7))
    assert sim.ssim(x, y).abs().max() < 0.1  # independent noise
    zeros = torch.zeros(1, 1, 16, 16)
    assert sim.ssim(zeros, zeros).item() == pytest.approx(1.0)  # constant maps stay finite
    with pytest.raises(ValueError, match="at least 11x11"):
        sim.ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize("channels, cell, size", [(1, 8, (32, 32)), (1, 16, (48, 64)),
                                                  (3, 8, (40, 33)), (3, 16, (64, 48))])  # fmt: skip
def test_hog_matches_skimage(channels: int, cell: int, size: tuple[int, int]) -> None:
    x = torch.rand(3, channels, *size, generator=_gen(8))
    x[0] = x[0].round()  # integer maps: gradients at exactly 0/45/90 degrees (bin edges)
    ref = np.stack(
        [
            sk_hog(
                im[0] if channels == 1 else im,
                pixels_per_cell=(cell, cell),
                channel_axis=None if channels == 1 else 0,
            )
            for im in x.numpy()
        ]
    )
    out = sim.hog(x, cell)
    assert out.shape == ref.shape
    assert np.allclose(out.numpy(), ref, atol=1e-6, rtol=0)  # skimage: float32 gradients
    rho = [spearmanr(r, r[::-1])[0] for r in ref]
    assert np.allclose(sim.spearman(out, out.flip(1)).numpy(), rho, atol=1e-6)


def test_hog_spearman_and_errors() -> None:
    x = torch.rand(4, 1, 32, 32, generator=_gen(9))
    y = torch.rand(4, 1, 32, 32, generator=_gen(10))
    assert torch.allclose(sim.hog_spearman(x, x, 8), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(sim.hog_spearman(x, -x, 8), torch.ones(4, dtype=torch.float64))
    assert sim.hog_spearman(x, y, 8).mean().abs() < 0.1  # independent noise
    ref = [
        spearmanr(sk_hog(a[0], pixels_per_cell=(8, 8)), sk_hog(b[0], pixels_per_cell=(8, 8)))[0]
        for a, b in zip(x.numpy(), y.numpy())
    ]
    assert np.allclose(sim.hog_spearman(x, y, 8).numpy(), ref, atol=1e-6)
    zeros = torch.zeros(1, 1, 32, 32)
    assert sim.hog(zeros, 8).abs().max() == 0  # no gradients: an all-zero (constant) vector
    assert sim.hog_spearman(zeros, x[:1], 8).item() == 0.0
    with pytest.raises(ValueError, match="too small for HOG"):
        sim.hog(x, 16)  # 32 px = 2 cells < one 3x3-cell block


def test_views() -> None:
    attr = torch.randn(3, 3, 20, 20, generator=_gen(11))
    a, d, m = sim.abs_view(attr), sim.diverging_view(attr), sim.maxabs_view(attr)
    assert a.shape == d.shape == m.shape == (3, 1, 20, 20)
    assert a.min() >= 0 and a.max() == 1 and (a == 1).flatten(1).sum(1).min() >= 4  # top 1%
    total = attr.abs().sum(1, keepdim=True)
    p99 = torch.quantile(total.flatten(1), 0.99, dim=1).view(-1, 1, 1, 1)
    assert torch.allclose(a, (total / p99).clamp(max=1))
    signed = attr.sum(1, keepdim=True)
    q = torch.quantile(signed.abs().flatten(1), 0.99, dim=1).view(-1, 1, 1, 1)
    assert torch.allclose(d, (signed / q).clamp(-1, 1))
    assert torch.allclose(m.abs().flatten(1).amax(1), torch.ones(3))
    assert torch.equal(torch.sign(m), torch.sign(sim.channel_max_abs(attr)))
    # per-sample: a sample's view does not depend on the rest of the batch
    assert torch.allclose(sim.abs_view(attr[1:2]), a[1:2])
    assert torch.equal(sim.abs_view(torch.zeros(1, 3, 5, 5)), torch.zeros(1, 1, 5, 5))
