"""LRP-0 / LRP-gamma and PatternNet / PatternAttribution: known answers, conservation, agreement
with zennit, pattern learning on the paper's toy data, batching and model safety."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from functools import partial

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from zennit.attribution import Gradient as ZennitGradient
from zennit.composites import LayerMapComposite, layer_map_base
from zennit.rules import Epsilon, Gamma, ZPlus
from zennit.torchvision import ResNetCanonizer, VGGCanonizer
from zennit.types import Linear as ZennitLinear

from xai_bench.methods.base import Explainer, MethodNotApplicableError, input_gradient
from xai_bench.methods.hooks import hooks_left
from xai_bench.methods.lrp import LRP
from xai_bench.methods.pattern import PatternAttribution, PatternNet, pattern_from_stats
from xai_bench.models.meta import ModelMeta
from xai_bench.models.small import MLP, ResNet8, small_vit

F64 = torch.float64
GAMMAS = (0.0, 0.25, math.inf)
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b: int = 3, size: int = 16, seed: int = 4, c: int = 3) -> Tensor:
    return torch.randn(b, c, size, size, generator=gen(seed), dtype=F64)


def cnn_meta(relu_only: bool = True) -> ModelMeta:
    return ModelMeta.create("tiny", 8, (3, 16, 16), MEAN, STD, relu_only=relu_only)


def randomise_bn(model: nn.Module, shift: bool = True, eps: float | None = None) -> nn.Module:
    """Random BatchNorm statistics and affine parameters (no shift: ``t = 0`` after merging)."""
    g = gen(5)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1 * shift)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.1 * shift)
            if eps is not None:
                m.eps = eps
    return model


def vgg_bn(bias: bool = True, bn: bool = True) -> nn.Module:
    """Small torchvision-VGG-like net: features (conv-BN-ReLU, max pool), avg pool, classifier."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for cin, cout, pool in ((3, 8, False), (8, 8, True), (8, 16, True)):
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=bias)]
        layers += [nn.BatchNorm2d(cout)] if bn else []
        layers += [nn.ReLU(inplace=True)] + ([nn.MaxPool2d(2)] if pool else [])
    net = nn.Sequential()
    net.features = nn.Sequential(*layers)
    net.avgpool = nn.AdaptiveAvgPool2d(2)
    net.flatten = nn.Flatten()
    net.classifier = nn.Sequential(
        nn.Linear(64, 32, bias=bias),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(32, 8, bias=bias),
    )
    return randomise_bn(net).to(F64).eval()


def resnet8(dtype: torch.dtype = F64, shift: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return randomise_bn(ResNet8(num_classes=8, widths=(4, 8, 8)), shift).to(dtype).eval()


def resnet18(eps: float | None = None) -> nn.Module:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10)
    return randomise_bn(net, eps=eps).to(F64).eval()


def plain_cnn(c: int = 1) -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(c, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1),
        nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(6 * 14 * 14, 10),
    ).to(F64).eval()  # fmt: skip


def tiny_mlp() -> nn.Module:
    torch.manual_seed(3)
    return MLP(784, (16, 16, 16), 10).to(F64).eval()


def digits(n: int = 256, seed: int = 6) -> Tensor:
    """Structured 28x28 inputs: a random blob image per class plus noise."""
    protos = torch.rand(10, 1, 28, 28, generator=gen(0), dtype=F64)
    labels = torch.randint(0, 10, (n,), generator=gen(seed))
    return protos[labels] + 0.3 * torch.randn(n, 1, 28, 28, generator=gen(seed + 1), dtype=F64)


def batches_of(x: Tensor, size: int = 64) -> list[tuple[Tensor, Tensor]]:
    return [(x[i : i + size], torch.zeros(len(x[i : i + size]))) for i in range(0, len(x), size)]


TARGETS = torch.tensor([0, 5, 2])


# ---------------------------------------------------------------- LRP: known answers


