"""TorchRay's Caffe-converted pointing-game classifiers (``model=vgg16_torchray`` /
``resnet50_torchray``, ``model.weights=torchray``).

The state dicts are written in TorchRay's file layout (Caffe key names, BGR first layer, VGG
classifier weights stored as convolutions, ResNet BatchNorm + Scale pairs) with the real shapes
and random values. The references are functional forwards written here from TorchRay's layer
definitions (``torchray/benchmark/models.py``): they read the file's own keys, run Caffe's
network as is (BGR input, 0-255 minus the BGR mean) and share no code with the loader.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.models import resnet50
from torchvision.transforms import functional as TF

from xai_bench.data.transforms import TensorResize, torchray_transform
from xai_bench.models.factory import build_model
from xai_bench.models.meta import ModelMeta
from xai_bench.models.torchray import load_torchray, torchray_resnet50, torchray_vgg16
from xai_bench.run import run
from xai_bench.utils.errors import UserInputError, WeightsNotFoundError
from xai_bench.utils.torchray_files import TORCHRAY_FILES, TORCHRAY_URL
from xai_bench.workspace import Workspace

BGR_MEAN = (103.939, 116.779, 123.68)  # TorchRay's get_transform: Caffe's mean, BGR order
VOC_RESNET, COCO_RESNET = TORCHRAY_FILES["resnet50"]["voc"], TORCHRAY_FILES["resnet50"]["coco"]
VGG_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)  # pool5 after features.28
VGG_POOL_AFTER = (2, 7, 14, 21, 28)
VGG_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)


def _conv(gen: torch.Generator, cout: int, cin: int, k: int) -> torch.Tensor:
    return torch.randn(cout, cin, k, k, generator=gen) * (2.0 / (cin * k * k)) ** 0.5


def caffe_vgg16_state(classes: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random VGG-16 weights in TorchRay's file layout: fc6/fc7 stored as convolutions."""
    gen = torch.Generator().manual_seed(seed)
    state, cin = {}, 3
    for i, cout in zip(VGG_CONVS, VGG_WIDTHS, strict=True):
        state[f"features.{i}.weight"] = _conv(gen, cout, cin, 3)
        state[f"features.{i}.bias"] = torch.randn(cout, generator=gen) * 0.1
        cin = cout
    state["classifier.0.weight"] = _conv(gen, 4096, 512, 7)  # Caffe fc6: 7x7 conv
    state["classifier.2.weight"] = _conv(gen, 4096, 4096, 1)  # fc7: 1x1 conv
    state["classifier.4.weight"] = torch.randn(classes, 4096, generator=gen) / 64
    for name, n in (("classifier.0", 4096), ("classifier.2", 4096), ("classifier.4", classes)):
        state[f"{name}.bias"] = torch.randn(n, generator=gen) * 0.1
    return state


def caffe_vgg16_forward(state: dict[str, torch.Tensor], x_bgr: torch.Tensor) -> torch.Tensor:
    """Caffe's VGG-16 on BGR input with TorchRay's keys (torchvision's 7x7 adaptive pooling
    before fc6, as TorchRay's ``get_model`` keeps it; the identity at 224 px)."""
    x = x_bgr
    for i in VGG_CONVS:
        x = F.relu(F.conv2d(x, state[f"features.{i}.weight"], state[f"features.{i}.bias"], 1, 1))
        if i in VGG_POOL_AFTER:
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)
    x = F.adaptive_avg_pool2d(x, 7).flatten(1)
    for j, name in enumerate(("classifier.0", "classifier.2", "classifier.4")):
        w = state[f"{name}.weight"]
        x = F.linear(x, w.reshape(w.shape[0], -1), state[f"{name}.bias"])
        x = F.relu(x) if j < 2 else x
    return x


