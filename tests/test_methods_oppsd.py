"""OPPSD against a brute-force construction from finite-difference gradients, its criteria, its
scale invariance (no underflow to a constant map) and its input-size-dependent window."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xai_bench.methods.gradient import Gradient
from xai_bench.methods.hooks import hooks_left
from xai_bench.methods.oppsd import (
    OPPSD,
    auto_window,
    criterion_map,
    min_eigenvalue,
    structure_tensor,
)


def tiny_net(channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1), nn.Softplus(), nn.Conv2d(4, 4, 3, padding=1),
        nn.Softplus(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5),
    ).double()  # fmt: skip


def fd_gradient(net: nn.Module, x: torch.Tensor, target: int, h: float = 1e-6) -> np.ndarray:
    """Central finite differences of the target logit, one pixel and channel at a time."""
    grad = np.zeros(x.shape[1:])
    with torch.no_grad():
        for idx in np.ndindex(*x.shape[1:]):
            up, down = x.clone(), x.clone()
            up[(0, *idx)] += h
            down[(0, *idx)] -= h
            grad[idx] = (net(up)[0, target] - net(down)[0, target]).item() / (2 * h)
    return grad


def brute_force_J(grad: np.ndarray, k: int) -> np.ndarray:
    """J[y, x] = sum over the k x k window (zero padded) of g g^T: [H, W, C, C]."""
    c, h, w = grad.shape
    r = k // 2
    J = np.zeros((h, w, c, c))
    for y in range(h):
        for x in range(w):
            for yy in range(max(0, y - r), min(h, y + r + 1)):
                for xx in range(max(0, x - r), min(w, x + r + 1)):
                    g = grad[:, yy, xx]
                    J[y, x] += np.outer(g, g)
    return J


@pytest.mark.parametrize("channels", [1, 3])
def test_oppsd_matches_brute_force(channels: int) -> None:
    """The paper's criteria of the brute-force ``J``, divided by the image's mean trace ``s``
    (OPPSD's scale normalisation: a positive factor per image), with Noble's eps relative to
    ``s`` (``det(J) / (trace(J) + 1e-6 s)``) instead of the paper's absolute 1e-6, which made
    the map underflow to 0 for small gradients (see test_oppsd_is_scale_invariant)."""
    net = tiny_net(channels)
    torch.manual_seed(1)
    x = torch.randn(1, channels, 9, 9, dtype=torch.float64)
    g = fd_gradient(net, x, target=2)
    J = brute_force_J(g, k=7)
    s = np.trace(J, axis1=2, axis2=3).mean()
    eig = np.linalg.eigvalsh(J)
    expected = {
        "noble": np.clip(np.linalg.det(J) / (np.trace(J, axis1=2, axis2=3) + 1e-6 * s), 0, None)
        / s ** (channels - 1),
        "frobenius": np.sqrt((J**2).sum((2, 3))) / s,
        "min_eigenvalue": np.clip(eig[..., 0], 0, None) / s,
    }
    for criterion, ref in expected.items():
        out = OPPSD(net, criterion=criterion, window=7)(x, 2)
        assert out.shape == (1, 1, 9, 9)
        scale = np.abs(ref).max()
        assert np.allclose(out[0, 0].double().numpy(), ref, atol=1e-5 * scale + 1e-12, rtol=1e-4)


def test_structure_tensor_and_criteria_against_eigendecomposition() -> None:
    torch.manual_seed(0)
    grad = torch.randn(2, 3, 11, 13, dtype=torch.float64)
    J = structure_tensor(grad, 7)  # [B, 3, 3, H, W]
    mats = J.permute(0, 3, 4, 1, 2)
    eig = torch.linalg.eigvalsh(mats)  # ascending
    assert torch.allclose(min_eigenvalue(J), eig[..., 0], atol=1e-9 * eig.abs().max())
    noble = criterion_map(J, "noble", eps=1e-6)
    assert torch.allclose(noble, (eig.prod(-1) / (eig.sum(-1) + 1e-6)).clamp_min(0), rtol=1e-8)
    frob = criterion_map(J, "frobenius")
    assert torch.allclose(frob, eig.pow(2).sum(-1).sqrt(), rtol=1e-10)


def test_min_eigenvalue_degenerate_cases() -> None:
    eye = torch.eye(3, dtype=torch.float64).view(1, 3, 3, 1, 1) * 2.5
    assert torch.allclose(min_eigenvalue(eye), torch.full((1, 1, 1), 2.5, dtype=torch.float64))
    rank1 = structure_tensor(torch.tensor([[[[1.0]], [[2.0]], [[3.0]]]], dtype=torch.float64), 1)
    assert min_eigenvalue(rank1).abs().max() < 1e-12
    two = torch.tensor([[4.0, 1.0], [1.0, 2.0]], dtype=torch.float64).view(1, 2, 2, 1, 1)
    assert torch.allclose(
        min_eigenvalue(two)[0, 0, 0], torch.tensor(3 - 2**0.5, dtype=torch.float64)
    )


def test_patch_ablation_is_window_summed_signed_gradient() -> None:
    net = tiny_net(3)
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    grad = Gradient(net)(x.float().double(), torch.tensor([0, 4])).double()
    out = OPPSD(net, component="patch", window=3)(x, torch.tensor([0, 4]))
    g = grad.sum(1)
    ref = torch.zeros_like(g)
    padded = torch.nn.functional.pad(g, (1, 1, 1, 1))
    for dy in range(3):
        for dx in range(3):
            ref += padded[:, dy : dy + 9, dx : dx + 9]
    assert torch.allclose(out[:, 0].double(), ref, rtol=1e-5, atol=1e-8)


def test_batched_equals_per_sample_and_model_untouched() -> None:
    net = tiny_net(3).float()
    net.train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(4, 3, 9, 9)
    targets = torch.tensor([0, 3, 1, 4])
    explainer = OPPSD(net, criterion="min_eigenvalue")
    batch = explainer(x, targets)
    singles = torch.cat([explainer(x[i : i + 1], targets[i : i + 1]) for i in range(4)])
    assert torch.allclose(batch, singles, rtol=1e-5, atol=1e-12)
    assert net.training and hooks_left(net) == 0
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


def test_unknown_criterion_is_refused() -> None:
    with pytest.raises(ValueError, match="criterion"):
        OPPSD(tiny_net(), criterion="harris")


class Scale(nn.Module):
    """Multiplies its input (the logits) by a constant."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.c


@pytest.mark.parametrize("criterion", ["noble", "frobenius", "min_eigenvalue"])
def test_oppsd_is_scale_invariant(criterion: str) -> None:
    """Logits x c, c in [1e-8, 1e8]: the same float32 map (OPPSD divides J by the image's mean
    trace), never the constant 0 that a fixed 1e-6 in Noble's denominator gave at c = 1e-8
    (input gradients ~1e-10, as after cascading randomisation: det / 1e-6 underflows)."""
    net = tiny_net(3).float()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0, 3])
    ref = OPPSD(net, criterion=criterion)(x, t)
    assert (ref.flatten(1).std(1) > 0).all()
    for c in (1e-8, 1e-4, 1e4, 1e8):
        out = OPPSD(nn.Sequential(net, Scale(c)), criterion=criterion)(x, t)
        assert (out.flatten(1).std(1) > 0).all(), f"constant map at c={c}"
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-6 * float(ref.max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_corner_only_is_zero_with_several_channels(dtype: torch.dtype) -> None:
    """A 1x1 window gives J = g g^T (rank one): Noble is 0 by definition for C >= 2, in both
    dtypes, not float64 rounding noise of det(J) that would rank pixels at random."""
    net = tiny_net(3).to(dtype)
    x = torch.randn(2, 3, 9, 9, dtype=dtype, generator=torch.Generator().manual_seed(4))
    out = OPPSD(net, window=1)(x, torch.tensor([1, 2]))
    assert torch.equal(out, torch.zeros_like(out))
    one = OPPSD(tiny_net(1).to(dtype), window=1)(x[:, :1], torch.tensor([1, 2]))
    assert (one.flatten(1).std(1) > 0).all()  # C = 1: Noble = g^4 / (g^2 + eps s), not 0


def test_window_scales_with_input_size() -> None:
    """``window="auto"`` (the configs' default): the paper's 7 px at 224 px, scaled to the
    input side, rounded, odd (even values go up), at least 3; an int overrides it."""
    sizes = (8, 32, 64, 96, 128, 160, 179, 192, 224, 256, 448)
    assert [auto_window(s) for s in sizes] == [3, 3, 3, 3, 5, 5, 7, 7, 7, 9, 15]
    net = tiny_net(3)
    explainer = OPPSD(net)
    assert explainer.window == OPPSD(net, window=None).window == "auto"
    assert explainer.window_size(torch.empty(1, 3, 224, 224)) == 7
    assert explainer.window_size(torch.empty(1, 3, 32, 48)) == 3  # the shorter side
    assert OPPSD(net, window=5).window_size(torch.empty(1, 3, 32, 32)) == 5
    x = torch.randn(1, 3, 128, 128, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    for component in ("full", "patch"):
        auto = OPPSD(net, component=component)(x, 1)
        assert torch.equal(auto, OPPSD(net, window=5, component=component)(x, 1))
        assert not torch.equal(auto, OPPSD(net, window=7, component=component)(x, 1))
    for bad in (0, 4, "big"):
        with pytest.raises(ValueError, match="window"):
            OPPSD(net, window=bad)


def test_method_configs_scale_the_window() -> None:
    from omegaconf import OmegaConf

    from xai_bench.utils.configs import CONFIG_DIR

    for name in ("noble", "frobenius", "min_eigenvalue", "patch_only", "corner_only"):
        node = OmegaConf.load(f"{CONFIG_DIR}/method/oppsd_{name}.yaml").explainer
        assert node.window == (1 if name == "corner_only" else "auto")
