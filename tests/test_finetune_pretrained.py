"""Fine-tuning from published ImageNet weights (``benchmark=train train.init=pretrained``).

A torchvision ResNet-18 with random "published" weights (1000 classes) is written under its real
file name into a temporary torch hub cache; the runs fine-tune it on 32 px ``shapes`` (8 classes).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from omegaconf import OmegaConf
from torch import nn

from xai_bench.models.finetune import find_head, load_backbone
from xai_bench.models.small import ResNet8, SmallVGG, small_vit
from xai_bench.run import run
from xai_bench.training.fit import recipe_trainer_kwargs
from xai_bench.training.lit import Classifier
from xai_bench.training.recipe import Recipe
from xai_bench.utils.errors import UserInputError, WeightsNotFoundError
from xai_bench.utils.hashing import stable_hash
from xai_bench.workspace import Workspace

REPO = Path(__file__).resolve().parent.parent
R18_FILE = "resnet18-f37072fd.pth"  # torchvision's published name of ResNet18_Weights.IMAGENET1K_V1
RESNET18 = (
    "model=resnet50", "model.name=resnet18", "model.net._target_=torchvision.models.resnet18",
    "model.pretrained.name=ResNet18_Weights.IMAGENET1K_V1", f"model.pretrained.file={R18_FILE}",
)  # fmt: skip
TINY = (
    "benchmark=train", "trainer=cpu", "benchmark.progress=false", "checkpoint_every_n_steps=0",
    "dataset.datamodule.n_train=16", "dataset.datamodule.n_val=8", "dataset.datamodule.n_test=8",
    "train.batch_size=16", "train.max_epochs=1",
)  # fmt: skip
FINETUNE = (*RESNET18, *TINY, "train.init=pretrained")
# run.yaml's `train:` block before the fine-tuning fields existed, and its hash (computed on
# the code before them): default recipes must keep exactly this checkpoint key
OLD_TRAIN = {
    "optimizer": "adam", "lr": 0.001, "weight_decay": 0.0001, "batch_size": 128,
    "max_epochs": 10, "step_size": 0, "gamma": 0.5, "label_smoothing": 0.0, "augment": False,
    "milestones": [], "warmup_epochs": 0, "momentum": 0.9, "nesterov": True,
}  # fmt: skip
OLD_TRAIN_HASH = "c3fb696ed1"
OLD_DEFAULT_CHECKPOINT = "resnet8-shapes-d5eaff291d"  # model resnet8, dataset shapes, seed 0


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict[str, torch.Tensor]:
    """Random ImageNet-shaped ResNet-18 weights (BN statistics too) saved as the published
    file in a hub folder; returns the state dict."""
    torch.manual_seed(1234)
    net = torchvision.models.resnet18(num_classes=1000)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    state = net.state_dict()
    hub = tmp_path_factory.mktemp("torch") / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    torch.save(state, hub / "checkpoints" / R18_FILE)
    state["_hub"] = str(hub)  # type: ignore[assignment]
    return state


@pytest.fixture
def hub(published, monkeypatch) -> Path:
    """The torch hub folder holding the published ResNet-18 file."""
    path = Path(published["_hub"])  # type: ignore[arg-type]
    monkeypatch.setattr(torch.hub, "_hub_dir", str(path))
    return path


@pytest.fixture
def empty_hub(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "empty_torch" / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(path))
    return path


def _weights(published: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in published.items() if k != "_hub"}


def _trained(ws: Workspace) -> dict[str, torch.Tensor]:
    ws.train(progress=False)
    return torch.load(ws.checkpoint_dir / "model.pt", weights_only=True)


def _backbone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


# ------------------------------------------------------------------ (a) the starting network
def test_finetuning_starts_from_the_published_backbone_and_a_seeded_head(
    make_cfg, tmp_path, hub, published
) -> None:
    cfg = make_cfg(*FINETUNE, "train.max_epochs=0")
    ws = Workspace(cfg, tmp_path / "run")
    net = ws.start_net().eval()
    assert net.fc.out_features == 8

    ref = torchvision.models.resnet18(num_classes=1000)
    ref.load_state_dict(_weights(published))
    ref.fc = nn.Identity()
    torch.manual_seed(0)  # the run's seed: the new head is what a seeded build initialises
    head = torchvision.models.resnet18(num_classes=8).fc
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = ref.eval()(x) @ head.weight.T + head.bias  # [4, 512] features -> 8 logits
        assert torch.allclose(net(x), expected, atol=1e-5)
        assert not torch.allclose(net(x), torchvision.models.resnet18(num_classes=8).eval()(x))
    for key, value in _backbone(_weights(published)).items():
        assert torch.equal(net.state_dict()[key], value), key

    # max_epochs=0: the checkpoint is the network training started from, and
    # model.weights=trained evaluates it with the dataset's 8 classes
    ws.train(progress=False)
    evaluated = Workspace(make_cfg(*FINETUNE, "train.max_epochs=0", "model.weights=trained",
                                   "train_if_missing=false"), tmp_path / "eval").model  # fmt: skip
    assert evaluated.fc.out_features == 8 and not evaluated.training
    with torch.no_grad():
        assert torch.allclose(evaluated(x), expected, atol=1e-5)


def test_scratch_ignores_the_published_weights(make_cfg, tmp_path, hub, published) -> None:
    net = Workspace(make_cfg(*RESNET18, *TINY), tmp_path).start_net()
    torch.manual_seed(0)
    fresh = torchvision.models.resnet18(num_classes=8)
    assert torch.equal(net.conv1.weight, fresh.conv1.weight)
    assert not torch.equal(net.conv1.weight, published["conv1.weight"])


def test_a_timm_vit_gets_its_head_replaced(tmp_path, monkeypatch) -> None:
    """timm: the published file from the Hugging Face cache layout, the head from
    ``get_classifier()``; logits = published features through the new head."""
    import huggingface_hub.constants
    from safetensors.torch import save_file

    torch.manual_seed(7)
    state = small_vit(num_classes=1000, depth=2, embed_dim=32, num_heads=2).state_dict()
    repo = tmp_path / "hf" / "models--timm--tiny_vit_test"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    save_file(state, str(repo / "snapshots" / "abc123" / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))

    from xai_bench.models.finetune import load_pretrained_backbone

    torch.manual_seed(0)
    net = small_vit(num_classes=8, depth=2, embed_dim=32, num_heads=2)
    new_head = {k: v.clone() for k, v in net.head.state_dict().items()}
    assert find_head(net) == "head"
    pretrained = {"source": "timm", "name": "timm/tiny_vit_test"}
    load_pretrained_backbone(net, pretrained, "vit_test", "head")
    ref = small_vit(num_classes=1000, depth=2, embed_dim=32, num_heads=2)
    ref.load_state_dict(state)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = ref.eval().forward_head(ref.forward_features(x), pre_logits=True)  # [2, 32]
        expected = feats @ new_head["weight"].T + new_head["bias"]
        assert torch.allclose(net.eval()(x), expected, atol=1e-5)


def test_a_1000_class_dataset_keeps_the_published_head(published) -> None:
    net = torchvision.models.resnet18(num_classes=1000)
    load_backbone(net, _weights(published), "published.pth", "fc")
    assert torch.equal(net.fc.weight, published["fc.weight"])


def test_the_head_is_found_by_architecture() -> None:
    assert find_head(torchvision.models.resnet18(num_classes=3)) == "fc"
    assert find_head(SmallVGG(num_classes=3)) == "classifier.6"  # torchvision VGG's names
    assert find_head(ResNet8(num_classes=3, widths=(4, 8, 8))) == "fc"
    assert find_head(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))) == "2"
    with pytest.raises(UserInputError, match=r"has no nn\.Linear classifier head: set model\.head"):
        find_head(nn.Sequential(nn.Conv2d(3, 4, 3)))
    with pytest.raises(UserInputError, match=r"model\.head=layer4 is not an nn\.Linear layer"):
        find_head(torchvision.models.resnet18(num_classes=3), "layer4")


# ------------------------------------------------------------------ (b) per-group learning rates
def test_head_and_backbone_get_their_own_learning_rates(make_cfg, tmp_path, hub) -> None:
    recipe = Recipe(optimizer="sgd", lr=0.1, head_lr=0.01, backbone_lr=0.0)
    net = torchvision.models.resnet18(num_classes=8)
    groups = Classifier(net, recipe).configure_optimizers().param_groups
    rates = {(g["name"], g["weight_decay"]): g["lr"] for g in groups}
    assert rates == {("backbone", 1e-4): 0.0, ("backbone", 0.0): 0.0,
                     ("head", 1e-4): 0.01, ("head", 0.0): 0.01}  # fmt: skip
    head = [p for g in groups if g["name"] == "head" for p in g["params"]]
    assert {id(p) for p in head} == {id(net.fc.weight), id(net.fc.bias)}
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    # without fine-tuning fields: the two groups (decay, no decay) at lr, as before
    plain = Classifier(net, Recipe(lr=0.1)).configure_optimizers().param_groups
    assert [(g["lr"], len(g["params"])) for g in plain] == [(0.1, 21), (0.1, 41)]

    # one optimizer step (16 images, batch 16) with backbone_lr=0: only the head moves
    ws = Workspace(make_cfg(*FINETUNE, "train.backbone_lr=0", "train.head_lr=0.01"), tmp_path)
    start = ws.start_net().state_dict()
    trained = _trained(ws)
    params = {name for name, _ in ws.start_net().named_parameters()}
    for key in params - {"fc.weight", "fc.bias"}:
        assert torch.equal(trained[key], start[key]), key
    assert not torch.equal(trained["fc.weight"], start["fc.weight"])


# ------------------------------------------------------------------ (c) head epochs
def test_head_epochs_freeze_the_backbone_then_release_it(make_cfg, tmp_path, hub) -> None:
    head_only = Workspace(make_cfg(*FINETUNE, "train.head_epochs=1"), tmp_path / "a")
    start = head_only.start_net().state_dict()
    trained = _trained(head_only)
    for key, value in _backbone(start).items():  # weights and BN statistics: eval mode
        assert torch.equal(trained[key], value), key
    assert not torch.equal(trained["fc.weight"], start["fc.weight"])

    both = Workspace(make_cfg(*FINETUNE, "train.head_epochs=1", "train.max_epochs=2"),
                     tmp_path / "b")  # fmt: skip
    trained = _trained(both)
    assert not torch.equal(trained["conv1.weight"], start["conv1.weight"])
    assert not torch.equal(trained["bn1.running_mean"], start["bn1.running_mean"])


# ------------------------------------------------------------------ (d) trainer options
def test_gradient_accumulation_reaches_the_trainer(make_cfg, tmp_path, hub) -> None:
    overrides = (*FINETUNE, "dataset.datamodule.n_train=64", "train.accumulate_grad_batches=2")
    ws = Workspace(make_cfg(*overrides), tmp_path)
    ws.train(progress=False)
    last = torch.load(ws.checkpoint_dir / "lightning" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2  # 4 batches of 16, 2 per optimizer step


def test_precision_reaches_the_trainer_and_fp16_is_refused_on_cpu(make_cfg, tmp_path) -> None:
    base = {"accelerator": "cpu", "precision": "32-true", "devices": 1}
    assert recipe_trainer_kwargs(Recipe(precision="bf16"), base) == {
        **base, "precision": "bf16-mixed", "accumulate_grad_batches": 1,
    }  # fmt: skip
    assert recipe_trainer_kwargs(Recipe(accumulate_grad_batches=8), base)["precision"] == "32-true"
    with pytest.raises(UserInputError, match="precision must be null or one of"):
        Recipe(precision="fp8")
    ws = Workspace(make_cfg(*TINY, "model.net.widths=[4,8,8]", "train.precision=16-mixed"),
                   tmp_path)  # fmt: skip
    with pytest.raises(UserInputError, match=r"16-mixed \(float16 autocast\) needs a CUDA") as err:
        ws.train(progress=False)
    assert "\n" not in str(err.value) and not ws.checkpoint_dir.exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_mixed_precision_finetuning_on_gpu(make_cfg, tmp_path, hub, published, precision) -> None:
    overrides = (*FINETUNE, "trainer=gpu", f"train.precision={precision}", "train.max_epochs=2",
                 "train.head_epochs=1", "dataset.datamodule.n_train=32")  # fmt: skip
    ws = Workspace(make_cfg(*overrides), tmp_path)
    metrics = ws.train(progress=False)
    trained = torch.load(ws.checkpoint_dir / "model.pt", weights_only=True)
    assert all(v.dtype in (torch.float32, torch.int64) for v in trained.values())
    assert torch.isfinite(torch.tensor(metrics["test_loss"]))
    assert not torch.equal(trained["conv1.weight"], published["conv1.weight"])


def test_multilabel_finetuning_uses_bce(make_cfg, tmp_path, hub, published) -> None:
    cfg = make_cfg(*FINETUNE, "dataset=shapes_multi", "train.head_epochs=1")
    ws = Workspace(cfg, tmp_path)
    metrics = ws.train(progress=False)
    # BCE over 8 sigmoid outputs starts near ln 2 = 0.69 (softmax cross-entropy: ln 8 = 2.08)
    assert 0.0 <= metrics["test_acc"] <= 1.0 and 0.3 < metrics["test_loss"] < 1.2
    last = torch.load(ws.checkpoint_dir / "lightning" / "last.ckpt", weights_only=False)
    assert last["hyper_parameters"]["multilabel"] is True
    trained = torch.load(ws.checkpoint_dir / "model.pt", weights_only=True)
    for key, value in _backbone(_weights(published)).items():  # the published backbone, kept
        assert torch.equal(trained[key], value), key


# ------------------------------------------------------------------ (e) bad input
def _written(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_missing_published_weights_fail_before_anything_is_written(
    make_cfg, tmp_path, empty_hub
) -> None:
    cfg = make_cfg(*FINETUNE)
    with pytest.raises(WeightsNotFoundError, match=f"Put the file {R18_FILE} .* at ") as err:
        run(cfg, tmp_path / "run")
    assert str(empty_hub / "checkpoints" / R18_FILE) in str(err.value)
    assert "train.init=scratch" in str(err.value) and "\n" not in str(err.value)
    assert _written(tmp_path) == []
    # model.weights=trained training it on the fly: the same error from the workspace
    ws = Workspace(make_cfg(*FINETUNE, "model.weights=trained"), tmp_path / "run")
    with pytest.raises(WeightsNotFoundError, match=R18_FILE):
        ws.model  # noqa: B018
    assert not ws.checkpoint_dir.exists() and _written(tmp_path) == []


def test_missing_published_weights_exit_2_from_the_cli(tmp_path) -> None:
    ranks = ("HYDRA_", "LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "SLURM_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ranks)}
    env.update(TORCH_HOME=str(tmp_path / "torch"), XAI_BENCH_ROOT=str(tmp_path),
               XAI_BENCH_DATA=str(tmp_path / "data"))  # fmt: skip
    res = subprocess.run(
        [sys.executable, "-m", "xai_bench", *FINETUNE], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("xai-bench: error: ")]
    assert len(lines) == 1 and R18_FILE in lines[0] and "Traceback" not in res.stderr
    assert not (tmp_path / "outputs").exists()


def test_a_model_without_published_weights_is_refused(make_cfg, tmp_path) -> None:
    cfg = make_cfg(*TINY, "train.init=pretrained")  # resnet8: pretrained null
    match = r"model resnet8 has no published weights \(pretrained: null in xai_bench/configs/"
    with pytest.raises(UserInputError, match=match + r"model/resnet8.yaml\); use train.init=s"):
        run(cfg, tmp_path / "run")
    ws = Workspace(cfg, tmp_path / "run")
    with pytest.raises(UserInputError, match=match):
        ws.train(progress=False)
    assert _written(tmp_path) == []


def test_published_weights_of_another_architecture_are_refused(
    make_cfg, tmp_path, hub, monkeypatch
) -> None:
    other = tmp_path / "hub"
    (other / "checkpoints").mkdir(parents=True)
    (other / "checkpoints" / "resnet50-0676ba61.pth").symlink_to(hub / "checkpoints" / R18_FILE)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(other))
    ws = Workspace(make_cfg(*TINY, "model=resnet50", "train.init=pretrained"), tmp_path / "r")
    with pytest.raises(UserInputError, match=r"do not fit ResNet: its head fc expects") as err:
        ws.train(progress=False)
    assert "\n" not in str(err.value) and not ws.checkpoint_dir.exists()


def test_recipe_fields_are_checked() -> None:
    with pytest.raises(UserInputError, match="init must be one of scratch, pretrained"):
        Recipe(init="imagenet")
    with pytest.raises(UserInputError, match=r"head_epochs must lie in \[0, max_epochs=2\]"):
        Recipe(head_epochs=3, max_epochs=2)
    with pytest.raises(UserInputError, match="backbone_lr must be null or a number >= 0"):
        Recipe(backbone_lr=-1)
    with pytest.raises(UserInputError, match="accumulate_grad_batches must be >= 1"):
        Recipe(accumulate_grad_batches=0)
    with pytest.raises(UserInputError, match=r"benchmark\.recipe\.init=pretrained is only read by"):
        Recipe(init="pretrained").refuse_init("benchmark.recipe", "...")


# ------------------------------------------------------------------ (f) checkpoint keys
def test_default_keys_are_unchanged_and_finetuning_keys_differ(
    make_cfg, tmp_path, monkeypatch
) -> None:
    import xai_bench.workspace as workspace

    hashed: list = []
    spy = lambda obj: hashed.append(obj) or stable_hash(obj)  # noqa: E731
    monkeypatch.setattr(workspace, "stable_hash", spy)
    cfg = make_cfg()
    folder = Workspace(cfg, tmp_path).checkpoint_dir
    assert hashed[-1]["train"] == OLD_TRAIN and stable_hash(OLD_TRAIN) == OLD_TRAIN_HASH
    assert folder.name == OLD_DEFAULT_CHECKPOINT, "the default checkpoint key changed"
    assert set(OmegaConf.to_container(cfg.train)) - set(OLD_TRAIN) == {
        "init", "head_epochs", "head_lr", "backbone_lr", "accumulate_grad_batches", "precision",
        "val_every",
    }  # fmt: skip
    same = Workspace(make_cfg("train.init=scratch", "train.accumulate_grad_batches=1"), tmp_path)
    assert same.checkpoint_dir == folder
    keys = {folder}
    for override in ("train.init=pretrained", "train.head_epochs=1", "train.head_lr=0.01",
                     "train.backbone_lr=0.0001", "train.accumulate_grad_batches=8",
                     "train.precision=bf16-mixed"):  # fmt: skip
        keys.add(Workspace(make_cfg(override), tmp_path).checkpoint_dir)
    assert len(keys) == 7
    # ROAR's and Group-CAM's recipe keys are unchanged too
    assert stable_hash(Recipe().key_dict()) == "f3281c7476"
