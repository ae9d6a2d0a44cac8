"""Group-CAM's efficiency claim as counted work, not time (issue 12; Zhang et al. 2021, Table 3).

Group-CAM scores ``G`` grouped masks per image (plus a blurred baseline and one forward+backward
for the gradient weights); Score-CAM scores one mask per channel of the CAM layer. On a layer
of 512 channels with the shipped configs (``G = 32``) Group-CAM's model work must be at most
1/10 of Score-CAM's. Rows passed through the model are counted with hooks, so the test is
deterministic; the timing lives in ``xai-bench experiment=efficiency_cam``.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from xai_bench.workspace import Workspace

CHANNELS = 512  # channels of the CAM layer (VGG's conv5 block)
GROUPS = 32  # method/groupcam.yaml
BATCH = 2
SMALL_VGG = ("model=vgg16_small", f"model.net.widths=[4,4,4,4,{CHANNELS}]", "model.net.hidden=8",
             "model.weights=random")  # fmt: skip


class Counter:
    """Rows through the model's forward, and rows of backward passes reaching its output."""

    def __init__(self, model: nn.Module) -> None:
        self.forward_rows = self.forward_calls = self.backward_rows = self.backward_calls = 0
        self.handle = model.register_forward_hook(self._forward)

    def _forward(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self.forward_rows += inputs[0].shape[0]
        self.forward_calls += 1
        if output.requires_grad:
            output.register_hook(self._backward)

    def _backward(self, grad: Tensor) -> None:
        self.backward_rows += grad.shape[0]
        self.backward_calls += 1

    def work(self) -> int:
        """Forward-pass equivalents: a backward costs about two forwards."""
        return self.forward_rows + 2 * self.backward_rows


def count(make_cfg, method: str, *overrides: str) -> Counter:
    cfg = make_cfg(f"method={method}", *SMALL_VGG, *overrides)
    ws = Workspace(cfg, cfg.paths.output_dir)
    net = ws.fresh_net().eval()
    explainer = ws.explainer(net)
    assert explainer.layer == "features.29"
    assert net.get_submodule("features.28").out_channels == CHANNELS
    x = torch.randn(BATCH, *ws.meta.input_size, generator=torch.Generator().manual_seed(0))
    counter = Counter(net)
    attr = explainer(x, torch.tensor([0, 3]))
    counter.handle.remove()
    assert attr.shape == (BATCH, 1, *x.shape[-2:]) and torch.isfinite(attr).all()
    return counter


@pytest.fixture(scope="module")
def counts(tmp_path_factory) -> dict[str, Counter]:
    from hydra import compose, initialize_config_dir

    from xai_bench.utils.configs import CONFIG_DIR

    root = tmp_path_factory.mktemp("cam_cost")

    def make_cfg(*overrides: str):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            overrides = (f"paths.root_dir={root}", "device=cpu", *overrides)
            return compose(config_name="run", overrides=list(overrides))

    return {m: count(make_cfg, m) for m in ("gradcam", "groupcam", "scorecam")}


def test_scorecam_does_one_forward_per_channel(counts) -> None:
    c = counts["scorecam"]
    assert c.forward_rows == BATCH * (CHANNELS + 1)  # base forward + one masked input per channel
    assert c.backward_rows == 0  # gradient-free
    assert c.forward_calls == 1 + BATCH * CHANNELS // 32  # internal_batch_size: 32


def test_groupcam_does_one_forward_per_group(counts) -> None:
    c = counts["groupcam"]
    # forward+backward for the weights, one blurred baseline, one perturbed input per group
    assert c.forward_rows == BATCH * (1 + 1 + GROUPS)
    assert (c.backward_rows, c.backward_calls) == (BATCH, 1)


def test_gradcam_is_one_forward_backward(counts) -> None:
    c = counts["gradcam"]
    assert (c.forward_rows, c.backward_rows) == (BATCH, BATCH)


def test_groupcam_work_is_at_most_a_tenth_of_scorecam(counts) -> None:
    group, score = counts["groupcam"], counts["scorecam"]
    assert group.forward_rows * 10 <= score.forward_rows
    assert group.work() * 10 <= score.work()  # also with the backward pass as two forwards
    assert group.work() / score.work() == pytest.approx((GROUPS + 4) / (CHANNELS + 1))
