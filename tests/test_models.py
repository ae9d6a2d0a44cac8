"""Model facts hold: layers exist, blocks run output-to-input, weights fail fast with a path."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from tests.conftest import group_options
from xai_bench.models.factory import build_model
from xai_bench.models.layers import UnknownLayerError, get_layer, to_feature_map, tokens_to_grid
from xai_bench.models.small import MLP, ResNet8
from xai_bench.models.weights import WeightsNotFoundError
from xai_bench.workspace import Workspace

SIZES = {"resnet50": 64, "vgg16": 64, "vgg19": 64, "resnet50_torchray": 64, "vgg16_torchray": 64}


def _workspace(make_cfg, name: str) -> Workspace:
    data = "dataset=digits" if name == "mlp" else "dataset=shapes"
    size = [f"dataset.image_size={SIZES[name]}"] if name in SIZES else []
    cfg = make_cfg(f"model={name}", data, *size)
    return Workspace(cfg, cfg.paths.output_dir)


def _call_order(net: nn.Module, names: list[str], x: torch.Tensor) -> list[str]:
    """Names of ``names`` in the order their modules first run in a forward pass."""
    order: list[str] = []
    handles = [
        get_layer(net, n).register_forward_hook(lambda m, i, o, n=n: order.append(n)) for n in names
    ]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return list(dict.fromkeys(order))


@pytest.mark.parametrize("name", group_options("model"))
def test_model_facts(make_cfg, name: str) -> None:
    ws = _workspace(make_cfg, name)
    net, meta = ws.fresh_net().eval(), ws.meta
    layers = list(meta.blocks) + list(meta.block_layers.values())
    if meta.cam_layer:
        layers.append(meta.cam_layer)
    for layer in layers:
        get_layer(net, layer)  # raises if missing
    x = torch.zeros(1, *meta.input_size)
    order = _call_order(net, list(meta.blocks), x)
    assert order == list(reversed(meta.blocks)), "blocks must be listed output to input"
    if meta.cam_layer:
        captured: list[torch.Tensor] = []
        h = get_layer(net, meta.cam_layer).register_forward_hook(lambda m, i, o: captured.append(o))
        try:
            with torch.no_grad():
                net(x)
        finally:
            h.remove()
        fmap = to_feature_map(captured[0], meta.reshape, meta.num_prefix_tokens)
        assert fmap.dim() == 4 and fmap.shape[-1] > 1
    assert meta.relu_only == all(
        not isinstance(m, nn.GELU | nn.Sigmoid | nn.Tanh | nn.SiLU) for m in net.modules()
    )


def test_unknown_layer_suggests_names() -> None:
    net = ResNet8(widths=(4, 8, 8))
    with pytest.raises(UnknownLayerError, match=r"layer3"):
        get_layer(net, "layer3.conv9")


def test_tokens_to_grid_roundtrip() -> None:
    grid = torch.arange(2 * 5 * 3 * 3, dtype=torch.float32).view(2, 5, 3, 3)
    tokens = torch.cat([torch.full((2, 1, 5), -1.0), grid.flatten(2).transpose(1, 2)], 1)
    assert torch.equal(tokens_to_grid(tokens, 1), grid)


def test_mlp_layer_sizes() -> None:
    net = MLP()
    assert [m.out_features for m in net.modules() if isinstance(m, nn.Linear)] == [
        1024, 1024, 1024, 10,
    ]  # fmt: skip
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("name", ["resnet50", "vgg16", "vit_b16"])
def test_missing_pretrained_weights_fail_fast(make_cfg, tmp_path, monkeypatch, name) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch" / "hub"))
    cfg = make_cfg(f"model={name}", "dataset=shapes", "dataset.num_classes=1000")
    ws = Workspace(cfg, tmp_path)
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as err:
        build_model(ws.fresh_net(), ws.meta, "pretrained", dict(cfg.model.pretrained))
    assert time.perf_counter() - start < 10
    if name == "vit_b16":
        assert "vit_base_patch16_224" in str(err.value)
    else:
        assert str(tmp_path / "torch" / "hub" / "checkpoints") in str(err.value)


def test_checkpoint_path_roundtrip(tmp_path) -> None:
    net = ResNet8(num_classes=3, widths=(4, 8, 8))
    torch.save(net.state_dict(), tmp_path / "w.pt")
    fresh = ResNet8(num_classes=3, widths=(4, 8, 8))
    loaded, _ = build_model(fresh, _meta(), weights=str(tmp_path / "w.pt"))
    for a, b in zip(net.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(WeightsNotFoundError, match="neither"):
        build_model(ResNet8(num_classes=3), _meta(), weights=str(tmp_path / "nope.pt"))


def _meta():
    from xai_bench.models.meta import ModelMeta

    return ModelMeta.create("resnet8", 3, (3, 32, 32), (0.5,) * 3, (0.2,) * 3)