def caffe_resnet50_state(classes: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ResNet-50 weights in TorchRay's file layout: Caffe BatchNorm (``.0``, running
    statistics) + Scale (``.1``, affine) pairs, biased ``conv1``."""
    gen = torch.Generator().manual_seed(seed)
    state = {"conv1.weight": _conv(gen, 64, 3, 7), "conv1.bias": torch.randn(64, generator=gen)}

    def bn(prefix: str, n: int, gamma: float = 1.0) -> None:
        state[f"{prefix}.0.running_mean"] = torch.randn(n, generator=gen) * 0.5
        state[f"{prefix}.0.running_var"] = torch.rand(n, generator=gen) * 1.5 + 0.5
        state[f"{prefix}.1.weight"] = (torch.rand(n, generator=gen) + 0.5) * gamma
        state[f"{prefix}.1.bias"] = torch.randn(n, generator=gen) * 0.1

    bn("bn1", 64)
    cin = 64
    for layer, (blocks, planes) in enumerate(((3, 64), (4, 128), (6, 256), (3, 512)), 1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            state[f"{p}.conv1.weight"] = _conv(gen, planes, cin, 1)
            state[f"{p}.conv2.weight"] = _conv(gen, planes, planes, 3)
            state[f"{p}.conv3.weight"] = _conv(gen, 4 * planes, planes, 1)
            bn(f"{p}.bn1", planes)
            bn(f"{p}.bn2", planes)
            bn(f"{p}.bn3", 4 * planes, gamma=0.3)
            if b == 0:
                state[f"{p}.downsample.0.weight"] = _conv(gen, 4 * planes, cin, 1)
                bn(f"{p}.downsample.1", 4 * planes)
            cin = 4 * planes
    state["fc.weight"] = torch.randn(classes, 2048, generator=gen) / 45
    state["fc.bias"] = torch.randn(classes, generator=gen) * 0.1
    return state


def caffe_resnet50_forward(state: dict[str, torch.Tensor], x_bgr: torch.Tensor) -> torch.Tensor:
    """Caffe's ResNet-50 on BGR input with TorchRay's keys: biased conv1, unpadded ceil-mode
    stem pooling, stride in the first 1x1 convolution of layer2..4."""

    def bn(x: torch.Tensor, p: str) -> torch.Tensor:
        stats, scale = (state[f"{p}.0.running_mean"], state[f"{p}.0.running_var"]), f"{p}.1"
        w, b = state[f"{scale}.weight"], state[f"{scale}.bias"]
        return F.batch_norm(x, *stats, w, b, training=False, eps=1e-5)

    x = F.conv2d(x_bgr, state["conv1.weight"], state["conv1.bias"], stride=2, padding=3)
    x = F.max_pool2d(F.relu(bn(x, "bn1")), 3, 2, 0, ceil_mode=True)
    for layer, blocks in enumerate((3, 4, 6, 3), 1):
        for b in range(blocks):
            p, stride = f"layer{layer}.{b}", 2 if b == 0 and layer > 1 else 1
            out = F.relu(bn(F.conv2d(x, state[f"{p}.conv1.weight"], stride=stride), f"{p}.bn1"))
            out = F.relu(bn(F.conv2d(out, state[f"{p}.conv2.weight"], padding=1), f"{p}.bn2"))
            out = bn(F.conv2d(out, state[f"{p}.conv3.weight"]), f"{p}.bn3")
            if b == 0:
                down = F.conv2d(x, state[f"{p}.downsample.0.weight"], stride=stride)
                x = bn(down, f"{p}.downsample.1")
            x = F.relu(out + x)
    return F.linear(x.mean((2, 3)), state["fc.weight"], state["fc.bias"])


def caffe_input(rgb01: torch.Tensor) -> torch.Tensor:
    """TorchRay's (Caffe's) input of a [0, 1] RGB image: BGR, 0-255, minus the BGR mean."""
    return rgb01[:, [2, 1, 0]] * 255 - torch.tensor(BGR_MEAN).view(1, 3, 1, 1)


def normalized(rgb01: torch.Tensor, meta: ModelMeta) -> torch.Tensor:
    """What the datamodules feed the model: ``Normalize(meta.mean, meta.std)``."""
    return TF.normalize(rgb01, list(meta.mean), list(meta.std))


def assert_logits_close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ref.std() > 1e-2 * ref.abs().max()  # the logits differ between classes
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def uninitialised(builder, classes: int) -> torch.nn.Module:
    """A network of ``builder`` without torchvision's weight init (5 s for VGG-16 on a busy
    CPU); every parameter is loaded afterwards."""
    with torch.device("meta"):
        net = builder(classes)
    return net.to_empty(device="cpu")


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text
    return text


def written(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "torch" not in p.relative_to(root).parts]


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache (``TORCH_HOME``); TorchRay's files go to its ``checkpoints``."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    assert folder == tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="module")
def vgg_state() -> dict[str, torch.Tensor]:
    return caffe_vgg16_state(20)


def test_vgg16_gives_the_logits_of_caffes_network(make_cfg, vgg_state) -> None:
    cfg = make_cfg("model=vgg16_torchray", "dataset=voc07")
    meta = Workspace(cfg, cfg.paths.output_dir).meta
    torch.manual_seed(0)
    net = uninitialised(torchray_vgg16, 20)
    net = load_torchray(net, vgg_state, "vgg16_voc.pth.tar").eval()
    # 40 x 56 px: pool4 -> pool5 takes 5 x 7 to 3 x 4 with Caffe's ceil rounding (2 x 3 floor)
    x = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_logits_close(
            net(normalized(x, meta)), caffe_vgg16_forward(vgg_state, caffe_input(x))
        )
    assert isinstance(net.get_submodule(meta.cam_layer), torch.nn.ReLU)  # relu5_3
    for layer in (*meta.blocks, *meta.block_layers.values()):
        net.get_submodule(layer)


def test_resnet50_torchray_weights_load_from_torchrays_cache(make_cfg, hub) -> None:
    """``model.weights=torchray`` picks the dataset's file in TorchRay's cache and gives
    Caffe's logits; the same file passed as a path loads the same way."""
    state = caffe_resnet50_state(20)
    torch.save(state, hub / VOC_RESNET)
    x = torch.rand(2, 3, 64, 80, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = caffe_resnet50_forward(state, caffe_input(x))
        for weights in ("torchray", str(hub / VOC_RESNET)):
            cfg = make_cfg("model=resnet50_torchray", "dataset=voc07", f"model.weights={weights}")
            ws = Workspace(cfg, cfg.paths.output_dir)
            assert ws.weights_file() == hub / VOC_RESNET
            assert_logits_close(ws.model(normalized(x, ws.meta)), ref)
    net = ws.model
    assert net.conv1.bias is not None and net.layer2[0].conv1.stride == (2, 2)
    assert isinstance(net.get_submodule(ws.meta.cam_layer), torch.nn.Sequential)  # layer4


def test_caffe_preset_maps_rgb_to_torchrays_input_exactly(make_cfg) -> None:
    x = torch.rand(1, 3, 5, 7, generator=torch.Generator().manual_seed(3))
    for model in ("vgg16_torchray", "resnet50_torchray"):
        cfg = make_cfg(f"model={model}", "dataset=voc07")
        assert cfg.model.preprocess == "caffe"
        # TorchRay's get_transform: Normalize(mean=[m / 255 for m in reversed(bgr_mean)],
        # std=[1 / 255] * 3), applied to ToTensor's [0, 1] RGB image
        torchray_mean = [m / 255.0 for m in reversed(BGR_MEAN)]
        assert list(cfg.model.mean) == torchray_mean
        assert list(cfg.model.std) == [1 / 255.0] * 3
        meta = Workspace(cfg, cfg.paths.output_dir).meta
        ours = normalized(x, meta)
        assert torch.equal(ours, TF.normalize(x, torchray_mean, [1 / 255.0] * 3))
        # = 0-255 RGB minus (123.68, 116.779, 103.939); flipped: Caffe's BGR input
        rgb_mean = torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1)
        torch.testing.assert_close(ours, x * 255 - rgb_mean, rtol=0, atol=1e-4)
        torch.testing.assert_close(ours[:, [2, 1, 0]], caffe_input(x), rtol=0, atol=1e-4)