@pytest.mark.parametrize("net", ["vgg_nobias", "resnet8"])
def test_lrp0_is_gradient_times_input(net: str) -> None:
    """LRP-0 = x * grad on a bias-free ReLU net, and also with biases and merged BatchNorm:
    exactly with epsilon = 0 (atol 1e-13), within 1e-6 relative with the default 1e-9."""
    model = vgg_bn(bias=False, bn=False) if net == "vgg_nobias" else resnet8()
    x = images()
    ref = x * input_gradient(model, x, TARGETS)[0]
    torch.testing.assert_close(
        LRP(model, epsilon=0.0).attribute(x, TARGETS), ref, atol=1e-13, rtol=0
    )
    out = LRP(model).attribute(x, TARGETS)
    torch.testing.assert_close(out, ref, atol=1e-6 * float(ref.abs().max()), rtol=0)


def test_lrp_gamma_known_answer_one_layer() -> None:
    """One linear layer, positive inputs: R = z x (w + g w+) / (x.(w + g w+) + b + g b+), and
    for gamma = inf R = z x w+ / (x.w+ + b+) (rtol 1e-12)."""
    lin = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).to(F64)
    with torch.no_grad():
        lin[1].weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.0, 1.0, -1.0, 2.0]]))
        lin[1].bias.copy_(torch.tensor([0.5, -1.0]))
    x = torch.tensor([1.0, 2.0, 3.0, 0.5], dtype=F64).view(1, 1, 2, 2)
    w, b = lin[1].weight[0].detach(), lin[1].bias[0].detach()
    z = x.flatten() @ w + b
    for gamma in (0.0, 0.25, 2.0, math.inf):
        if math.isinf(gamma):
            wm, bm = w.clamp(min=0), b.clamp(min=0)
        else:
            wm, bm = w + gamma * w.clamp(min=0), b + gamma * b.clamp(min=0)
        expected = z * x.flatten() * wm / (x.flatten() @ wm + bm)
        out = LRP(lin, gamma=gamma, epsilon=0.0).attribute(x, torch.tensor([0]))
        torch.testing.assert_close(out.flatten(), expected, rtol=1e-12, atol=0)


CONSERVATION = [("vgg_nobias", g) for g in GAMMAS] + [("resnet8_noshift", g) for g in GAMMAS[:2]]


@pytest.mark.parametrize(("net", "gamma"), CONSERVATION)
def test_lrp_conserves_relevance(net: str, gamma: float) -> None:
    """Bias-free nets (max/avg pooling; ResNet-8 with residual additions and BatchNorm merged,
    zero shifts): the input relevance sums to the target logit (rtol 1e-6).

    Not for gamma = inf on the ResNet: a residual branch can carry relevance on a negative
    output, and the z+ rule drops it where that unit has no positive contribution (zennit too).
    """
    if net == "vgg_nobias":
        model = vgg_bn(bias=False, bn=False)
    else:
        model = resnet8(shift=False)
        model.fc.bias.data.zero_()
    x = images()
    with torch.no_grad():
        logit = model(x).gather(1, TARGETS.view(-1, 1)).squeeze(1)
    total = LRP(model, gamma=gamma).attribute(x, TARGETS).sum(dim=(1, 2, 3))
    torch.testing.assert_close(total, logit, rtol=1e-6, atol=1e-12)


def test_lrp_batchnorm_merge_only_on_the_unmodified_output() -> None:
    """conv -> ReLU(inplace) -> BN is not merged (the BN sees a changed tensor): same result as
    with an out-of-place ReLU, and different from a net where the BN follows the conv."""
    torch.manual_seed(7)
    conv, bn, head = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Linear(4 * 16 * 16, 8)
    randomise_bn(bn)

    def net(*mods: nn.Module) -> nn.Module:
        return nn.Sequential(*copy.deepcopy(mods), nn.Flatten(), copy.deepcopy(head)).to(F64)

    nets = [
        net(conv, nn.ReLU(inplace=True), bn),
        net(conv, nn.ReLU(), bn),
        net(conv, bn, nn.ReLU()),
    ]
    x = images()
    outs = [LRP(n.eval(), gamma=math.inf).attribute(x, TARGETS) for n in nets]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=0)
    assert not torch.allclose(outs[1], outs[2])


