"""TorchRay's models as its pointing benchmark runs them: fully convolutional at aspect-kept sizes.

The references are functional forwards written here from TorchRay's layer definitions in
fully-convolutional mode (``torchray/benchmark/models.py``: ``_caffe_vgg16_to_fc``,
``_caffe_resnet50_to_fc``; ``examples/attribution_benchmark.py``: ResNet-50's
``AvgPool2d((7, 7), stride=1)``; ``torchray/attribution/common.py``: ``get_pointing_gradient``).
They read the file's own keys (BGR input, Caffe layout) and share no code with the networks.
Sizes are near the smallest TorchRay's networks accept (pool5 / layer4 at least 7 x 7: 193 px a
side for VGG-16, 195 px for ResNet-50) with a score map of more than one position.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tests.test_torchray_models import (
    VGG_CONVS,
    VGG_POOL_AFTER,
    caffe_input,
    caffe_resnet50_state,
    caffe_vgg16_state,
    uninitialised,
)
from xai_bench.models.torchray import (
    load_torchray,
    score_logits,
    torchray_resnet50,
    torchray_vgg16,
)

#: Caffe's mean in RGB order: ``x * 255 - RGB_MEAN`` is what the ``*_torchray`` configs feed
RGB_MEAN = torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1)


def torchray_vgg16_scores(state: dict[str, torch.Tensor], x_bgr: torch.Tensor) -> torch.Tensor:
    """TorchRay's fully convolutional VGG-16: features, then fc6 as a 7 x 7 convolution (the
    Linear weight viewed as ``[4096, 512, 7, 7]``), fc7 and fc8 as 1 x 1 convolutions; dropout
    is the identity in eval mode. Returns the score map ``[B, K, h, w]``."""
    x = x_bgr
    for i in VGG_CONVS:
        x = F.relu(F.conv2d(x, state[f"features.{i}.weight"], state[f"features.{i}.bias"], 1, 1))
        if i in VGG_POOL_AFTER:
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)
    for j, (name, k) in enumerate((("classifier.0", 7), ("classifier.2", 1), ("classifier.4", 1))):
        w = state[f"{name}.weight"]
        x = F.conv2d(x, w.reshape(w.shape[0], -1, k, k), state[f"{name}.bias"])
        x = F.relu(x) if j < 2 else x
    return x


def torchray_resnet50_scores(state: dict[str, torch.Tensor], x_bgr: torch.Tensor) -> torch.Tensor:
    """TorchRay's fully convolutional ResNet-50 of its backprop methods: Caffe's ResNet-50,
    ``AvgPool2d((7, 7), stride=1)`` on layer4, ``fc`` as a 1 x 1 convolution."""

    def bn(x: torch.Tensor, p: str) -> torch.Tensor:
        mean, var = state[f"{p}.0.running_mean"], state[f"{p}.0.running_var"]
        return F.batch_norm(x, mean, var, state[f"{p}.1.weight"], state[f"{p}.1.bias"], eps=1e-5)

    x = F.conv2d(x_bgr, state["conv1.weight"], state["conv1.bias"], stride=2, padding=3)
    x = F.max_pool2d(F.relu(bn(x, "bn1")), 3, 2, 0, ceil_mode=True)
    for layer, blocks in enumerate((3, 4, 6, 3), 1):
        for b in range(blocks):
            p, stride = f"layer{layer}.{b}", 2 if b == 0 and layer > 1 else 1
            out = F.relu(bn(F.conv2d(x, state[f"{p}.conv1.weight"], stride=stride), f"{p}.bn1"))
            out = F.relu(bn(F.conv2d(out, state[f"{p}.conv2.weight"], padding=1), f"{p}.bn2"))
            out = bn(F.conv2d(out, state[f"{p}.conv3.weight"]), f"{p}.bn3")
            if b == 0:
                x = bn(F.conv2d(x, state[f"{p}.downsample.0.weight"], stride=stride),
                       f"{p}.downsample.1")  # fmt: skip
            x = F.relu(out + x)
    x = F.avg_pool2d(x, (7, 7), stride=1)
    w = state["fc.weight"]
    return F.conv2d(x, w.reshape(w.shape[0], -1, 1, 1), state["fc.bias"])


def pointing_gradient(pred_y: torch.Tensor, y: int) -> torch.Tensor:
    """TorchRay's ``get_pointing_gradient`` (batch of one), as written there."""
    backward_gradient = torch.zeros_like(pred_y)
    backward_gradient[0, y] = torch.exp(pred_y[0, y])
    backward_gradient[0, y] /= backward_gradient[0, y].sum()
    return backward_gradient


