"""Gradient family: gradient x input, integrated gradients, SmoothGrad/VarGrad, guided backprop,
deconvnet and RectGrad(_Mod): known answers, reference libraries, batching and model safety."""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial

import numpy as np
import pytest
import torch
import torchvision
from captum.attr import Deconvolution as CaptumDeconvolution
from captum.attr import GuidedBackprop as CaptumGuidedBackprop
from captum.attr import InputXGradient as CaptumInputXGradient
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr import NoiseTunnel as CaptumNoiseTunnel
from captum.attr import Saliency as CaptumSaliency
from torch import Tensor, nn

from xai_bench.methods.base import Explainer, MethodNotApplicableError, input_gradient
from xai_bench.methods.deconvnet import Deconvnet
from xai_bench.methods.gradient import Gradient
from xai_bench.methods.guided_backprop import GuidedBackprop
from xai_bench.methods.hooks import hooks_left
from xai_bench.methods.input_x_gradient import InputXGradient
from xai_bench.methods.integrated_gradients import IntegratedGradients
from xai_bench.methods.rectgrad import RectGrad, RectGradMod, percentile
from xai_bench.methods.smoothgrad import SmoothGrad, VarGrad
from xai_bench.models.meta import ModelMeta
from xai_bench.models.small import ResNet8, small_vit

F64 = torch.float64
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)


def cnn_meta(relu_only: bool = True) -> ModelMeta:
    return ModelMeta.create("tiny", 8, (3, 16, 16), MEAN, STD, relu_only=relu_only)


def resnet8(dtype: torch.dtype = F64) -> nn.Module:
    torch.manual_seed(0)
    return ResNet8(num_classes=8, widths=(4, 8, 8)).to(dtype).eval()


def inplace_cnn() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(inplace=True),
        nn.Flatten(), nn.Linear(6 * 8 * 8, 8),
    ).to(F64).eval()  # fmt: skip


def softplus_net() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.Softplus(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Softplus(),
        nn.Flatten(), nn.Linear(4 * 8 * 8, 8),
    ).to(F64).eval()  # fmt: skip


def two_layer_net() -> nn.Module:
    """x [1,1,2,2] -> flatten -> 5 hidden ReLUs -> 2 logits, weights chosen for hand answers.

    With x = (1, 2, 3, 4): a = (1, 2, 3, 0, 3); target 0 has R = (4, -1, 1, 5, -3), so
    a * R = (4, -2, 3, 0, -9).
    """
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 5, bias=False), nn.ReLU(), nn.Linear(5, 2))
    w1 = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, -1], [1, 1, 0, 0]]
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor(w1, dtype=F64))
        net[3].weight.copy_(torch.tensor([[4, -1, 1, 5, -3], [0, 0, 0, 0, 1]], dtype=F64))
        net[3].bias.zero_()
    return net.to(F64).eval()


X_HAND = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64).view(1, 1, 2, 2)


def vit_and_meta() -> tuple[nn.Module, ModelMeta]:
    torch.manual_seed(3)
    net = small_vit(num_classes=8, img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    meta = ModelMeta.create(
        "tiny_vit", 8, (3, 32, 32), MEAN, STD, cam_layer="blocks.1.norm1",
        convolutional=False, relu_only=False, reshape="vit_tokens", num_prefix_tokens=1,
    )  # fmt: skip
    return net.eval(), meta


def images(b: int = 3, size: int = 16, seed: int = 4) -> Tensor:
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=F64)


TARGETS = torch.tensor([0, 5, 2])

# Every method under test, with few steps / samples so the suite stays fast.
METHODS: dict[str, Callable[..., Explainer]] = {
    "input_x_gradient": InputXGradient,
    "ig_zero": partial(IntegratedGradients, steps=6, internal_batch_size=5),
    "ig_black": partial(IntegratedGradients, steps=6, baseline="black", internal_batch_size=4),
    "ig_blur": partial(IntegratedGradients, steps=5, baseline="blur", blur_kernel=7, blur_sigma=2),
    "ig_mean_gl": partial(
        IntegratedGradients, steps=5, baseline="mean", integration="gausslegendre"
    ),
    "smoothgrad": partial(SmoothGrad, n_samples=5, internal_batch_size=4),
    "vargrad": partial(VarGrad, n_samples=5, sigma=0.225, sigma_mode="absolute"),
    "smoothgrad_ig": partial(SmoothGrad, base=partial(IntegratedGradients, steps=3), n_samples=3),
    "smoothgrad_gbp": partial(SmoothGrad, base=GuidedBackprop, n_samples=3, sigma=0.1),
    "guided_backprop": GuidedBackprop,
    "deconvnet": Deconvnet,
    "rectgrad": RectGrad,
    "rectgrad_mod": partial(RectGradMod, q=90.0, multiply_by_input=True),
}
RELU_METHODS = ("guided_backprop", "deconvnet", "rectgrad", "rectgrad_mod")
MULTI_PASS = ("ig_zero", "ig_black", "smoothgrad", "vargrad", "smoothgrad_ig")


