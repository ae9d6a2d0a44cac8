"""Every method config x {CNN, ViT, MLP}: the explainer contract, batching and model safety.

Method configs are found by globbing ``xai_bench/configs/method``, so a new method is tested
here as soon as its config exists.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import group_options
from xai_bench.methods.base import MethodNotApplicableError
from xai_bench.methods.hooks import hooks_left
from xai_bench.workspace import Workspace

# Group-CAM's weights are differences of two float32 softmax probabilities (Zhang et al. 2021,
# Eq. 4). On a tiny random net they are ~1e-3, so the batch-size-dependent rounding of CPU convs
# (~1e-7, torch 2.14) reaches ~3e-5 of the map's maximum: the batch check allows 1e-4 there.
SOFTMAX_DIFFERENCE = {"groupcam": 1e-4, "groupcam_finetune": 1e-4}

TINY_SHAPES = (
    "dataset=shapes", "dataset.datamodule.n_train=64", "dataset.datamodule.n_val=32",
    "dataset.datamodule.n_test=16",
)  # fmt: skip
MODELS = {
    "cnn": ("model=resnet8", "model.net.widths=[4,8,8]", *TINY_SHAPES),
    "vit": (
        "model=vit_small_embedded",
        "model.net.embed_dim=16",
        "model.net.num_heads=2",
        "model.net.patch_size=8",
        *TINY_SHAPES,
    ),
    "mlp": ("model=mlp", "model.net.hidden=[16,16,16]", "dataset=digits"),
}


def snapshot(net: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in net.state_dict().items()},
        "training": [m.training for m in net.modules()],
        "requires_grad": [p.requires_grad for p in net.parameters()],
        "inplace": [getattr(m, "inplace", None) for m in net.modules()],
    }


def assert_unchanged(net: nn.Module, before: dict) -> None:
    after = snapshot(net)
    assert after["training"] == before["training"], "train/eval mode changed"
    assert after["requires_grad"] == before["requires_grad"], "requires_grad flags changed"
    assert after["inplace"] == before["inplace"], "inplace flags changed"
    for k, v in before["state"].items():
        assert torch.equal(after["state"][k], v), f"{k} changed"
    assert hooks_left(net) == 0, "hooks left on the model"
    assert all(p.grad is None for p in net.parameters()), "parameter gradients accumulated"


@pytest.mark.parametrize("arch", sorted(MODELS))
@pytest.mark.parametrize("method", group_options("method"))
def test_method_contract(make_cfg, method: str, arch: str) -> None:
    cfg = make_cfg(f"method={method}", "model.weights=random", *MODELS[arch])
    ws = Workspace(cfg, cfg.paths.output_dir)
    net = ws.fresh_net()
    net.train(arch == "mlp")  # the MLP has no batch norm: check a train-mode model stays so
    params = list(net.parameters())
    params[0].requires_grad_(False)  # a frozen layer must stay frozen
    before = snapshot(net)
    try:
        explainer = ws.explainer(net)
    except MethodNotApplicableError:
        assert_unchanged(net, before)
        return
    assert_unchanged(net, before)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, *ws.meta.input_size, generator=gen)
    targets = torch.tensor([0, 2, 1])
    out = explainer(x, targets)
    b, c, h, w = out.shape
    assert (b, h, w) == (3, *x.shape[-2:]) and c in (1, x.shape[1])
    assert out.dtype == torch.float32 and out.device == x.device
    assert torch.isfinite(out).all()
    assert_unchanged(net, before)

    singles = torch.cat([explainer(x[i : i + 1], targets[i : i + 1]) for i in range(3)])
    scale = out.abs().max().clamp_min(1e-12)
    atol = SOFTMAX_DIFFERENCE.get(method, 1e-5) * float(scale)
    assert torch.allclose(out, singles, rtol=1e-4, atol=atol), "batch-dependent"

    # An error raised inside the model midway through the call leaves nothing behind.
    calls = []

    def fail(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        calls.append(1)
        raise RuntimeError("injected failure")

    last = [m for m in net.modules() if not list(m.children())][-1]
    handle = last.register_forward_hook(fail)
    try:
        explainer(x, targets)
    except RuntimeError as err:
        assert "injected failure" in str(err)
    finally:
        handle.remove()
    assert calls or method == "random", "the method never ran the model"
    assert_unchanged(net, before)

    with pytest.raises(ValueError, match="target"):
        explainer(x, torch.tensor([0, 10_000, 1]))