def close(ours: torch.Tensor, ref: torch.Tensor, rtol: float = 1e-4) -> None:
    torch.testing.assert_close(ours, ref, rtol=rtol, atol=rtol * float(ref.abs().max()))


def test_score_logits_is_the_log_sum_exp_whose_gradient_is_torchrays_seed() -> None:
    scores = torch.tensor([[[[0.0, math.log(3.0)]], [[2.0, 2.0]]]], requires_grad=True)
    logits = score_logits(scores)  # [1, 2, 1, 2] -> [1, 2]
    torch.testing.assert_close(logits, torch.tensor([[math.log(4.0), 2.0 + math.log(2.0)]]))
    (grad,) = torch.autograd.grad(logits[0, 0], scores)
    torch.testing.assert_close(grad, torch.tensor([[[[0.25, 0.75]], [[0.0, 0.0]]]]))
    torch.testing.assert_close(grad, pointing_gradient(scores.detach(), 0))
    one = torch.randn(3, 5, 1, 1)  # a 1 x 1 map (224 px inputs): the scores themselves
    assert torch.equal(score_logits(one), one.flatten(1))


def test_vgg16_runs_fully_convolutionally_as_torchray() -> None:
    """193 x 257 px: pool5 is 7 x 9 (ceil rounding), so fc6 slides over 1 x 3 positions."""
    state = caffe_vgg16_state(20, seed=5)
    net = load_torchray(uninitialised(torchray_vgg16, 20), state, "vgg16_voc.pth.tar").eval()
    x = torch.rand(1, 3, 193, 257, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        ref = torchray_vgg16_scores(state, caffe_input(x))
        ours = net.score_map(x * 255 - RGB_MEAN)
        assert ref.shape == ours.shape == (1, 20, 1, 3)
        assert ref.std(-1).mean() > 1e-2 * ref.abs().max()  # the positions differ
        close(ours, ref)
        close(net(x * 255 - RGB_MEAN), ref.flatten(2).logsumexp(2))


def test_resnet50_runs_fully_convolutionally_with_torchrays_gradients() -> None:
    """200 x 264 px (layer4 7 x 9, scores 1 x 3) and its portrait 264 x 200 (3 x 1): the score
    maps, the logits, and the input gradient of each image's class, which equals TorchRay's
    backward pass seeded with ``get_pointing_gradient`` (one image at a time, as TorchRay). In
    float64: in float32 a few ReLUs near 0 flip between the two forwards (relative gradient
    error about 1e-3); in float64 the two agree to round-off."""
    state = {k: v.double() for k, v in caffe_resnet50_state(20, seed=7).items()}
    net = load_torchray(uninitialised(torchray_resnet50, 20), state, "resnet50_voc.pth")
    net = net.double().eval()
    gen = torch.Generator().manual_seed(8)
    for size, positions, y in (((200, 264), (1, 3), 4), ((264, 200), (3, 1), 11)):
        x = torch.rand(1, 3, *size, generator=gen, dtype=torch.float64)
        ours_in = (x * 255 - RGB_MEAN.double()).requires_grad_(True)
        scores = net.score_map(ours_in)
        ref_in = caffe_input(x).requires_grad_(True)
        ref = torchray_resnet50_scores(state, ref_in)
        assert scores.shape == ref.shape == (1, 20, *positions)
        assert ref.flatten(2).std(-1).mean() > 1e-2 * ref.abs().max()
        close(scores.detach(), ref.detach(), rtol=1e-9)
        logits = net(ours_in)
        close(logits.detach(), ref.detach().flatten(2).logsumexp(2), rtol=1e-9)
        (ours_grad,) = torch.autograd.grad(logits[0, y], ours_in)
        seed = pointing_gradient(ref.detach(), y)
        assert seed[0, y].max() > 0.5  # far from a uniform seed (the mean over positions)
        ref.backward(seed)
        close(ours_grad, ref_in.grad[:, [2, 1, 0]], rtol=1e-9)  # Caffe's BGR input channels