# ---------------------------------------------------------------- contract, for every method


@pytest.mark.parametrize("name", METHODS)
def test_batch_equals_single_samples(name: str) -> None:
    """A batch with mixed targets equals per-sample calls (float64, atol 1e-10)."""
    explainer = METHODS[name](resnet8(), cnn_meta())
    x = images()
    out = explainer(x, TARGETS)
    assert out.shape == (3, 3, 16, 16) and out.dtype == torch.float32 and torch.isfinite(out).all()
    single = torch.cat([explainer.attribute(x[i : i + 1], TARGETS[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(explainer.attribute(x, TARGETS), single, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("name", MULTI_PASS)
def test_internal_batch_size_invariance(name: str) -> None:
    """internal_batch_size in {1, 4, None} gives the same attributions (atol 1e-10)."""
    net, x = resnet8(), images()
    outs = [
        METHODS[name](net, cnn_meta(), internal_batch_size=ibs).attribute(x, TARGETS)
        for ibs in (1, 4, None)
    ]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], atol=1e-10, rtol=1e-8)


def model_state(model: nn.Module) -> tuple:
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    return sd, model.training, [p.requires_grad for p in model.parameters()]


def assert_model_unchanged(model: nn.Module, before: tuple) -> None:
    sd, training, flags = before
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())
    assert model.training == training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert hooks_left(model) == 0


@pytest.mark.parametrize("name", METHODS)
def test_model_unchanged_also_after_an_error(name: str) -> None:
    """State, mode, requires_grad, .grad, hooks and in-place ReLU flags survive a call and an
    exception raised midway (a target index out of range, passed to ``_attribute``)."""
    for model in (resnet8(torch.float32), inplace_cnn().float()):
        before = model_state(model)
        inplace = [m.inplace for m in model.modules() if isinstance(m, nn.ReLU)]
        explainer = METHODS[name](model, cnn_meta())
        x = images().float()
        explainer(x, TARGETS)
        assert_model_unchanged(model, before)
        with pytest.raises(ValueError, match="outside"):  # refused by __call__ (meta given)
            explainer(x, torch.tensor([0, 99, 1]))
        with pytest.raises((RuntimeError, IndexError)):  # raised inside the backward pass
            explainer._attribute(x, torch.tensor([0, 99, 1]))  # the unchecked implementation
        assert_model_unchanged(model, before)
        assert [m.inplace for m in model.modules() if isinstance(m, nn.ReLU)] == inplace


def test_tiny_vit_gradient_methods_work_and_relu_methods_refuse() -> None:
    """Methods that need no ReLU run on a ViT; GBP / deconvnet / RectGrad refuse it, also when
    wrapped in SmoothGrad, and also without meta (GELU modules, no nn.ReLU)."""
    net, meta = vit_and_meta()
    x = images(2, 32).float()
    for name in ("input_x_gradient", "ig_zero", "ig_black", "smoothgrad", "vargrad"):
        out = METHODS[name](net, meta)(x, torch.tensor([1, 6]))
        assert out.shape == (2, 3, 32, 32) and torch.isfinite(out).all() and out.abs().sum() > 0
    for name in RELU_METHODS:
        for m in (meta, None):
            with pytest.raises(MethodNotApplicableError):
                METHODS[name](net, m)
    with pytest.raises(MethodNotApplicableError, match="ReLU"):
        SmoothGrad(net, meta, base=GuidedBackprop)
    with pytest.raises(MethodNotApplicableError, match="has none"):  # no nn.ReLU module at all
        RectGrad(softplus_net(), cnn_meta(relu_only=True))


# ---------------------------------------------------------------- gradient x input


def test_input_x_gradient_known_answer_and_captum() -> None:
    """Linear model: attribution = x * W[c] exactly; a CNN agrees with Captum (atol 1e-12)."""
    lin = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).to(F64)
    out = InputXGradient(lin).attribute(X_HAND, torch.tensor([1]))
    torch.testing.assert_close(out.flatten(), X_HAND.flatten() * lin[1].weight[1].detach())
    net, x = resnet8(), images()
    ref = CaptumInputXGradient(net).attribute(x, target=TARGETS)
    torch.testing.assert_close(InputXGradient(net).attribute(x, TARGETS), ref, atol=1e-12, rtol=0)


# ---------------------------------------------------------------- integrated gradients


@pytest.mark.parametrize("baseline", ["zero", "black", "blur", "mean"])
def test_ig_completeness(baseline: str) -> None:
    """Smooth float64 net: sum(attr) = f(x) - f(x0) within 1e-9 relative (Gauss-Legendre, 32)
    and 1e-3 relative (trapezoid, 64 steps)."""
    net, x = softplus_net(), images()
    for integration, steps, rtol in (("gausslegendre", 32, 1e-9), ("riemann_trapezoid", 64, 1e-3)):
        ig = IntegratedGradients(
            net, cnn_meta(), steps, baseline, blur_kernel=7, blur_sigma=3.0, integration=integration
        )
        x0 = ig.make_baseline(x)
        with torch.no_grad():
            delta = (net(x) - net(x0)).gather(1, TARGETS.view(-1, 1)).squeeze(1)
        total = ig.attribute(x, TARGETS).sum(dim=(1, 2, 3))
        torch.testing.assert_close(total, delta, rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("baseline", ["zero", "blur"])
def test_ig_matches_captum(baseline: str) -> None:
    """Same baseline, steps and rule as Captum (float64 net): equal within rtol 1e-6, atol 1e-10
    (Captum rounds its quadrature weights, and its trapezoid nodes, to float32); trapezoid after
    undoing Captum's step sizes 1/n (ours 1/(n-1), so that the weights sum to 1)."""
    net, x = resnet8(), images()
    for method, steps in (("gausslegendre", 9), ("riemann_trapezoid", 7)):
        kw = dict(blur_kernel=7, blur_sigma=2.0, integration=method, internal_batch_size=8)
        ig = IntegratedGradients(net, steps=steps, baseline=baseline, **kw)
        x0 = ig.make_baseline(x)
        ref = CaptumIG(net).attribute(x, x0, target=TARGETS, n_steps=steps, method=method)
        if method == "riemann_trapezoid":
            ref = ref * steps / (steps - 1)
        torch.testing.assert_close(ig.attribute(x, TARGETS), ref, atol=1e-10, rtol=1e-6)


def test_ig_baselines() -> None:
    """black: (0 - mean) / std from meta, or the given value(s); mean: per-image channel mean."""
    x = images(2, 8)
    expected = torch.tensor([(0 - m) / s for m, s in zip(MEAN, STD)], dtype=F64)
    net = resnet8()
    black = IntegratedGradients(net, cnn_meta(), baseline="black").make_baseline(x)
    torch.testing.assert_close(black, expected.view(1, 3, 1, 1).expand_as(x))
    per_channel = IntegratedGradients(net, baseline="black", black_value=[-1, 0, 1])
    torch.testing.assert_close(
        per_channel.make_baseline(x)[1, :, 3, 5], torch.tensor([-1.0, 0, 1], dtype=F64)
    )
    assert (
        IntegratedGradients(net, baseline="black", black_value=-1.0).make_baseline(x) == -1
    ).all()
    mean = IntegratedGradients(net, baseline="mean").make_baseline(x)
    torch.testing.assert_close(mean[:, :, 0, 0], x.mean(dim=(2, 3)))
    with pytest.raises(ValueError, match="needs meta"):
        IntegratedGradients(net, baseline="black")
    with pytest.raises(ValueError):
        IntegratedGradients(net, baseline="noise")
    with pytest.raises(ValueError):
        IntegratedGradients(net, integration="riemann_left")


# ---------------------------------------------------------------- SmoothGrad / VarGrad


def test_noise_tunnel_sigma_zero_equals_base_and_captum() -> None:
    """sigma = 0: SmoothGrad equals the base method (atol 1e-12; Captum NoiseTunnel with
    stdevs 0 agrees) and VarGrad is 0 (atol 1e-14), for gradient and IG bases."""
    net, x = resnet8(), images()
    sg = SmoothGrad(net, n_samples=4, sigma=0.0, internal_batch_size=5).attribute(x, TARGETS)
    grad = Gradient(net).attribute(x, TARGETS)
    torch.testing.assert_close(sg, grad, atol=1e-12, rtol=0)
    nt = CaptumNoiseTunnel(CaptumSaliency(net))
    ref = nt.attribute(x, nt_type="smoothgrad", nt_samples=4, stdevs=0.0, target=TARGETS, abs=False)
    torch.testing.assert_close(sg, ref, atol=1e-12, rtol=0)
    var = VarGrad(net, n_samples=4, sigma=0.0, sigma_mode="absolute").attribute(x, TARGETS)
    assert var.abs().max() < 1e-14
    base = partial(IntegratedGradients, steps=4, baseline="mean")
    sg_ig = SmoothGrad(net, base=base, n_samples=3, sigma=0.0).attribute(x, TARGETS)
    ig = IntegratedGradients(net, steps=4, baseline="mean").attribute(x, TARGETS)
    torch.testing.assert_close(sg_ig, ig, atol=1e-12, rtol=0)


@pytest.mark.parametrize("mode", ["range", "absolute"])
def test_noise_tunnel_matches_hand_loop(mode: str) -> None:
    """Mean / population variance of plain gradients on the seeded noise, per image, match a
    hand loop (atol 1e-10); the noise is N(0, 1) from Generator().manual_seed(seed) (drawn in
    float32 whatever the input dtype, then cast) scaled by sigma * (max - min) per image (range)
    or sigma (absolute)."""
    net, x, n, sigma, seed = resnet8(), images(), 6, 0.2, 7
    eps = torch.randn((n, 3, 16, 16), generator=torch.Generator().manual_seed(seed)).to(F64)
    scale = (
        sigma * (x.flatten(1).amax(1) - x.flatten(1).amin(1)) if mode == "range" else [sigma] * 3
    )
    grads = torch.zeros(3, n, 3, 16, 16, dtype=F64)  # [image, noise sample, C, H, W]
    for i in range(3):
        for k in range(n):
            noisy = x[i : i + 1] + scale[i] * eps[k]
            grads[i, k] = input_gradient(net, noisy, TARGETS[i : i + 1])[0][0]
    kw = dict(n_samples=n, sigma=sigma, sigma_mode=mode, internal_batch_size=4, seed=seed)
    sg = SmoothGrad(net, **kw).attribute(x, TARGETS)
    vg = VarGrad(net, **kw).attribute(x, TARGETS)
    torch.testing.assert_close(sg, grads.mean(1), atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(vg, grads.var(1, unbiased=False), atol=1e-10, rtol=1e-8)
    assert vg.abs().max() > 0
    again = SmoothGrad(net, **kw).attribute(x, TARGETS)
    other = SmoothGrad(net, **{**kw, "seed": seed + 1}).attribute(x, TARGETS)
    assert torch.equal(sg, again) and not torch.allclose(sg, other)


# ---------------------------------------------------------------- guided backprop / deconvnet


def test_guided_backprop_and_deconvnet_known_answer() -> None:
    """Hand-built net (see two_layer_net): gradient (1,-4,1,0), GBP passes units 0, 2 ->
    (4,0,1,0), deconvnet passes relu(R) = (4,0,1,5,0) -> (4,0,1,-5)."""
    net, t = two_layer_net(), torch.tensor([0])
    cases = {Gradient: [1, -4, 1, 0], GuidedBackprop: [4, 0, 1, 0], Deconvnet: [4, 0, 1, -5]}
    for cls, expected in cases.items():
        out = cls(net).attribute(X_HAND, t).flatten()
        torch.testing.assert_close(out, torch.tensor(expected, dtype=F64))


@pytest.mark.parametrize("cls, ref", [(GuidedBackprop, CaptumGuidedBackprop),
                                      (Deconvnet, CaptumDeconvolution)])  # fmt: skip
def test_modified_relu_matches_captum(cls: type, ref: type) -> None:
    """Agreement with Captum (atol 1e-12, float64) on a small CNN with in-place ReLUs and on a
    seeded torchvision resnet18 (reused in-place ReLUs) at 64 px."""
    torch.manual_seed(5)
    resnet = torchvision.models.resnet18(weights=None, num_classes=8).to(F64).eval()
    for net, x in ((inplace_cnn(), images()), (resnet, images(2, 64))):
        t = TARGETS[: len(x)]
        ours = cls(net).attribute(x, t)
        theirs = ref(net).attribute(x.clone(), target=t)
        assert ours.abs().max() > 0
        torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)


# ---------------------------------------------------------------- RectGrad


def test_percentile_matches_numpy() -> None:
    """Linear-interpolation percentile per row equals numpy.percentile (atol 1e-12)."""
    v = torch.randn(3, 101, dtype=F64)
    for q in (0.0, 12.5, 50.0, 98.0, 99.99, 100.0):
        expected = np.percentile(v.numpy(), q, axis=1, keepdims=True)
        torch.testing.assert_close(percentile(v, q), torch.from_numpy(expected), atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "cls, q, expected",
    [
        (RectGrad, 98.0, [4, 0, 0, 0]),  # tau = 3 + 0.92 * 1 = 3.92: unit 0 only
        (RectGrad, 75.0, [4, 0, 0, 0]),  # tau = 3 exactly: unit 2 (a*R = 3) fails the strict >
        (RectGrad, 50.0, [4, 0, 1, 0]),  # tau = 0: units 0, 2
        (RectGrad, 0.0, [4, -1, 1, 0]),  # tau = -9: units 0, 1, 2 (3 is dead, 4 is the min)
        (RectGrad, 100.0, [0, 0, 0, 0]),  # tau = max: nothing passes
        (RectGradMod, 98.0, [-3, -3, 0, 0]),  # |a*R| = (4,2,3,0,9), tau = 8.6: unit 4
        (RectGradMod, 50.0, [1, -3, 0, 0]),  # tau = 3: units 0, 4
        (RectGradMod, 0.0, [1, -4, 1, 0]),  # tau = 0: every live unit -> the plain gradient
    ],
)
def test_rectgrad_known_answer(cls: type, q: float, expected: list[float]) -> None:
    """Hand-built net (see two_layer_net), percentiles of the 5 importances computed by hand."""
    out = cls(two_layer_net(), q=q).attribute(X_HAND, torch.tensor([0])).flatten()
    torch.testing.assert_close(out, torch.tensor(expected, dtype=F64))
    times_x = cls(two_layer_net(), q=q, multiply_by_input=True).attribute(X_HAND, torch.tensor([0]))
    torch.testing.assert_close(
        times_x.flatten(), torch.tensor(expected, dtype=F64) * X_HAND.flatten()
    )


class _RefRectReLU(torch.autograd.Function):
    """Reference RectGrad ReLU, written independently of hooks.relu_rule (torch.quantile)."""

    @staticmethod
    def forward(ctx, z: Tensor, q: float, absolute: bool) -> Tensor:  # type: ignore[override]
        a = z.clamp_min(0)
        ctx.save_for_backward(a)
        ctx.q, ctx.absolute = q, absolute
        return a

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:  # type: ignore[override]
        (a,) = ctx.saved_tensors
        score = (a * grad).abs() if ctx.absolute else a * grad
        tau = torch.quantile(score.flatten(1), ctx.q / 100, dim=1).view(-1, 1, 1, 1)
        return grad * ((score > tau) & (a > 0)), None, None


class _RefReLU(nn.Module):
    def __init__(self, q: float, absolute: bool) -> None:
        super().__init__()
        self.q, self.absolute = q, absolute

    def forward(self, z: Tensor) -> Tensor:
        return _RefRectReLU.apply(z, self.q, self.absolute)


def reference_rectgrad(model: nn.Module, x: Tensor, t: Tensor, q: float, absolute: bool) -> Tensor:
    ref = copy.deepcopy(model)
    for name, module in list(ref.named_modules()):
        if isinstance(module, nn.ReLU):
            parent, _, child = name.rpartition(".")
            setattr(ref.get_submodule(parent), child, _RefReLU(q, absolute))
    return input_gradient(ref, x, t)[0]


@pytest.mark.parametrize("cls, absolute", [(RectGrad, False), (RectGradMod, True)])
def test_rectgrad_matches_reference_on_resnet8(cls: type, absolute: bool) -> None:
    """ResNet-8, q in {98, 70}: equal to a module-swapping reference (atol 1e-12); q = 100 gives
    zeros; RectGrad_Mod with q = 0 is the plain gradient (every layer has dead units)."""
    net, x = resnet8(), images()
    for q in (98.0, 70.0):
        ours = cls(net, q=q).attribute(x, TARGETS)
        assert ours.abs().max() > 0
        torch.testing.assert_close(ours, reference_rectgrad(net, x, TARGETS, q, absolute),
                                   atol=1e-12, rtol=0)  # fmt: skip
    assert cls(net, q=100.0).attribute(x, TARGETS).abs().max() == 0
    if absolute:
        grad = Gradient(net).attribute(x, TARGETS)
        torch.testing.assert_close(cls(net, q=0.0).attribute(x, TARGETS), grad, atol=1e-12, rtol=0)
    with pytest.raises(ValueError):
        cls(net, q=101.0)
