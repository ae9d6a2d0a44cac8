"""The experiment files of the papers' models: training and evaluation share one recipe.

Every file composes for training (``benchmark=train``) and for its evaluations, passes the
up-front checks (with the published files it reads faked in temporary caches), holds the
paper's recipe, and keys the trained checkpoint alike for training and evaluation, so the
evaluated model is the trained one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from xai_bench.checks import check_config
from xai_bench.run import build_benchmark
from xai_bench.training.recipe import Recipe
from xai_bench.utils.torchray_files import torchray_file
from xai_bench.workspace import Workspace

VIT = {"init": "pretrained", "optimizer": "adamw", "lr": 6e-4, "weight_decay": 1e-4,
       "batch_size": 64, "accumulate_grad_batches": 8, "max_epochs": 10, "warmup_epochs": 1.0,
       "precision": "16-mixed", "milestones": (), "augment": False}  # fmt: skip
RESNET = {"init": "scratch", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False,
          "weight_decay": 5e-4, "batch_size": 64, "max_epochs": 120, "milestones": (30, 60, 90),
          "gamma": 0.2, "warmup_epochs": 1.0, "augment": False}  # fmt: skip
CIFAR = {**RESNET, "batch_size": 128, "max_epochs": 200, "milestones": (60, 120, 160)}
GCAM = {"init": "pretrained", "optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "nesterov": False,
        "weight_decay": 1e-4, "batch_size": 256, "max_epochs": 20, "step_size": 15, "gamma": 0.1,
        "augment": True}  # fmt: skip
PRUNE = {"init": "scratch", "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4,
         "batch_size": 256, "max_epochs": 50, "step_size": 10, "gamma": 0.5,
         "augment": True}  # fmt: skip
#: experiment -> (model, dataset, the paper's recipe, its own evaluation benchmark)
TRAINED = {
    "oppsd_vit_b16_cifar100": ("vit_b16", "cifar100", VIT, "roar_oppsd"),
    "oppsd_vit_b16_food101": ("vit_b16", "food101", VIT, "roar_oppsd"),
    "oppsd_vit_b16_birds250": ("vit_b16", "birds250", VIT, "roar_oppsd"),
    "oppsd_resnet50_food101": ("resnet50", "food101", RESNET, "roar_oppsd"),
    "oppsd_resnet50_birds250": ("resnet50", "birds250", RESNET, "roar_oppsd"),
    "oppsd_resnet50_cifar100": ("resnet50_cifar", "cifar100", CIFAR, "roar_oppsd"),
    "gcam_resnet50_imagenet": ("resnet50", "imagenet", GCAM, "groupcam_finetune_paper"),
    "prune_resnet8_cifar10": ("resnet8", "cifar10", PRUNE, "sanity_checks"),
}
POINTING = {
    f"pointing_torchray_{m}_{d}": (f"{m}_torchray", d) for m in ("vgg16", "resnet50")
    for d in ("voc07", "coco2014")
}  # fmt: skip
#: benchmarks each trained model is also evaluated with
EVALUATIONS = {
    "roar_oppsd": ("roar",),
    "groupcam_finetune_paper": ("groupcam_finetune",),
    "sanity_checks": ("pixel_perturbation", "roar"),
}


@pytest.fixture
def caches(tmp_path, monkeypatch) -> Path:
    """Empty torch hub and Hugging Face caches under ``tmp_path``; returns the hub folder."""
    import huggingface_hub.constants

    hub = tmp_path / "torch" / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return hub


def fake_published_files(cfg, hub: Path) -> None:
    """Empty stand-ins of the files ``cfg``'s model reads (published or TorchRay weights) in
    the temporary caches: the checks only look for them."""
    model = cfg.model
    if model.get("torchray"):
        torchray_file(model.name, model.torchray, cfg.dataset.name, hub).touch()
    pretrained = model.get("pretrained")
    if pretrained and pretrained.source == "torchvision":
        (hub / "checkpoints" / pretrained.file).touch()
    elif pretrained and pretrained.source == "timm":
        import huggingface_hub.constants

        repo = Path(huggingface_hub.constants.HF_HUB_CACHE)
        repo = repo / f"models--{str(pretrained.name).replace('/', '--')}"
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text("abc")
        (repo / "snapshots" / "abc").mkdir(parents=True, exist_ok=True)
        (repo / "snapshots" / "abc" / "model.safetensors").touch()


def _compose(make_cfg, name: str, *overrides: str):
    return make_cfg(f"experiment={name}", *overrides)


def _recipe_without_init(train) -> Recipe:
    return Recipe.from_mapping({**OmegaConf.to_container(train, resolve=True), "init": "scratch"})


@pytest.mark.parametrize("name", list(TRAINED))
def test_trained_models_compose_check_and_share_their_checkpoint(
    make_cfg, caches, tmp_path, name: str
) -> None:
    model, dataset, recipe, own = TRAINED[name]
    train = _compose(make_cfg, name, "benchmark=train")
    fake_published_files(train, caches)
    assert (train.model.name, train.dataset.name, train.experiment_name) == (
        model, dataset, name.split("_")[0],
    )  # fmt: skip
    # the paper's numbers, the rest at the defaults
    expected = {**Recipe().to_dict(), **recipe, "milestones": list(recipe.get("milestones", ()))}
    assert Recipe.from_mapping(train.train).to_dict() == expected
    check_config(train)
    key = Workspace(train, tmp_path / "t").checkpoint_dir
    # evaluation: the experiment's own benchmark (no benchmark=) and the plain one
    for bench in (None, own, *EVALUATIONS[own]):
        cfg = _compose(make_cfg, name, *([f"benchmark={bench}"] if bench else []))
        check_config(cfg)
        build_benchmark(cfg.benchmark)
        assert Workspace(cfg, tmp_path / "e").checkpoint_dir == key, bench
    default = _compose(make_cfg, name).benchmark
    assert default == _compose(make_cfg, name, f"benchmark={own}").benchmark
    # the recipe is in the key: the run.yaml default recipe trains another checkpoint
    plain = make_cfg(f"model={model}", f"dataset={dataset}", "benchmark=train")
    assert Workspace(plain, tmp_path / "p").checkpoint_dir != key
    if recipe["init"] == "pretrained":  # fine-tuned: a key of its own, not from scratch
        scratch = _compose(make_cfg, name, "benchmark=train", "train.init=scratch")
        assert Workspace(scratch, tmp_path / "s").checkpoint_dir != key


@pytest.mark.parametrize("name", [n for n, v in TRAINED.items() if v[3] == "roar_oppsd"])
def test_oppsd_roar_retrains_as_the_model_was_trained(make_cfg, name: str) -> None:
    """benchmark=roar_oppsd: OPPSD's removal, its retrains under the train: recipe and init
    (ViT-B/16: from the published weights, ResNet-50: from scratch), no augmentation."""
    cfg = _compose(make_cfg, name)
    bench = build_benchmark(cfg.benchmark)
    assert (bench.fill, bench.target, bench.ranking, bench.post_steps, bench.train_limit) == (
        "image_mean", "label", "pixel", ["channel_mean", "abs"], None,
    )  # fmt: skip
    assert bench.init == TRAINED[name][2]["init"]
    assert bench.recipe == _recipe_without_init(cfg.train)
    assert "fullgrad" in cfg.benchmark.methods and "oppsd_noble" in cfg.benchmark.methods


def test_gcam_fine_tunes_both_arms_under_the_train_recipe(make_cfg) -> None:
    cfg = _compose(make_cfg, "gcam_resnet50_imagenet")
    bench = build_benchmark(cfg.benchmark)
    assert bench.recipe == _recipe_without_init(cfg.train)
    assert cfg.model.weights == "pretrained" and cfg.method.name == "groupcam_finetune"


@pytest.mark.parametrize("name", list(POINTING))
def test_pointing_models_compose_with_their_torchray_files(make_cfg, caches, name: str) -> None:
    model, dataset = POINTING[name]
    for bench in (None, "pointing_game", "pointing_game_restricted"):
        cfg = _compose(make_cfg, name, *([f"benchmark={bench}"] if bench else []))
        assert (cfg.model.name, cfg.dataset.name, cfg.model.weights) == (model, dataset, "torchray")
        assert cfg.benchmark.name == (bench or "pointing_game")
        # TorchRay's protocol, from experiment=pointing_torchray
        assert (cfg.benchmark.n_images, cfg.benchmark.tolerance) == (None, 15)
        assert cfg.benchmark.gt == ("masks" if dataset.startswith("coco") else "boxes")
        fake_published_files(cfg, caches)
        check_config(cfg)
        build_benchmark(cfg.benchmark)
