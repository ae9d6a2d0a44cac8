"""The embedded deep CNN (``model=vgg16_small``): VGG-16's layout and names, batch-norm folding,
and every method config on it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import group_options
from xai_bench.methods.base import MethodNotApplicableError
from xai_bench.models.layers import get_layer
from xai_bench.models.small import SmallVGG
from xai_bench.workspace import Workspace

TINY = (
    "model=vgg16_small", "model.weights=random", "dataset=shapes",
    "dataset.datamodule.n_train=64", "dataset.datamodule.n_val=32", "dataset.datamodule.n_test=16",
)  # fmt: skip


def test_architecture_mirrors_vgg16() -> None:
    net = SmallVGG(num_classes=8).eval()
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    assert len(convs) == 13 and len(relus) == 15
    assert all(not r.inplace for r in relus)
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.features) == 5
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    for i in (3, 8, 15, 22, 29):  # torchvision vgg16's relu1_2 .. relu5_3
        assert isinstance(net.features[i], nn.ReLU)
        assert isinstance(net.features[i - 1], nn.Conv2d)
        assert isinstance(net.features[i + 1], nn.MaxPool2d)
    assert [type(m) for m in net.classifier] == [nn.Linear, nn.ReLU, nn.Dropout] * 2 + [nn.Linear]
    for size in (32, 64):
        with torch.no_grad():
            assert net(torch.zeros(2, 3, size, size)).shape == (2, 8)


def test_config_layers_resolve(make_cfg) -> None:
    cfg = make_cfg(*TINY)
    ws = Workspace(cfg, cfg.paths.output_dir)
    net, meta = ws.fresh_net(), ws.meta
    assert sorted(meta.block_layers) == ["B1", "B2", "B3", "B4", "B5"]
    for path in (meta.cam_layer, *meta.block_layers.values()):
        assert isinstance(get_layer(net, path), nn.ReLU)
    assert meta.block_layers["B5"] == meta.cam_layer
    for path in meta.blocks:  # cascading randomisation: every conv and linear, output first
        assert isinstance(get_layer(net, path), nn.Conv2d | nn.Linear)
    assert len(meta.blocks) == 16 and meta.blocks[0] == "classifier.6"
    assert isinstance(ws.fresh_net(training=True).norms, nn.ModuleDict)  # train_net: batch norm


def test_batch_norm_folds_into_the_convs_on_loading() -> None:
    torch.manual_seed(0)
    trained = SmallVGG(num_classes=8, batch_norm=True)
    assert len(trained.norms) == 13
    opt = torch.optim.Adam(trained.parameters(), lr=1e-2)
    for _ in range(3):  # move the running statistics and the affine parameters off their init
        loss = trained(torch.randn(8, 3, 32, 32) * 2 + 0.5).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    plain = SmallVGG(num_classes=8)
    plain.load_state_dict(trained.state_dict())  # strict: the norms' keys are folded away
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        ref, out = trained.eval()(x), plain.eval()(x)
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def block_variants() -> list[str]:
    """CAM methods at every block layer, as the positive-aggregation experiments use them."""
    return [f"{m}@{b}" for m in ("gradcam", "gradcampp", "gradcam_pos", "gradmid") for b in
            ("B1", "B2", "B3", "B4")]  # fmt: skip


@pytest.mark.parametrize("method", group_options("method") + block_variants())
def test_every_method_applies(make_cfg, method: str) -> None:
    name, _, block = method.partition("@")
    layer = (f"method.explainer.layer=${{model.block_layers.{block}}}",) if block else ()
    cfg = make_cfg(f"method={name}", *layer, *TINY)
    ws = Workspace(cfg, cfg.paths.output_dir)
    net = ws.fresh_net().eval()
    try:
        explainer = ws.explainer(net)
    except MethodNotApplicableError as err:  # none expected: a plain ReLU CNN like vgg16
        pytest.fail(f"{method} refuses vgg16_small: {err}")
    x = torch.randn(2, *ws.meta.input_size, generator=torch.Generator().manual_seed(0))
    out = explainer(x, torch.tensor([0, 3]))
    assert out.shape[0] == 2 and out.shape[-2:] == x.shape[-2:]
    assert torch.isfinite(out).all()