@pytest.mark.parametrize(("size", "expected"), [((300, 200), (224, 336)),
                                                ((200, 300), (336, 224)),
                                                ((300, 199), (224, 337)),
                                                ((40, 40), (224, 224))])  # fmt: skip
def test_torchray_resize_keeps_the_aspect(size: tuple[int, int], expected) -> None:
    """TorchRay's pointing-game resize: shorter side 224, the longer int(224 * long / short)."""
    rgb = torch.rand(3, size[1], size[0], generator=torch.Generator().manual_seed(4))
    image = TF.to_pil_image(rgb)
    assert isinstance(image, Image.Image) and image.size == size
    mean, std = [m / 255.0 for m in reversed(BGR_MEAN)], [1 / 255.0] * 3
    out = torchray_transform(224, mean, std)(image)
    assert out.shape == (3, *expected)
    tensor = TF.to_tensor(image)[None]
    ref = F.interpolate(tensor, expected, mode="bilinear", align_corners=False)[0]
    assert torch.equal(out, TF.normalize(ref, mean, std))
    assert TensorResize((100, 120))(tensor[0]).shape == (3, 100, 120)


def test_missing_file_names_url_and_place_and_nothing_is_written(make_cfg, tmp_path, hub) -> None:
    path = hub / TORCHRAY_FILES["vgg16"]["voc"]
    cfg = make_cfg("model=vgg16_torchray", "dataset=voc07", "benchmark=overview")
    with pytest.raises(WeightsNotFoundError) as info:
        run(cfg, tmp_path / "run")
    text = one_line(info.value)
    assert f"Put the file {path.name} (from {TORCHRAY_URL}{path.name}) at {path}" in text
    assert written(tmp_path) == []
    # the loader says the same when called without the up-front check
    meta = Workspace(cfg, tmp_path / "run").meta
    with pytest.raises(WeightsNotFoundError, match=re.escape(f"at {path} ")):
        build_model(torchray_vgg16(20), meta, weights="torchray", torchray_file=path)


