"""Parameter randomisation on copies and the sanity-check benchmark."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from xai_bench.benchmarks.sanity_checks import METRICS, SanityChecks, compare, map_views
from xai_bench.benchmarks.sanity_maps import MAPS_FILE
from xai_bench.metrics.aggregate import aggregate
from xai_bench.models.layers import UnknownLayerError
from xai_bench.models.randomize import cascade, independent, randomized_copy
from xai_bench.models.small import ResNet8
from xai_bench.results.partial import PartialStore
from xai_bench.run import run
from xai_bench.workspace import Workspace

BLOCKS = ["fc", "layer3", "layer2", "layer1", "stem"]
DATA = ("dataset.datamodule.n_train=96", "dataset.datamodule.n_val=32",
        "dataset.datamodule.n_test=32")  # fmt: skip
TRAINED = ("model.net.widths=[4,8,8]", "model.weights=trained", "train.max_epochs=1",
           "train.batch_size=32", "trainer=cpu", *DATA)  # fmt: skip
BENCH = ("benchmark=sanity_checks", "benchmark.methods=[gradient,random]",
         "benchmark.n_images=8", "benchmark.batch_size=4", "benchmark.hog_cell=8")  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (and do not oversubscribe a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = ResNet8(num_classes=8, widths=(4, 8, 8))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-default running statistics
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 2)  # and affine parameters unlike their init
            m.bias.data.uniform_(-1, 1)
    model.stem[0].weight.requires_grad_(False)
    return model.eval()


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(model: nn.Module, state: dict[str, torch.Tensor]) -> set[str]:
    return {k for k, v in model.state_dict().items() if not torch.equal(v, state[k])}


def _params_of(model: nn.Module, blocks: list[str]) -> set[str]:
    return {k for k, _ in model.named_parameters() if any(k.startswith(b + ".") for b in blocks)}


def test_randomized_copy_changes_only_the_named_blocks() -> None:
    model = _model()
    state, grads = _state(model), {k: p.requires_grad for k, p in model.named_parameters()}
    modes = {k: m.training for k, m in model.named_modules()}
    clone = randomized_copy(model, ["fc", "layer3"], mode="normal", std=0.01, seed=0)
    # the caller's model: parameters, buffers, modes and requires_grad unchanged
    assert not _changed(model, state)
    assert modes == {k: m.training for k, m in model.named_modules()}
    assert grads == {k: p.requires_grad for k, p in model.named_parameters()}
    # the copy: every parameter of fc and layer3 (incl. BN affine) redrawn, nothing else
    assert _changed(clone, state) == _params_of(model, ["fc", "layer3"])
    assert grads == {k: p.requires_grad for k, p in clone.named_parameters()}
    assert not clone.training and clone.layer3.bn1.running_var.equal(model.layer3.bn1.running_var)
    drawn = torch.cat([p.flatten() for p in [*clone.fc.parameters(), *clone.layer3.parameters()]])
    assert drawn.std().item() == pytest.approx(0.01, rel=0.1) and abs(drawn.mean()) < 1e-3
    # seeded: reproducible, and another seed gives other values
    again = randomized_copy(model, ["fc", "layer3"], mode="normal", std=0.01, seed=0)
    assert not _changed(again, _state(clone))
    other = randomized_copy(model, ["fc", "layer3"], mode="normal", std=0.01, seed=1)
    assert _changed(other, _state(clone)) == _params_of(model, ["fc", "layer3"])


def test_default_init_resets_layers_keeps_running_stats_and_rng() -> None:
    model = _model()
    state, rng = _state(model), torch.get_rng_state()
    clone = randomized_copy(model, ["layer3"], mode="default_init", seed=0)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's random stream is untouched
    assert _changed(clone, state) == _params_of(model, ["layer3"])
    bn = clone.layer3.bn1
    assert bn.weight.eq(1).all() and bn.bias.eq(0).all()  # BatchNorm's own init ...
    assert bn.running_mean.equal(model.layer3.bn1.running_mean)  # ... but the stats are kept
    conv = clone.layer3.conv1.weight
    bound = 1 / math.sqrt(conv[0].numel())  # kaiming_uniform(a=sqrt(5)) of Conv2d
    assert conv.abs().max() <= bound and conv.std() > bound / 4
    again = randomized_copy(model, ["layer3"], mode="default_init", seed=0)
    assert not _changed(again, _state(clone))

    class Raw(nn.Module):  # a parameter with no reset_parameters: drawn from N(0, std)
        def __init__(self) -> None:
            super().__init__()
            self.pos = nn.Parameter(torch.ones(4000))
            self.lin = nn.Linear(3, 3)

    net = nn.Sequential()
    net.add_module("blk", Raw())
    out = randomized_copy(net, ["blk"], mode="default_init", std=0.1)
    assert out.blk.pos.std().item() == pytest.approx(0.1, rel=0.1)
    assert not torch.equal(out.blk.lin.weight, net.blk.lin.weight)


def test_cascade_is_cumulative_and_independent_is_one_block() -> None:
    model = _model()
    state = _state(model)
    stages = list(cascade(model, BLOCKS, seed=3))
    alone = dict(independent(model, BLOCKS, seed=3))
    assert [s for s, _ in stages] == BLOCKS and list(alone) == BLOCKS
    for i, (name, clone) in enumerate(stages):
        assert _changed(clone, state) == _params_of(model, BLOCKS[: i + 1])
        assert _changed(alone[name], state) == _params_of(model, [name])
        for k in _params_of(model, [name]):  # one block, same values in both tests
            assert torch.equal(clone.state_dict()[k], alone[name].state_dict()[k])
    assert not _changed(model, state)
    with pytest.raises(UnknownLayerError, match="layer4"):
        randomized_copy(model, ["layer4"])
    with pytest.raises(ValueError, match="mode must be one of"):
        randomized_copy(model, ["fc"], mode="uniform")


def test_metric_known_answers_and_nan_aggregation() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 3, 32, 32, generator=g), torch.randn(8, 3, 32, 32, generator=g)
    views = list({v for v, _ in METRICS.values()})
    va, vb = map_views(a, views, 8), map_views(b, views, 8)
    for metric in METRICS:
        same = compare(va, va, metric, defined=True)
        assert torch.allclose(same, torch.ones_like(same), atol=1e-6), metric
        # HOG of noise keeps a small positive correlation at 32 px: skimage's zero derivative
        # on the border rows/columns puts axis-aligned votes in the same cells of both maps
        bound = 0.25 if metric == "hog_spearman" else 0.1
        assert compare(va, vb, metric, defined=True).mean().abs() < bound, metric
    assert compare(va, vb, "spearman_abs", defined=True).abs().max() < 0.1  # 1024 pixels
    table = pd.DataFrame({"method": ["m"] * 3, "metric": ["x"] * 3, "value": [1.0, math.nan, 0.0]})
    assert aggregate(table, ["method", "metric"]) == [
        {"method": "m", "metric": "x", "mean": 0.5, "std": 0.5, "n": 2, "n_nan": 1,
         "n_nonfinite": 0}
    ]  # fmt: skip


def _means(summary: dict, method: str, metric: str) -> dict[str, float]:
    rows = summary["aggregate"]
    return {r["stage"]: r["mean"] for r in rows if r["method"] == method and r["metric"] == metric}


def test_sanity_checks_end_to_end_on_a_trained_model(make_cfg, tmp_path, monkeypatch) -> None:
    cfg = make_cfg(*TRAINED, *BENCH)
    out = run(cfg, tmp_path / "x")
    assert out["cached"] is False and out["stages"] == ["original", *BLOCKS]
    assert out["headline"] == {m: False for m in out["metrics"]}
    table = pd.read_csv(tmp_path / "x" / "results.csv")
    assert len(table) == 2 * 6 * 8 * 4 and table.value.notna().all()
    assert set(table["mode"]) == {"cascading"} and set(table["init"]) == {"normal"}
    assert table.groupby("stage", sort=False).stage_index.first().to_dict() == {
        s: i for i, s in enumerate(["original", *BLOCKS])}  # fmt: skip
    assert json.loads((tmp_path / "x" / "summary.json").read_text())["n_images"] == 8
    with np.load(tmp_path / "x" / MAPS_FILE) as maps:  # the first image's map per stage
        assert maps["maps"].shape == (2, 6, 32, 32) and np.isfinite(maps["maps"]).all()
        assert list(maps["methods"]) == ["gradient", "random"]
        assert list(maps["stages"]) == ["original", *BLOCKS] and maps["image"].shape == (3, 32, 32)
    for method in ("gradient", "random"):
        assert (tmp_path / "x" / f"sanity_checks_{method}.png").stat().st_size > 10_000
        for metric in out["metrics"]:
            assert _means(out, method, metric)["original"] == pytest.approx(1.0, abs=1e-9)
    for metric in out["metrics"]:  # content-hash noise ignores the model: 1 at every stage
        assert all(v == pytest.approx(1.0) for v in _means(out, "random", metric).values())
    # the gradient depends on the weights: randomising the output layer alone changes it
    # (measured: signed 0.37, abs 0.57, SSIM 0.48, HOG 0.34 at fc; lower further in)
    for metric, bound in [("spearman_signed", 0.7), ("spearman_abs", 0.8), ("ssim", 0.8),
                          ("hog_spearman", 0.7)]:  # fmt: skip
        assert max(_means(out, "gradient", metric)[b] for b in BLOCKS) < bound, metric
    assert run(cfg, tmp_path / "x")["cached"] is True

    # interrupted after 5 of 24 chunks (2 methods x 6 stages x 2 batches), then resumed
    put, calls = PartialStore.put, []

    def failing_put(self: PartialStore, key: str, table: pd.DataFrame) -> pd.DataFrame:
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(key)
        return put(self, key, table)

    monkeypatch.setattr(PartialStore, "put", failing_put)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "y")
    monkeypatch.setattr(PartialStore, "put", put)
    resumed = run(cfg, tmp_path / "y")
    assert resumed["chunks_loaded"] == 5 and resumed["chunks_computed"] == 19
    again = pd.read_csv(tmp_path / "y" / "results.csv")
    pd.testing.assert_frame_equal(again, table, check_exact=False, rtol=1e-12)


def test_inapplicable_method_independent_default_init_original_target(make_cfg, tmp_path) -> None:
    cfg = make_cfg(
        "model=mlp", "model.net.hidden=[16]", "model.blocks=[fc1,fc0]", "model.weights=random",
        *DATA, "benchmark=sanity_checks", "benchmark.methods=[gradient,gradcam]",
        "benchmark.mode=independent", "benchmark.init=default", "benchmark.target=original",
        "benchmark.n_images=6", "benchmark.hog_cell=8",
    )  # fmt: skip
    out = run(cfg, tmp_path / "x")
    assert list(out["skipped"]) == ["gradcam"] and "CAM layer" in out["skipped"]["gradcam"]
    table = pd.read_csv(tmp_path / "x" / "results.csv")
    skipped = table[table.metric == "applicable"]  # one row of the engine, with the reason
    assert skipped.method.tolist() == ["gradcam"] and skipped.value.tolist() == [0.0]
    table = table[table.metric != "applicable"]
    assert set(table.method) == {"gradient"} and list(table.stage.unique()) == [
        "original", "fc1", "fc0"]  # fmt: skip
    assert (table.groupby("image").target.nunique() == 1).all()  # the trained model's class
    with pytest.raises(ValueError, match="hog_cell=16 needs images of at least 48 px"):
        run(make_cfg(*DATA, "model.weights=random", "benchmark=sanity_checks",
                     "benchmark.hog_cell=16"), tmp_path / "z")  # fmt: skip
    with pytest.raises(ValueError, match="unknown metrics"):
        SanityChecks(metrics=["pearson"])
    with pytest.raises(ValueError, match="mode must be one of"):
        SanityChecks(mode="cumulative")


def test_two_variants_of_one_method_are_two_methods(make_cfg, tmp_path) -> None:
    """Two Grad-CAM layers of one config: two labels, hashes, row sets and figures."""
    cfg = make_cfg(
        "model.net.widths=[4,8,8]", "model.weights=random", *DATA, "benchmark=sanity_checks",
        "benchmark.methods=[gradcam,{name:gradcam,layer:layer2}]", "benchmark.n_images=4",
        "benchmark.batch_size=4", "benchmark.hog_cell=8", "benchmark.blocks=[fc,layer3]",
    )  # fmt: skip
    # through the engine: the run's model is never randomised in place
    ctx = Workspace(cfg, tmp_path / "x").context()
    state = _state(ctx.model)
    bench = SanityChecks(n_images=4, batch_size=4, hog_cell=8, blocks=["fc", "layer3"])
    assert bench.run(ctx).summary["chunks_computed"] == 2 * 3  # methods x stages, one batch
    assert not _changed(ctx.model, state)
    rows = bench.score(ctx, ctx.explainer(ctx.methods[0]), bench.plan.batch(ctx, 0))
    assert len(rows) == 4 * 4 and rows.value.tolist() == pytest.approx([1.0] * 16)  # original
    out = run(cfg, tmp_path / "x")  # the same chunks, from the config
    assert out["chunks_loaded"] == 2 * 3 and out["chunks_computed"] == 0
    labels = ["gradcam", "gradcam(layer=layer2)"]
    table = pd.read_csv(tmp_path / "x" / "results.csv", dtype={"method_hash": str})
    ids = table[["method", "method_config", "method_hash"]].drop_duplicates()
    assert ids.method.tolist() == labels and ids.method_hash.nunique() == 2
    assert set(ids.method_config) == {"gradcam"}
    assert (table.groupby("method").size() == 3 * 4 * 4).all()  # stages x images x metrics
    assert [Path(f).name for f in out["figures"]] == [
        "sanity_checks_gradcam.png", "sanity_checks_gradcam_layer=layer2_.png"]  # fmt: skip
    assert all(Path(f).stat().st_size > 10_000 for f in out["figures"])
    assert {r["method"] for r in out["aggregate"]} == set(labels)
    # the layer changes the maps: the two variants' rows differ
    values = table.pivot_table("value", ["stage", "image", "metric"], "method")
    assert not values[labels[0]].equals(values[labels[1]])