# ---------------------------------------------------------------- LRP: zennit


def zennit_lrp(model: nn.Module, x: Tensor, target: Tensor, gamma: float, canonizer, eps: float):
    """zennit's Epsilon / Gamma / ZPlus at every linear layer, its default Norm rules on sums and
    average pooling, Pass on activations and BatchNorm; relevance seeded with the logit."""
    if gamma == 0:
        rule = Epsilon(epsilon=eps)
    else:
        rule = ZPlus(stabilizer=eps) if math.isinf(gamma) else Gamma(gamma, stabilizer=eps)
    composite = LayerMapComposite([*layer_map_base(eps), (ZennitLinear, rule)], [canonizer])
    with ZennitGradient(model, composite) as attributor:
        _, relevance = attributor(x, lambda out: out * F.one_hot(target, out.shape[1]).to(out))
    return relevance


@pytest.mark.parametrize("net", ["vgg_bn", "resnet18"])
def test_lrp_matches_zennit(net: str) -> None:
    """Equal to zennit for gamma in {0, 0.25, inf} on a VGG-style net with BatchNorm and on
    torchvision ResNet-18 (64 px, random BN statistics), float64.

    Exact definitions (atol 1e-10 x max|R|) with BatchNorm eps = 0 and stabiliser 1e-30: zennit's
    canonizer turns a merged BN into ``x / sqrt(1 + eps)`` rather than the identity, and also
    stabilises residual sums and average pooling. With the defaults (BN eps 1e-5, stabiliser
    1e-9) the difference stays below 1e-3 x max|R| (it is about 1e-4 on ResNet-18).
    """
    canonizer, size, b = (VGGCanonizer, 16, 3) if net == "vgg_bn" else (ResNetCanonizer, 64, 1)
    x, target = images(b, size), TARGETS[:b]
    for eps, bn_eps, tol in ((1e-30, 0.0, 1e-10), (1e-9, None, 1e-3)):
        model = vgg_bn() if net == "vgg_bn" else resnet18()
        randomise_bn(model, eps=bn_eps)
        for gamma in GAMMAS if bn_eps == 0 else (0.25,):
            ref = zennit_lrp(model, x, target, gamma, canonizer(), eps)
            out = LRP(model, gamma=gamma, epsilon=eps).attribute(x, target)
            torch.testing.assert_close(out, ref, atol=tol * float(ref.abs().max()), rtol=0)


# ---------------------------------------------------------------- PatternNet / PatternAttribution


def toy_linear() -> tuple[nn.Module, Tensor, Tensor, Tensor]:
    """The paper's toy example (Kindermans et al. 2018, Fig. 2): signal direction a_s = (1, 0),
    distractor a_d = (1, 1), filter w = (1, -1) so that y = w^T x = s. Returns (net, x, s, a_s)."""
    a_s, a_d = torch.tensor([1.0, 0.0], dtype=F64), torch.tensor([1.0, 1.0], dtype=F64)
    n = 20_000
    s, d = torch.randn(n, generator=gen(0), dtype=F64), torch.randn(n, generator=gen(1), dtype=F64)
    x = (s[:, None] * a_s + d[:, None] * a_d).view(n, 1, 1, 2)
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2)).to(F64)
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))
        net[1].bias.zero_()
    return net, x, s, a_s


def test_pattern_recovers_the_signal_direction() -> None:
    """Toy data x = s a_s + d a_d: the learnt a+ points along a_s (cosine > 0.99, norm within
    2%), the filter w does not (cosine 0.71), and PatternNet returns the signal s a_s (relative
    error < 5%)."""
    net, x, s, a_s = toy_linear()
    pn = PatternNet(net).fit(batches_of(x, 1000))
    a = pn.patterns["1"][0]
    assert F.cosine_similarity(a, a_s, dim=0) > 0.99
    assert abs(float(a.norm()) - 1) < 0.02
    assert F.cosine_similarity(net[1].weight[0].detach(), a_s, dim=0) < 0.75
    out = pn.attribute(x[:4], torch.zeros(4, dtype=torch.long)).flatten(1)
    signal = s[:4, None] * a_s
    assert float((out - signal).norm() / signal.norm()) < 0.05