def test_coco_file_for_voc07_is_refused_and_nothing_is_written(make_cfg, tmp_path, hub) -> None:
    """The COCO file (80 classes) where the VOC07 file belongs, and with an 8-class dataset."""
    torch.save(caffe_resnet50_state(80), hub / VOC_RESNET)
    cfg = make_cfg("model=resnet50_torchray", "dataset=voc07")
    with pytest.raises(UserInputError) as info:
        Workspace(cfg, tmp_path / "run").model  # noqa: B018
    assert one_line(info.value) == (
        f"weights file {hub / VOC_RESNET} is TorchRay's resnet50 for 80 classes (TorchRay's "
        f"COCO model) but the model has 20 (the dataset's classes): use TorchRay's VOC07 file "
        f"{VOC_RESNET}, or a dataset with 80 classes"
    )
    (hub / VOC_RESNET).rename(hub / COCO_RESNET)
    cfg = make_cfg("model=resnet50_torchray", "dataset=shapes", "benchmark=overview",
                   f"+model.torchray.files.shapes={COCO_RESNET}")  # fmt: skip
    with pytest.raises(UserInputError, match=r"for 80 classes .* but the model has 8 "):
        run(cfg, tmp_path / "run")
    assert written(tmp_path) == []


def test_vgg16_coco_file_is_refused_for_voc(vgg_state) -> None:
    coco = {**vgg_state, "classifier.4.weight": torch.zeros(80, 4096),
            "classifier.4.bias": torch.zeros(80)}  # fmt: skip
    with pytest.raises(UserInputError) as info:
        load_torchray(uninitialised(torchray_vgg16, 20), coco, "vgg16_coco-d82c8150.pth.tar")
    assert one_line(info.value).endswith(
        f"use TorchRay's VOC07 file {TORCHRAY_FILES['vgg16']['voc']}, or a dataset with 80 classes"
    )


def test_torchray_file_needs_torchrays_network(make_cfg, tmp_path) -> None:
    """A TorchRay file for torchvision's ResNet-50, and ``model.weights=torchray`` for a model
    without TorchRay weights, name the model config to use; nothing is written."""
    with pytest.raises(UserInputError, match=r"model=resnet50_torchray$"):
        load_torchray(resnet50(num_classes=20), caffe_resnet50_state(20), "resnet50_voc.pth")
    cfg = make_cfg("model=vgg16", "dataset=voc07", "model.weights=torchray")
    with pytest.raises(UserInputError, match=r"use model=vgg16_torchray or model=resnet50_t"):
        run(cfg, tmp_path / "run")
    assert written(tmp_path) == []
    cfg = make_cfg("model=resnet50_torchray", "dataset=imagenet")
    with pytest.raises(UserInputError, match=r"no TorchRay weights for dataset=imagenet; .*"
                       r"names files for voc07, coco2014, coco2017"):  # fmt: skip
        run(cfg, tmp_path / "run")


def test_config_files_are_torchrays() -> None:
    from omegaconf import OmegaConf

    from xai_bench.utils.configs import CONFIG_DIR

    for arch in ("vgg16", "resnet50"):
        files = OmegaConf.load(Path(CONFIG_DIR) / "model" / f"{arch}_torchray.yaml").torchray.files
        assert files.voc07 == TORCHRAY_FILES[arch]["voc"]
        assert files.coco2014 == files.coco2017 == TORCHRAY_FILES[arch]["coco"]


def test_nets_build_like_torchray() -> None:
    """Caffe's rounding and strides give TorchRay's feature sizes at 224 px (7 x 7)."""
    with torch.device("meta"):  # shapes only
        vgg, res = torchray_vgg16(20), torchray_resnet50(80)
        assert all(m.ceil_mode for m in vgg.features if isinstance(m, torch.nn.MaxPool2d))
        assert vgg.features(torch.zeros(1, 3, 227, 227)).shape[-2:] == (8, 8)  # floor: 7
        assert res.maxpool(res.conv1(torch.zeros(1, 3, 224, 224))).shape[-2:] == (56, 56)
        assert res.layer4(res.layer3(torch.zeros(1, 512, 28, 28))).shape[-2:] == (7, 7)
    assert res.layer2[0].conv2.stride == (1, 1) and res.fc.out_features == 80


def test_cli_reports_a_missing_file_in_one_line_without_torch(tmp_path) -> None:
    """The CLI's early check finds the file's place without importing torch (exit status 2)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYDRA_", "RANK", "LOCAL_"))}
    env.update(TORCH_HOME=str(tmp_path / "torch"), XAI_BENCH_ROOT=str(tmp_path))
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "xai_bench", "model=resnet50_torchray",
         "dataset=coco2017"],
        cwd=Path(__file__).resolve().parent.parent, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr[-2000:]
    (line,) = [ln for ln in res.stderr.splitlines() if ln.startswith("xai-bench: error: ")]
    path = tmp_path / "torch" / "hub" / "checkpoints" / COCO_RESNET
    assert f"(from {TORCHRAY_URL}{COCO_RESNET}) at {path} " in line
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in res.stderr.splitlines() if "|" in ln}
    assert "torch" not in imported
    assert written(tmp_path) == []
