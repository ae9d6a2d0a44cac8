"""Group-CAM fine-tuning (GCAM §5): the blend, the training step's maps, model state,
p=0 = plain fine-tuning, and the benchmark's curves and checkpoint reuse."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

import xai_bench.benchmarks.groupcam_finetune as gft
from xai_bench.methods.groupcam import GroupCAM
from xai_bench.models.small import ResNet8
from xai_bench.run import build_benchmark, run
from xai_bench.training.groupcam_augment import FINETUNE_RECIPE, GroupCAMAugment, groupcam_blend
from xai_bench.utils.blur import gaussian_blur
from xai_bench.utils.errors import UserInputError
from xai_bench.workspace import Workspace

TINY = (
    "benchmark=groupcam_finetune", "model.net.widths=[4,8,8]", "dataset.datamodule.n_train=96",
    "dataset.datamodule.n_val=32", "dataset.datamodule.n_test=32", "train.max_epochs=1",
    "train.batch_size=32", "trainer=cpu", "benchmark.progress=false",
    "benchmark.recipe.max_epochs=2", "benchmark.recipe.batch_size=32", "benchmark.recipe.lr=0.05",
)  # fmt: skip


def _net() -> ResNet8:
    torch.manual_seed(0)
    return ResNet8(num_classes=8, in_channels=3, widths=(4, 8, 8))


def _batch(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 32, 32, generator=g), torch.tensor([0, 3, 5, 7, 1, 2][:n])


def test_blend_is_image_times_mask_plus_blur_times_complement() -> None:
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ramp = torch.arange(64.0).view(1, 1, 8, 8) / 63  # mean 0.5: the top 32 pixels are kept
    s = torch.cat([ramp, torch.full((1, 1, 8, 8), 0.3)])  # image 1: a constant map
    mask = torch.stack([torch.arange(64) >= 32, torch.ones(64, dtype=torch.bool)]).view(2, 1, 8, 8)
    blurred = gaussian_blur(x, 5, 2.0)
    out = groupcam_blend(x, s, blur_kernel=5, blur_sigma=2.0)
    m = mask.float()
    assert torch.equal(out, x * m + blurred * (1 - m))
    keep, drop = mask.expand_as(x), ~mask.expand_as(x)
    assert torch.equal(out[keep], x[keep]) and torch.equal(out[drop], blurred[drop])
    assert torch.equal(out[1], x[1]), "a constant map keeps the image (nothing is below the mean)"
    assert int(drop[0, 0].sum()) == 32
    # the mean is taken per image: scaling one map changes nothing
    assert torch.equal(
        groupcam_blend(x, s * torch.tensor([7.0, 1.0]).view(2, 1, 1, 1), 5, 2.0), out
    )


def test_training_step_blends_the_ground_truth_class_maps(monkeypatch) -> None:
    net = _net().train()
    x, y = _batch()
    module = GroupCAMAugment(net, layer="layer3", internal_batch_size=None)
    seen = {}
    monkeypatch.setattr(module, "_step", lambda batch, stage: seen.setdefault("x", batch["image"]))
    module.training_step({"image": x, "label": y, "index": torch.arange(4)}, 0)

    ref_net = copy.deepcopy(net).eval()
    explainer = GroupCAM(
        ref_net,
        layer="layer3",
        groups=16,
        theta=None,
        forward_only=True,
        blur_kernel=51,
        blur_sigma=50.0,  # GroupCAMAugment's default: the paper's blur
    )
    maps = explainer(x, y)
    assert int((maps.flatten(1).amax(1) > maps.flatten(1).amin(1)).sum()) == 2, "two real maps"
    assert torch.equal(seen["x"], groupcam_blend(x, maps, 51, 50.0))
    other = groupcam_blend(x, explainer(x, (y + 1) % 8), 51, 50.0)
    assert not torch.equal(seen["x"], other), "maps of another class give other images"


def test_map_computation_leaves_bn_statistics_and_modes_unchanged(monkeypatch) -> None:
    net = _net().train()
    net.layer1.bn1.eval()  # a frozen submodule keeps its own mode
    modes = {name: m.training for name, m in net.named_modules()}
    state = {k: v.clone() for k, v in net.state_dict().items()}
    module = GroupCAMAugment(net, layer="layer3", p=1.0)
    x, y = _batch()
    during = []
    original = module.explainer.attribute

    def spy(inputs, target):
        during.append([m.training for m in net.modules()])
        return original(inputs, target)

    monkeypatch.setattr(module.explainer, "attribute", spy)
    out = module.augment(x, y)
    assert during and not any(during[0]), "maps are computed in eval mode"
    assert not out.requires_grad and all(p.grad is None for p in net.parameters())
    assert {n: m.training for n, m in net.named_modules()} == modes
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key

    def fail(inputs, target):
        raise RuntimeError("boom")

    monkeypatch.setattr(module.explainer, "attribute", fail)
    with pytest.raises(RuntimeError, match="boom"):
        module.augment(x, y)
    assert {n: m.training for n, m in net.named_modules()} == modes


def test_probability_p_replaces_a_seeded_share_of_images() -> None:
    x, y = _batch(6)
    assert torch.equal(GroupCAMAugment(_net(), layer="layer3", p=0.0).augment(x, y), x)
    module = GroupCAMAugment(_net(), layer="layer3", p=0.5, seed=3, internal_batch_size=None)
    out = module.augment(x, y)
    chosen = module.chosen(6)
    assert 0 < int(chosen.sum()) < 6
    explainer = GroupCAM(copy.deepcopy(module.net).eval(), layer="layer3", groups=16, theta=None,
                         forward_only=True, internal_batch_size=None)  # fmt: skip
    blends = groupcam_blend(x[chosen], explainer(x[chosen], y[chosen]), 51, 50.0)
    assert torch.equal(out[~chosen], x[~chosen]) and torch.equal(out[chosen], blends)
    assert torch.equal(module.augment(x, y), out), "the draw depends on (seed, step, rank) only"


def _rows(table: pd.DataFrame, variant: str, metric: str) -> pd.Series:
    rows = table[(table.method == variant) & (table.metric == metric)].sort_values("epoch")
    return rows.set_index("epoch").value


def test_p0_equals_plain_and_a_rerun_retrains_nothing(make_cfg, tmp_path, monkeypatch) -> None:
    cfg = make_cfg(*TINY, "benchmark.p=0.0")
    out = run(cfg, tmp_path / "p0")
    table = pd.read_csv(tmp_path / "p0" / "results.csv")
    plain, blended = _rows(table, "plain", "val_acc"), _rows(table, "groupcam", "val_acc")
    assert list(plain.index) == [0, 1, 2] and list(blended.index) == [0, 1, 2]
    assert list(table.columns[:10]) == [
        "experiment", "model", "dataset", "seed", "benchmark", "method", "method_config",
        "method_hash", "metric", "value",
    ]  # fmt: skip
    assert table.method_config.isna().all(), "the variants are training schemes, not methods"
    assert plain.tolist() == blended.tolist(), "p=0 is plain fine-tuning, number for number"
    assert out["plain/test_acc"] == out["groupcam/test_acc"] and out["gain"] == 0.0
    assert out["reused"] == {"plain": False, "groupcam": False}
    assert (tmp_path / "p0" / "groupcam_finetune.png").stat().st_size > 5_000
    start = Workspace(cfg, tmp_path / "p0").context().model.state_dict()
    assert plain[0] == out["start/val_acc"] and 0.0 <= plain[0] <= 1.0

    paper = run(make_cfg(*TINY), tmp_path / "p1")  # p=1: new groupcam, new run dir
    assert paper["reused"] == {"plain": False, "groupcam": False}
    assert paper["plain/test_acc"] == out["plain/test_acc"], "same seed, same plain numbers"
    table1 = pd.read_csv(tmp_path / "p1" / "results.csv")
    assert _rows(table1, "groupcam", "val_acc").tolist() != blended.tolist()

    # a run killed after its last epoch checkpoint resumes there and ends with the same numbers
    folder = Path(out["checkpoints"]["groupcam"])
    assert folder.parent == tmp_path / "p0" / "finetune" and folder.name.startswith("groupcam-")
    (folder / "model.pt").unlink()
    (folder / "metrics.json").unlink()
    (tmp_path / "p0" / "summary.json").unlink()  # the run was killed before it finished
    resumed = run(make_cfg(*TINY, "benchmark.p=0.0"), tmp_path / "p0")
    assert resumed["resumed_from"]["groupcam"] >= 2 and resumed["reused"]["plain"] is True
    assert resumed["groupcam/test_acc"] == out["groupcam/test_acc"]
    assert pd.read_csv(tmp_path / "p0" / "results.csv").equals(table)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished variant was retrained")

    monkeypatch.setattr(gft, "fit_and_test", no_training)
    (tmp_path / "p0" / "summary.json").unlink()
    again = run(make_cfg(*TINY, "benchmark.p=0.0"), tmp_path / "p0")
    assert again["reused"] == {"plain": True, "groupcam": True}
    assert again["groupcam/test_acc"] == out["groupcam/test_acc"]
    for key, value in Workspace(cfg, tmp_path / "p0").context().model.state_dict().items():
        assert torch.equal(value, start[key]), "the evaluated model is never changed"


def test_multilabel_data_is_refused(make_cfg, tmp_path) -> None:
    cfg = make_cfg(*TINY, "dataset=shapes_multi")
    with pytest.raises(UserInputError, match="multi-label"):
        gft.GroupCAMFinetune().run(Workspace(cfg, tmp_path).context())


def test_recipe_block_keys_the_checkpoints(make_cfg) -> None:
    bench = build_benchmark(make_cfg("benchmark=groupcam_finetune").benchmark)
    assert bench.params("plain") == {
        "variant": "plain", "optimizer": "sgd", "lr": 1e-3, "weight_decay": 1e-4,
        "batch_size": 128, "max_epochs": 3, "step_size": 0, "gamma": 0.1, "augment": False,
        "label_smoothing": 0.0, "milestones": [], "warmup_epochs": 0.0, "momentum": 0.9,
        "nesterov": False,
    }  # fmt: skip
    smooth = gft.GroupCAMFinetune(recipe={"label_smoothing": 0.1})  # the rest: FINETUNE_RECIPE
    assert smooth.recipe == replace(FINETUNE_RECIPE, label_smoothing=0.1)
    assert smooth.params("plain")["label_smoothing"] == 0.1
    with pytest.raises(UserInputError, match=r"recipe\.max_epochs must be >= 1"):
        gft.GroupCAMFinetune(recipe={"max_epochs": 0})
