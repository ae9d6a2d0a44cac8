"""ROAR's ``benchmark.init=pretrained`` (OPPSD's ViT-B/16 retrains, its ``roar.py``): every
retrain starts from the model's published ImageNet weights with a new head seeded by the
retrain seed.

A torchvision ResNet-18 with random "published" weights (1000 classes) is written under its real
file name into a temporary torch hub cache; the evaluated model (random weights) and the
retrains classify 32 px ``shapes`` (8 classes).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from xai_bench.checks import check_config
from xai_bench.run import build_benchmark, run
from xai_bench.utils.errors import UserInputError, WeightsNotFoundError
from xai_bench.utils.hashing import stable_hash
from xai_bench.workspace import Workspace

R18_FILE = "resnet18-f37072fd.pth"  # torchvision's published name of ResNet18_Weights.IMAGENET1K_V1
RESNET18 = (
    "model=resnet50", "model.name=resnet18", "model.net._target_=torchvision.models.resnet18",
    "model.pretrained.name=ResNet18_Weights.IMAGENET1K_V1", f"model.pretrained.file={R18_FILE}",
)  # fmt: skip
ROAR = (
    "benchmark=roar", "trainer=cpu", "model.weights=random", "benchmark.init=pretrained",
    "benchmark.methods=[random]", "benchmark.recipe.max_epochs=0", "benchmark.train_limit=null",
    "benchmark.recipe.batch_size=32", "dataset.datamodule.n_train=32",
    "dataset.datamodule.n_val=16", "dataset.datamodule.n_test=32", "checkpoint_every_n_steps=0",
)  # fmt: skip


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[dict[str, torch.Tensor], Path]:
    """Random ImageNet-shaped ResNet-18 weights (BN statistics too) saved as the published file
    in a torch hub folder; returns the state dict and the hub folder."""
    torch.manual_seed(4321)
    net = torchvision.models.resnet18(num_classes=1000)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    hub = tmp_path_factory.mktemp("torch") / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    torch.save(net.state_dict(), hub / "checkpoints" / R18_FILE)
    return net.state_dict(), hub


@pytest.fixture
def hub(published, monkeypatch) -> Path:
    monkeypatch.setattr(torch.hub, "_hub_dir", str(published[1]))
    return published[1]


def _expected_logits(state: dict[str, torch.Tensor], seed: int, x: torch.Tensor) -> torch.Tensor:
    """The published backbone's features through the head a seeded build initialises."""
    ref = torchvision.models.resnet18(num_classes=1000)
    ref.load_state_dict(state)
    ref.fc = nn.Identity()
    torch.manual_seed(seed)
    head = torchvision.models.resnet18(num_classes=8).fc
    with torch.no_grad():
        return ref.eval()(x) @ head.weight.T + head.bias  # [B, 512] features -> [B, 8] logits


def test_each_retrain_starts_from_the_published_weights_with_its_own_head(
    make_cfg, tmp_path, hub, published
) -> None:
    """``max_epochs=0``: a retrain's saved network is the one it started from."""
    state = published[0]
    cfg = make_cfg(*RESNET18, *ROAR)
    bench = build_benchmark(cfg.benchmark)
    ctx = Workspace(cfg, tmp_path / "run").context()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    nets = {}
    for seed in (0, 1):
        out_dir = tmp_path / f"retrain{seed}"
        bench.retrain(ctx, None, 0.0, seed, out_dir)
        net = torchvision.models.resnet18(num_classes=8)
        net.load_state_dict(torch.load(out_dir / "model.pt", weights_only=True))
        with torch.no_grad():
            logits = net.eval()(x)
        assert torch.allclose(logits, _expected_logits(state, seed, x), atol=1e-5)
        for key, value in state.items():
            if not key.startswith("fc."):
                assert torch.equal(net.state_dict()[key], value), key
        nets[seed] = net
    assert not torch.equal(nets[0].fc.weight, nets[1].fc.weight), "one head per retrain seed"
    assert not torch.allclose(_expected_logits(state, 0, x), _expected_logits(state, 1, x))


