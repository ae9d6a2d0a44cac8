"""Post-processing steps: known answers, composition, constant maps without NaN."""

from __future__ import annotations

import pytest
import torch

from xai_bench.metrics.postprocess import Postprocess


def test_channel_reductions_known_answers() -> None:
    x = torch.tensor([[1.0, -3.0], [2.0, 0.5], [-1.0, 1.0]]).view(1, 3, 1, 2)
    assert Postprocess(["channel_mean"])(x).flatten().tolist() == pytest.approx([2 / 3, -0.5])
    assert Postprocess(["channel_sum_abs"])(x).flatten().tolist() == [4.0, 4.5]
    assert Postprocess(["channel_max_abs"])(x).flatten().tolist() == [2.0, -3.0]
    assert Postprocess(["channel_sum", "abs"])(x).flatten().tolist() == [2.0, 1.5]


def test_normalisations_and_constant_maps() -> None:
    x = torch.tensor([[-2.0, 0.0, 6.0], [3.0, 3.0, 3.0]]).view(2, 1, 1, 3)
    mm = Postprocess(["minmax"])(x).view(2, 3)
    assert mm[0].tolist() == [0.0, 0.25, 1.0] and mm[1].tolist() == [0.0, 0.0, 0.0]
    ma = Postprocess(["maxabs"])(x).view(2, 3)
    assert ma[0].tolist() == pytest.approx([-1 / 3, 0.0, 1.0]) and ma[1].tolist() == [1.0] * 3
    zeros = torch.zeros(1, 1, 4, 4)
    for steps in (["minmax"], ["maxabs"], [{"clip_percentile": 99}]):
        assert torch.equal(Postprocess(steps)(zeros), zeros)


def test_clip_percentile_and_upsample() -> None:
    x = torch.arange(100, dtype=torch.float32).view(1, 1, 10, 10)
    out = Postprocess([{"clip_percentile": 50}])(x)
    assert out.max() == 1.0 and (out == 1.0).sum() == 50  # values above the median clip to 1
    up = Postprocess([{"upsample": 20}])(torch.ones(2, 1, 5, 5))
    assert up.shape == (2, 1, 20, 20) and torch.allclose(up, torch.ones_like(up))


def test_unknown_step_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown postprocess step"):
        Postprocess(["channel_median"])
    assert repr(Postprocess(["abs", {"clip_percentile": 99}])) == "abs -> clip_percentile(99)"
