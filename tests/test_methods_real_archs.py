"""Methods on the real architectures (random weights, nothing downloaded): ViT-B/16 with the
token-to-grid reshape, and refusals that say why on models a method does not fit."""

from __future__ import annotations

import pytest
import torch

from xai_bench.methods.base import MethodNotApplicableError
from xai_bench.workspace import Workspace

FITS_VIT = ("gradient", "input_x_gradient", "gradcam", "gradcampp", "groupcam", "oppsd_noble")
REFUSES_VIT = {
    "fullgrad": "convolutional",
    "guided_backprop": "ReLU",
    "lrp_0": "ReLU",
}


@pytest.fixture(scope="module")
def vit_ws(tmp_path_factory):
    from hydra import compose, initialize_config_dir

    from xai_bench.utils.configs import CONFIG_DIR

    root = tmp_path_factory.mktemp("vit")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="run",
            overrides=[f"paths.root_dir={root}", "device=cpu", "model=vit_b16",
                       "model.weights=random", "dataset=imagenet"],
        )  # fmt: skip
    ws = Workspace(cfg, root)
    net = ws.fresh_net().eval()
    return ws, net


@pytest.mark.parametrize("method", FITS_VIT)
def test_vit_b16_maps(vit_ws, method: str) -> None:
    ws, net = vit_ws
    params = {"groups": 4} if method == "groupcam" else {}
    explainer = ws.explainer(net, {"name": method, **params})
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    out = explainer(x, torch.tensor([3]))
    assert out.shape[-2:] == (224, 224) and out.shape[1] in (1, 3)
    assert torch.isfinite(out).all()
    if method == "groupcam":
        # score-weighted: on a random net every group may lower the score, giving zeros
        assert out.min() >= 0
    else:
        assert out.abs().sum() > 0
    if method in ("gradcam", "gradcampp"):
        # the 14x14 token grid, upsampled: not constant, and non-negative after the ReLU
        assert out.min() >= 0 and out.std() > 0


@pytest.mark.parametrize("method", sorted(REFUSES_VIT))
def test_vit_b16_refusals_say_why(vit_ws, method: str) -> None:
    ws, net = vit_ws
    with pytest.raises(MethodNotApplicableError, match=REFUSES_VIT[method]):
        ws.explainer(net, method)