def test_roar_run_reports_the_accuracy_of_the_pretrained_start(
    make_cfg, tmp_path, hub, published
) -> None:
    """Known answer through ``run``: with 0 epochs the clean retrain of seed ``s`` scores the
    published backbone with head ``s`` on the test split."""
    cfg = make_cfg(*RESNET18, *ROAR, "benchmark.fractions=[0.0]", "benchmark.seeds=[0,1]")
    out = run(cfg, tmp_path / "run")
    table = (tmp_path / "run" / "results.csv").read_text()
    assert "test_acc" in table
    ws = Workspace(cfg, tmp_path / "ref")
    dm = ws.build_datamodule()
    images = torch.cat([b["image"] for b in dm.dataloader("test", batch_size=32)])
    labels = torch.cat([b["label"] for b in dm.dataloader("test", batch_size=32)])
    expected = [
        (_expected_logits(published[0], s, images).argmax(1) == labels).float().mean().item()
        for s in (0, 1)
    ]
    assert out["curves"]["random"]["0"] == pytest.approx(sum(expected) / 2, abs=1e-6)


def _written(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_missing_published_weights_fail_before_any_map_or_retrain(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "empty" / "hub"))
    cfg = make_cfg(*RESNET18, *ROAR, "benchmark.fractions=[0.5]", "benchmark.recipe.max_epochs=1")
    with pytest.raises(WeightsNotFoundError, match=f"Put the file {R18_FILE} .* at ") as err:
        run(cfg, tmp_path / "run")
    assert "benchmark.init=scratch" in str(err.value) and "\n" not in str(err.value)
    assert _written(tmp_path) == []
    # past the up-front checks, the benchmark itself fails before its first map or retrain
    with pytest.raises(WeightsNotFoundError, match=R18_FILE) as err:
        build_benchmark(cfg.benchmark).run(Workspace(cfg, tmp_path / "run").context())
    assert "benchmark.init=scratch" in str(err.value)
    assert _written(tmp_path) == []


def test_a_model_without_published_weights_is_refused(make_cfg, tmp_path) -> None:
    cfg = make_cfg(*ROAR)  # resnet8: pretrained null
    match = r"benchmark\.init=pretrained: model resnet8 has no published weights .* use benchmark"
    with pytest.raises(UserInputError, match=match + r"\.init=scratch"):
        check_config(cfg)


def test_pretrained_retrains_have_their_own_key_and_old_keys_stay(make_cfg, hub) -> None:
    keys = {}
    for init in ("scratch", "finetune", "pretrained"):
        # train_limit=3000: the benchmark's default when these keys were computed (now null)
        cfg = make_cfg("benchmark=roar", f"benchmark.init={init}", "benchmark.train_limit=3000")
        bench = build_benchmark(cfg.benchmark)
        assert bench.fingerprint_recipe()["init"] == init
        keys[init] = stable_hash(bench.params())
    assert len(set(keys.values())) == 3
    # the keys of the existing inits, computed on the code before `pretrained` existed, with
    # val_every=0 (roar.yaml's default since it validates once: a new key, so retrains rerun)
    assert keys["scratch"] == "17598ca0ee"
    assert keys["finetune"] != keys["scratch"] != keys["pretrained"]
    old = make_cfg("benchmark=roar", "benchmark.train_limit=3000", "benchmark.recipe.val_every=1")
    old_keys = {stable_hash(build_benchmark(old.benchmark).params())}
    old_ft = make_cfg("benchmark=roar", "benchmark.train_limit=3000", "benchmark.init=finetune",
                      "benchmark.recipe.val_every=1")  # fmt: skip
    old_keys.add(stable_hash(build_benchmark(old_ft.benchmark).params()))
    assert old_keys == {"f272b13c82", "806bb74fe0"}  # val_every=1: the keys of before
    check_config(make_cfg(*RESNET18, *ROAR))  # the published file is in the cache: passes
