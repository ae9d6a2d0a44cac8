"""OPPSD against a brute-force construction from finite-difference gradients, and its criteria."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xai_bench.methods.gradient import Gradient
from xai_bench.methods.hooks import hooks_left
from xai_bench.methods.oppsd import OPPSD, criterion_map, min_eigenvalue, structure_tensor


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
    net = tiny_net(channels)
    torch.manual_seed(1)
    x = torch.randn(1, channels, 9, 9, dtype=torch.float64)
    g = fd_gradient(net, x, target=2)
    J = brute_force_J(g, k=7)
    eig = np.linalg.eigvalsh(J)
    expected = {
        "noble": np.clip(np.linalg.det(J) / (np.trace(J, axis1=2, axis2=3) + 1e-6), 0, None),
        "frobenius": np.sqrt((J**2).sum((2, 3))),
        "min_eigenvalue": np.clip(eig[..., 0], 0, None),
    }
    for criterion, ref in expected.items():
        out = OPPSD(net, criterion=criterion)(x, 2)
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
