"""OPPSD's networks (Fig. 4, ROAR): every (model, dataset) pair composes, builds and explains.

OPPSD's ROAR figure uses the CIFAR ResNet-50 of weiaicunzai/pytorch-cifar100 on CIFAR-100,
torchvision's ResNet-50 on Food-101 and Birds-250, and timm's ViT-B/16 on all three; on
CIFAR-100 the ViT upsamples the 32 px images to 224 inside its forward (x7, bilinear). Data are
tiny files in each dataset's real on-disk format; weights are random, nothing is downloaded.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models import resnet50

from xai_bench.methods.hooks import capture, hooks_left
from xai_bench.models.cifar_resnet import CIFARResNet, resnet50_cifar
from xai_bench.models.layers import to_feature_map
from xai_bench.models.vit import timm_vit
from xai_bench.utils.errors import UserInputError
from xai_bench.workspace import Workspace

# (model, dataset) -> (image side, classes, CAM map [C, h, w]) of OPPSD Fig. 4
PAIRS = {
    ("resnet50_cifar", "cifar100"): (32, 100, (2048, 4, 4)),
    ("resnet50", "food101"): (224, 101, (2048, 7, 7)),
    ("resnet50", "birds250"): (224, 250, (2048, 7, 7)),
    ("vit_b16", "cifar100"): (32, 100, (768, 14, 14)),
    ("vit_b16", "food101"): (224, 101, (768, 14, 14)),
    ("vit_b16", "birds250"): (224, 250, (768, 14, 14)),
}
RESNET50_CIFAR_PARAMS = 23_705_252  # 100 classes; torchvision's 25_557_032 at 1000 classes


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def write_cifar100(data: Path, n: int = 2) -> None:
    """``cifar-100-python/{train,test,meta}`` pickles of ``n`` random 32 px images each."""
    folder = data / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        entry = {"batch_label": split, "data": _noise(rng, (n, 3072)),
                 "fine_labels": [7 * i % 100 for i in range(n)],
                 "coarse_labels": [0] * n, "filenames": [f"{i}.png" for i in range(n)]}  # fmt: skip
        (folder / split).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"fine_label_names": [f"f{i}" for i in range(100)],
            "coarse_label_names": [f"k{i}" for i in range(20)]}  # fmt: skip
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))


def _jpeg(path: Path, rng: np.random.Generator, size: tuple[int, int] = (60, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_noise(rng, (size[1], size[0], 3))).save(path, quality=95)


def write_food101(data: Path) -> None:
    """``food-101/images/<class>/<id>.jpg`` and ``meta/{classes.txt,train.json,test.json}``."""
    base, rng = data / "food-101", np.random.default_rng(1)
    meta: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    for cls in ("apple_pie", "sushi"):
        for split, ids in (("train", (0, 1)), ("test", (100,))):
            meta[split][cls] = [f"{cls}/{i}" for i in ids]
            for i in ids:
                _jpeg(base / "images" / cls / f"{i}.jpg", rng)
    (base / "meta").mkdir()
    for split, entries in meta.items():
        (base / "meta" / f"{split}.json").write_text(json.dumps(entries))
    (base / "meta" / "classes.txt").write_text("apple_pie\nsushi\n")


def write_birds250(data: Path) -> None:
    """``birds250/{train,valid,test}/<CLASS NAME>/<i>.jpg`` ImageFolders."""
    rng = np.random.default_rng(2)
    for split in ("train", "valid", "test"):
        for cls in ("ABBOTTS BABBLER", "BLACK & YELLOW BROADBILL"):
            _jpeg(data / "birds250" / split / cls / "1.jpg", rng)


WRITERS = {"cifar100": write_cifar100, "food101": write_food101, "birds250": write_birds250}


@pytest.mark.parametrize(("model", "dataset"), sorted(PAIRS))
def test_fig4_pair_builds_and_explains(make_cfg, tmp_path, monkeypatch, model, dataset) -> None:
    side, classes, cam_shape = PAIRS[model, dataset]
    monkeypatch.delenv("XAI_BENCH_DATA", raising=False)
    WRITERS[dataset](tmp_path / "data")
    cfg = make_cfg(f"model={model}", f"dataset={dataset}", "model.weights=random",
                   "method=gradcam", "train.batch_size=2")  # fmt: skip
    ws = Workspace(cfg, tmp_path)
    meta, net = ws.meta, ws.model
    assert meta.input_size == (3, side, side) and meta.num_classes == classes
    batch = next(iter(ws.build_datamodule().dataloader("test")))
    x, y = batch["image"], batch["label"]
    assert x.shape == (2, 3, side, side)
    with torch.no_grad(), capture(net, [meta.cam_layer]) as rec:
        logits = net(x)
    assert logits.shape == (2, classes) and torch.isfinite(logits).all()
    fmap = to_feature_map(rec[meta.cam_layer][0], meta.reshape, meta.num_prefix_tokens)
    assert fmap.shape == (2, *cam_shape)
    cam = ws.explainer(net)(x, y)
    assert cam.shape == (2, 1, side, side) and torch.isfinite(cam).all() and cam.min() >= 0
    assert hooks_left(net) == 0


def test_vit_b16_resizes_like_oppsd(make_cfg) -> None:
    """On 32 px inputs the ViT equals timm's ViT-B/16 behind OPPSD's ``Upsample(x7, bilinear)``,
    and with the resize switched off it refuses them in one line naming the keys."""
    cfg = make_cfg("model=vit_b16", "dataset=cifar100", "model.weights=random")
    ws = Workspace(cfg, cfg.paths.output_dir)
    net = ws.fresh_net().eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    upsample = nn.Upsample(scale_factor=7, mode="bilinear")
    with torch.no_grad():
        big = upsample(x)
        torch.testing.assert_close(net(x), net(big), rtol=0, atol=1e-5)
        strict = make_cfg("model=vit_b16", "dataset=cifar100", "model.net.resize_input=false",
                          "+model.net.depth=1")  # fmt: skip
        small = Workspace(strict, strict.paths.output_dir).fresh_net().eval()
        with pytest.raises(UserInputError) as err:
            small(x)
        assert small(big).shape == (1, 100)
    message = str(err.value)
    assert "\n" not in message and "224x224" in message and "32x32" in message
    assert "dataset.image_size=224" in message and "model.net.resize_input=true" in message
    with pytest.raises(UserInputError, match=r"resize_input must be true or false"):
        timm_vit("vit_base_patch16_224", 100, resize_input="yes")  # type: ignore[arg-type]


def _bottleneck_params(c_in: int, width: int, projection: bool) -> int:
    out = 4 * width
    convs = c_in * width + 9 * width * width + width * out + (c_in * out if projection else 0)
    norms = 2 * (width + width + out + (out if projection else 0))
    return convs + norms


def test_cifar_resnet50_architecture() -> None:
    net = resnet50_cifar(num_classes=100).eval()
    expected, c_in = 3 * 64 * 9 + 2 * 64 + 2048 * 100 + 100, 64  # stem, BN, fc
    for depth, width in zip((3, 4, 6, 3), (64, 128, 256, 512)):
        for i in range(depth):
            expected += _bottleneck_params(c_in, width, projection=i == 0)
            c_in = 4 * width
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == expected == RESNET50_CIFAR_PARAMS
    # torchvision's ResNet-50 differs only by its 7x7 stem: 7*7*3*64 vs 3*3*3*64 weights
    assert sum(p.numel() for p in resnet50(num_classes=100).parameters()) - n_params == 7680
    # ResNet-50 = 49 convs on the main path + fc; 4 projection shortcuts; no max-pool
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 53 and len([m for m in net.modules() if isinstance(m, nn.Linear)]) == 1
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    assert net.conv1[0].kernel_size == (3, 3) and net.conv1[0].stride == (1, 1)
    strides = [stage[0].residual_function[3].stride[0] for stage in
               (net.conv2_x, net.conv3_x, net.conv4_x, net.conv5_x)]  # fmt: skip
    assert strides == [1, 2, 2, 2]
    names = ("conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), capture(net, list(names)) as rec:
        out = net(x)
    shapes = [tuple(rec[n][0].shape) for n in names]
    assert shapes == [(2, 64, 32, 32), (2, 256, 32, 32), (2, 512, 16, 16), (2, 1024, 8, 8),
                      (2, 2048, 4, 4)]  # fmt: skip
    assert out.shape == (2, 100)
    # the reference code's state-dict names (weiaicunzai/pytorch-cifar100 models/resnet.py)
    keys = net.state_dict().keys()
    assert len(keys) == 53 + 53 * 5 + 2  # conv weights, BN (w, b, mean, var, count), fc
    for key in ("conv1.0.weight", "conv1.1.running_var", "conv2_x.0.shortcut.0.weight",
                "conv5_x.2.residual_function.7.num_batches_tracked", "fc.bias"):  # fmt: skip
        assert key in keys


def test_cifar_resnet_rejects_bad_stages() -> None:
    with pytest.raises(ValueError, match="4 positive entries"):
        CIFARResNet(depths=(3, 4, 6))