def test_pattern_attribution_single_linear_layer() -> None:
    """One linear layer: PatternAttribution = w * a+ * y and PatternNet = a+ * y for the target
    unit (rtol 1e-12), with y the target logit."""
    net, x, _, _ = toy_linear()
    pn, pa = (
        PatternNet(net).fit(batches_of(x, 1000)),
        PatternAttribution(net).fit(batches_of(x, 1000)),
    )
    xs, target = x[:3], torch.tensor([0, 1, 1])
    w, a = net[1].weight.detach()[target], pn.patterns["1"][target]
    y = (xs.flatten(1) * w).sum(1, keepdim=True)
    torch.testing.assert_close(pa.attribute(xs, target).flatten(1), w * a * y, rtol=1e-12, atol=0)
    torch.testing.assert_close(pn.attribute(xs, target).flatten(1), a * y, rtol=1e-12, atol=0)


def test_conv_pattern_matches_unfolded_statistics() -> None:
    """Conv2d patterns (weight-gradient statistics) equal the explicit formula over unfolded
    patches, E+ over (image, position) pairs with a positive pre-activation (rtol 1e-10)."""
    net = plain_cnn()
    x = digits(40)
    pn = PatternNet(net).fit(batches_of(x, 16))
    for name, inp in (("0", x), ("2", net[1](net[0](x)))):
        conv = getattr(net, name)
        with torch.no_grad():
            z = conv(inp).flatten(2).transpose(1, 2).reshape(-1, conv.out_channels)  # [N, K]
        cols = F.unfold(inp, 3, padding=1, stride=conv.stride).transpose(1, 2)
        cols = cols.reshape(-1, cols.shape[-1])  # [N, D]
        mask = (z > 0).double()
        stats = {
            "count": mask.sum(0), "sum_x": mask.T @ cols, "sum_y": (z * mask).sum(0),
            "sum_xy": (z * mask).T @ cols,
        }  # fmt: skip
        expected = pattern_from_stats(stats, conv.weight.detach().flatten(1))
        torch.testing.assert_close(pn.patterns[name].flatten(1), expected, rtol=1e-10, atol=1e-12)


def test_pattern_fit_is_order_independent_and_respects_max_batches() -> None:
    """Two batch orders give the same MLP patterns (atol 1e-10); max_batches stops early."""
    x = digits()
    batches = batches_of(x, 32)
    p1 = PatternNet(tiny_mlp()).fit(batches).patterns
    p2 = PatternNet(tiny_mlp()).fit(list(reversed(batches))).patterns
    assert p1 is not None and p2 is not None and p1.keys() == {"fc0", "fc1", "fc2", "fc3"}
    for k in p1:
        torch.testing.assert_close(p1[k], p2[k], atol=1e-10, rtol=1e-8)
    seen = []
    PatternNet(tiny_mlp(), max_batches=3).fit(seen.append(b) or b for b in batches)
    assert len(seen) == 3


def test_pattern_attribution_input_invariance() -> None:
    """UNREL §2: net2 = net1 on inputs shifted by -1 (first bias b + W 1); patterns fitted on the
    respective data give identical PatternNet and PatternAttribution maps (atol 1e-9)."""
    net1 = tiny_mlp()
    net2 = copy.deepcopy(net1)
    with torch.no_grad():
        net2.fc0.bias += net2.fc0.weight.sum(1)
    x, xb = digits(), digits(3, seed=9)
    for cls in (PatternNet, PatternAttribution):
        e1, e2 = cls(net1).fit(batches_of(x)), cls(net2).fit(batches_of(x - 1))
        torch.testing.assert_close(e1.attribute(xb, TARGETS), e2.attribute(xb - 1, TARGETS),
                                   atol=1e-9, rtol=1e-7)  # fmt: skip


