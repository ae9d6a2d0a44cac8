"""``read_state_dict``: the weights inside the checkpoint layouts of the papers' code."""

from __future__ import annotations

import pytest
import torch

from xai_bench.models.small import ResNet8
from xai_bench.models.weights import load_into, read_state_dict


def _net(seed: int) -> ResNet8:
    torch.manual_seed(seed)
    return ResNet8(num_classes=3, widths=(4, 8, 8))


def _prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state.items()}


STATE = _net(0).state_dict()
LAYOUTS = {
    "plain": STATE,
    "lightning": {"state_dict": _prefixed(STATE, "net."), "epoch": 3},
    "oppsd_best_pth": {"model_state_dict": STATE, "epoch": 7, "valid_metrics": {"acc": 0.5}},
    "model": {"model": STATE, "epoch": 1},
    "model_dataparallel": {"model": _prefixed(STATE, "module."), "epoch": 1},
    "state_dict_dataparallel": {"state_dict": _prefixed(STATE, "module.")},
    "dataparallel": _prefixed(STATE, "module."),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_gives_the_plain_state_dict(tmp_path, layout: str) -> None:
    path = tmp_path / "weights.pth"
    torch.save(LAYOUTS[layout], path)
    state = read_state_dict(path)
    assert list(state) == list(STATE)
    assert all(torch.equal(state[k], STATE[k]) for k in STATE)
    net = load_into(_net(1), state, str(path)).eval()  # another init: the file's weights win
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(net(x), _net(0).eval()(x))


def test_a_prefix_on_some_keys_only_is_kept(tmp_path) -> None:
    state = dict(STATE)
    state["module.extra"] = torch.zeros(1)  # a network with a submodule named `module`
    torch.save({"model_state_dict": state}, tmp_path / "w.pth")
    assert set(read_state_dict(tmp_path / "w.pth")) == set(state)


def test_the_first_weights_entry_wins(tmp_path) -> None:
    """A checkpoint with a state dict and a model entry: ``state_dict`` is the weights."""
    other = _net(2).state_dict()
    torch.save({"state_dict": STATE, "model": other}, tmp_path / "w.pth")
    state = read_state_dict(tmp_path / "w.pth")
    assert torch.equal(state["fc.weight"], STATE["fc.weight"])
