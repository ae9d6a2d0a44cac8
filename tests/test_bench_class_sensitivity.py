"""Class sensitivity (Rebuffi et al. 2020; POSAGG): known answers and the run."""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from torch import nn

from xai_bench.benchmarks.class_sensitivity import ClassSensitivity
from xai_bench.engine.batches import EvalBatch
from xai_bench.methods.gradient import Gradient
from xai_bench.methods.random import RandomAttribution
from xai_bench.results.partial import PartialStore
from xai_bench.run import run

TINY = ("model.net.widths=[4,8,8]", "model.weights=random", "dataset.datamodule.n_train=32",
        "dataset.datamodule.n_val=32", "dataset.datamodule.n_test=32",
        "benchmark=class_sensitivity", "benchmark.methods=[gradient,random,gradcam]",
        "benchmark.n_images=8", "benchmark.batch_size=4", "benchmark.hog_cell=8")  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (and do not oversubscribe a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mirrored_linear() -> nn.Module:
    """Logits ``(s, -s, s/2, -s/4)`` with ``s = w.x``: argmax and argmin are always the +-w
    pair, whose gradients are ``w`` and ``-w``."""
    torch.manual_seed(0)
    w = torch.randn(3 * 32 * 32)
    linear = nn.Linear(w.numel(), 4, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.stack([w, -w, w / 2, -w / 4]))
    return nn.Sequential(nn.Flatten(), linear).eval()


def _chunk(bench: ClassSensitivity, model: nn.Module, explainer, x: torch.Tensor) -> pd.DataFrame:
    with torch.no_grad():
        logits = model(x)
    batch = EvalBatch(0, x, logits.argmax(1), logits, {"index": torch.arange(len(x))})
    ctx = SimpleNamespace(model=model, meta=None, seed=0)
    return bench.score(ctx, explainer, batch)  # type: ignore[arg-type]


def test_known_answers_on_a_mirrored_linear_model() -> None:
    model, bench = _mirrored_linear(), ClassSensitivity(hog_cell=8)
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    rows = _chunk(bench, model, Gradient(model), x)
    assert set(rows.class_max) | set(rows.class_min) == {0, 1}
    assert (rows.class_max != rows.class_min).all()
    raw = rows[rows.metric == "spearman"].value
    assert len(raw) == 6 and raw.tolist() == pytest.approx([-1.0] * 6, abs=1e-12)
    hog = rows[rows.metric == "hog_spearman"].value  # HOG orientations ignore the sign
    assert hog.tolist() == pytest.approx([1.0] * 6, abs=1e-12)
    # a map that does not depend on the target is as class-insensitive as can be
    rows = _chunk(bench, model, RandomAttribution(model, seed=0), x)
    assert rows.value.tolist() == pytest.approx([1.0] * 12, abs=1e-12)


def test_constant_maps_and_errors() -> None:
    zeros, ramp = torch.zeros(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    out = ClassSensitivity(hog_cell=8).similarities(zeros, ramp)  # default: Rebuffi's NaN
    assert all(math.isnan(v) for t in out.values() for v in t.tolist())
    out = ClassSensitivity(hog_cell=8, constant_maps="define").similarities(zeros, ramp)
    assert all(v == 0.0 for t in out.values() for v in t.tolist())
    out = ClassSensitivity(hog_cell=8, constant_maps="define").similarities(zeros, zeros)
    assert all(v == 1.0 for t in out.values() for v in t.tolist())
    with pytest.raises(ValueError, match="unknown metrics"):
        ClassSensitivity(metrics=["pearson"])
    with pytest.raises(ValueError, match="constant_maps"):
        ClassSensitivity(constant_maps="zero")
    meta = SimpleNamespace(name="m", input_size=(3, 32, 32), num_classes=1)
    with pytest.raises(ValueError, match="at least two classes"):
        ClassSensitivity(hog_cell=8).check(SimpleNamespace(meta=meta))  # type: ignore[arg-type]


def test_class_sensitivity_end_to_end(make_cfg, tmp_path, monkeypatch) -> None:
    cfg = make_cfg(*TINY)
    out = run(cfg, tmp_path / "x")
    assert out["cached"] is False and out["n_images"] == 8 and out["skipped"] == {}
    assert out["headline"] == {"spearman": False, "hog_spearman": False}
    assert (tmp_path / "x" / "class_sensitivity.png").stat().st_size > 10_000
    table = pd.read_csv(tmp_path / "x" / "results.csv")
    assert len(table) == 3 * 8 * 2 and (table.class_max != table.class_min).all()
    for rec in out["aggregate"]:  # NaNs (constant Grad-CAM maps) are counted, never averaged
        assert rec["n"] + rec["n_nan"] == 8
    assert out["spearman/random"] == out["hog_spearman/random"] == 1.0
    assert out["spearman/gradient"] < 0.9
    assert run(cfg, tmp_path / "x")["cached"] is True

    put, calls = PartialStore.put, []

    def failing_put(self: PartialStore, key: str, table: pd.DataFrame) -> pd.DataFrame:
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(key)
        return put(self, key, table)

    monkeypatch.setattr(PartialStore, "put", failing_put)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "y")
    monkeypatch.setattr(PartialStore, "put", put)
    resumed = run(cfg, tmp_path / "y")
    assert resumed["chunks_loaded"] == 2 and resumed["chunks_computed"] == 4
    again = pd.read_csv(tmp_path / "y" / "results.csv")
    pd.testing.assert_frame_equal(again, table, check_exact=False, rtol=1e-12)
    with pytest.raises(ValueError, match="hog_cell=16 needs images of at least 48 px"):
        run(make_cfg(*TINY, "benchmark.hog_cell=16"), tmp_path / "z")