def test_pattern_shapes_and_errors() -> None:
    """Shapes/finiteness on a 28x28x1 MLP and a plain CNN; attribute before fit is refused."""
    x = digits(64)
    for net in (tiny_mlp(), plain_cnn()):
        for cls in (PatternNet, PatternAttribution):
            explainer = cls(net)
            with pytest.raises(RuntimeError, match="fit"):
                explainer(x[:2], 0)
            out = explainer.fit(batches_of(x))(x[:3], TARGETS)
            assert out.shape == (3, 1, 28, 28) and out.dtype == torch.float32
            assert torch.isfinite(out).all() and out.abs().sum() > 0
    with pytest.raises(ValueError, match="no batch"):
        PatternNet(tiny_mlp()).fit([])


# ---------------------------------------------------------------- contract, for every method

METHODS: dict[str, Callable[..., Explainer]] = {
    "lrp_0": LRP,
    "lrp_gamma": partial(LRP, gamma=0.25),
    "lrp_gamma_inf": partial(LRP, gamma=math.inf),
    "pattern_net": PatternNet,
    "pattern_attribution": PatternAttribution,
}


def build(name: str, dtype: torch.dtype = F64) -> tuple[Explainer, Tensor]:
    """The explainer on a net it supports (patterns fitted), and 3 matching inputs."""
    if name.startswith("lrp"):
        return METHODS[name](resnet8(dtype), cnn_meta()), images().to(dtype)
    net = plain_cnn(3).to(dtype)
    x = digits(64, seed=11).expand(-1, 3, -1, -1).to(dtype)
    return METHODS[name](net).fit(batches_of(x, 32)), x[:3]


@pytest.mark.parametrize("name", METHODS)
def test_batch_equals_single_samples(name: str) -> None:
    """A batch with mixed targets equals per-sample calls (float64, atol 1e-12)."""
    explainer, x = build(name)
    single = torch.cat([explainer.attribute(x[i : i + 1], TARGETS[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(explainer.attribute(x, TARGETS), single, atol=1e-12, rtol=1e-9)


def model_state(model: nn.Module) -> tuple:
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    inplace = [getattr(m, "inplace", None) for m in model.modules()]
    return sd, model.training, [p.requires_grad for p in model.parameters()], inplace


@pytest.mark.parametrize("name", METHODS)
def test_model_unchanged_also_after_an_error(name: str) -> None:
    """State, mode, requires_grad, .grad, hooks and in-place flags survive fitting, a call and an
    exception raised midway (a target index out of range, passed to ``_attribute``)."""
    explainer, x = build(name, torch.float32)
    model = explainer.model
    before = model_state(model)
    explainer.attribute(x, TARGETS)
    with pytest.raises((RuntimeError, IndexError)):  # the unchecked implementation
        explainer._attribute(x, torch.tensor([0, 99, 1]))
    after = model_state(model)
    assert all(torch.equal(v, before[0][k]) for k, v in after[0].items())
    assert after[1:] == before[1:]
    assert all(p.grad is None for p in model.parameters()) and hooks_left(model) == 0


def test_inapplicable_models_are_refused() -> None:
    """ViTs (with or without meta), non-ReLU nets without meta; PatternNet also refuses nets with
    BatchNorm (ResNet-8)."""
    torch.manual_seed(3)
    vit = small_vit(num_classes=8, img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    vit_meta = ModelMeta.create("tiny_vit", 8, (3, 32, 32), MEAN, STD, relu_only=False)
    softplus = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Softplus(), nn.Flatten(), nn.Linear(4, 2))
    for cls in METHODS.values():
        for model, meta in ((vit, vit_meta), (vit, None), (softplus, None)):
            with pytest.raises(MethodNotApplicableError):
                cls(model, meta)
    for cls in (PatternNet, PatternAttribution):
        with pytest.raises(MethodNotApplicableError, match="BatchNorm"):
            cls(resnet8(), cnn_meta())
    with pytest.raises(ValueError, match="gamma"):
        LRP(resnet8(), gamma=-1.0)
