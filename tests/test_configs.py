"""Every config of every group composes and instantiates (found by globbing, so new files count)."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import group_options
from xai_bench.data.base import ImageDataModule
from xai_bench.methods.base import MethodNotApplicableError
from xai_bench.run import build_benchmark
from xai_bench.workspace import Workspace


@pytest.mark.parametrize("name", group_options("model"))
def test_model_configs_build(make_cfg, name: str) -> None:
    data = "dataset=digits" if name == "mlp" else "dataset=shapes"
    if name in ("resnet50", "vgg16", "vgg19"):
        data = "dataset.image_size=64"
    cfg = make_cfg(f"model={name}", data)
    ws = Workspace(cfg, cfg.paths.output_dir)
    net = ws.fresh_net()
    meta = ws.meta
    c, h, w = meta.input_size
    with torch.no_grad():
        out = net.eval()(torch.zeros(2, c, h, w))
    assert out.shape == (2, meta.num_classes)


@pytest.mark.parametrize("name", group_options("dataset"))
def test_dataset_configs_instantiate(make_cfg, name: str) -> None:
    model = "model=mlp" if name in ("digits", "mnist") else "model=resnet8"
    cfg = make_cfg(f"dataset={name}", model)
    dm = instantiate(cfg.dataset.datamodule)
    assert isinstance(dm, ImageDataModule)
    assert dm.image_size == cfg.dataset.image_size
    assert len(dm.mean) == cfg.dataset.channels == len(cfg.dataset.std)


@pytest.mark.parametrize("name", group_options("method"))
def test_method_configs_instantiate(make_cfg, name: str) -> None:
    cfg = make_cfg(f"method={name}", "model.net.widths=[4,8,8]", "model.weights=random")
    ws = Workspace(cfg, cfg.paths.output_dir)
    try:
        explainer = ws.explainer(ws.fresh_net().eval())
    except MethodNotApplicableError as err:  # e.g. PatternNet on a net with batch norm
        assert str(err)
        return
    x = torch.randn(2, *ws.meta.input_size)
    attr = explainer(x, torch.tensor([0, 3]))
    assert attr.shape[0] == 2 and attr.shape[-2:] == x.shape[-2:]
    assert torch.isfinite(attr).all()


@pytest.mark.parametrize("name", group_options("benchmark"))
def test_benchmark_configs_instantiate(make_cfg, name: str) -> None:
    cfg = make_cfg(f"benchmark={name}")
    bench = build_benchmark(cfg.benchmark)
    assert bench.name == cfg.benchmark.name


@pytest.mark.parametrize("name", group_options("trainer"))
def test_trainer_configs_compose(make_cfg, name: str) -> None:
    cfg = make_cfg(f"trainer={name}")
    assert {"accelerator", "devices", "strategy", "precision"} <= set(cfg.trainer)


@pytest.mark.parametrize("name", group_options("experiment"))
def test_experiment_configs_compose(make_cfg, name: str) -> None:
    cfg = make_cfg(f"experiment={name}")
    # its own outputs folder, or a shared one by prefix (embedded_multi writes to embedded/)
    assert name.startswith(cfg.experiment_name)
    build_benchmark(cfg.benchmark)
    instantiate(cfg.dataset.datamodule)


@pytest.mark.parametrize("launcher", ["basic", "submitit_local", "submitit_slurm", "slurm"])
def test_launcher_presets_compose(tmp_path, launcher: str) -> None:
    from hydra import compose, initialize_config_dir

    from xai_bench.utils.configs import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="run",
            overrides=[f"hydra/launcher={launcher}", f"paths.root_dir={tmp_path}"],
            return_hydra_config=True,
        )
    assert cfg.hydra.launcher._target_.rsplit(".", 1)[-1] in (
        "BasicLauncher", "LocalLauncher", "SlurmLauncher",
    )  # fmt: skip
    if launcher == "slurm":
        assert cfg.hydra.launcher.timeout_min == 240 and cfg.hydra.launcher.gpus_per_node == 1
        assert cfg.hydra.launcher.submitit_folder.startswith(str(tmp_path))


RESNET8_MULTI_RECIPE = (
    "train.lr=3e-3 train.batch_size=128 train.max_epochs=8 train.step_size=3 train.gamma=0.5 "
    "train.milestones=[]"
)


@pytest.mark.parametrize(
    ("experiment", "key"),
    [
        ("embedded", "resnet8-shapes-0be2149820"),
        ("embedded_multi", "vgg16_small-shapes_multi-bd619e9abe"),
        ("embedded_vgg", "vgg16_small-shapes-98a987d3c1"),
        # the ResNet-8 that embedded_multi trained before it moved to the VGG (issue 12)
        (
            f"embedded_multi model=resnet8 model.net.widths=[16,32,64] {RESNET8_MULTI_RECIPE}",
            "resnet8-shapes_multi-f951cf9a76",
        ),
        ("input_invariance", "mlp-digits-d92bdb9644"),
    ],
)
def test_embedded_checkpoint_keys_are_stable(make_cfg, experiment: str, key: str) -> None:
    """A code or config move must not change these keys: users' trained models would retrain."""
    cfg = make_cfg(*f"experiment={experiment}".split())
    assert Workspace(cfg, cfg.paths.output_dir).checkpoint_dir.name == key
