"""CAM family: known answers, reference agreement (pytorch-grad-cam, captum), contract checks."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xai_bench.methods.base import Explainer, MethodNotApplicableError
from xai_bench.methods.cam_base import minmax
from xai_bench.methods.cumulative import CumulativeGradCAM, CumulativeGradMid
from xai_bench.methods.fullgrad import FullGrad, psi
from xai_bench.methods.gradcam import GradCAM
from xai_bench.methods.gradcam_pos import GradCAMPos
from xai_bench.methods.gradcampp import GradCAMPlusPlus
from xai_bench.methods.gradmid import GradMid
from xai_bench.methods.groupcam import GroupCAM
from xai_bench.methods.guided_gradcam import GuidedGradCAM
from xai_bench.methods.hooks import hooks_left
from xai_bench.methods.scorecam import ScoreCAM
from xai_bench.models.layers import UnknownLayerError
from xai_bench.models.meta import ModelMeta
from xai_bench.models.small import MLP, ResNet8, small_vit
from xai_bench.utils.blur import gaussian_blur

LAYER = "4"  # the tiny CNN's CAM layer: ReLU after the second conv, [B, 16, 8, 8]
BLOCKS = ["1", "4", "6"]


def tiny_cnn(dtype: torch.dtype = torch.float64, inplace: bool = False, seed: int = 0) -> nn.Module:
    """Seeded conv-ReLU net for 16 px inputs, 8 classes."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(inplace),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 8),
    )  # fmt: skip
    return net.to(dtype).eval()


def inputs(b: int = 3, size: int = 16, dtype: torch.dtype = torch.float64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, size, size, generator=g).to(dtype)
    return x, torch.tensor([0, 5, 2, 7][:b])


# Every method of the family on the tiny CNN (ibs: internal batch size where there is one).
CNN_METHODS: dict[str, Callable[..., Explainer]] = {
    "gradcam": lambda m, ibs=None: GradCAM(m, layer=LAYER),
    "gradcam_pos": lambda m, ibs=None: GradCAMPos(m, layer=LAYER),
    "gradcampp": lambda m, ibs=None: GradCAMPlusPlus(m, layer=LAYER),
    "gradmid": lambda m, ibs=None: GradMid(m, layer=LAYER),
    "cumulative_gradcam": lambda m, ibs=None: CumulativeGradCAM(m, layers=BLOCKS),
    "cumulative_gradmid": lambda m, ibs=None: CumulativeGradMid(m, layers=BLOCKS),
    "guided_gradcam": lambda m, ibs=None: GuidedGradCAM(m, layer=LAYER),
    "fullgrad": lambda m, ibs=None: FullGrad(m),
    "scorecam": lambda m, ibs=None: ScoreCAM(m, layer=LAYER, internal_batch_size=ibs),
    "scorecam_class": lambda m, ibs=None: ScoreCAM(
        m, layer=LAYER, weighting="class_softmax", internal_batch_size=ibs
    ),
    "groupcam": lambda m, ibs=None: GroupCAM(m, layer=LAYER, groups=5, internal_batch_size=ibs),
    "groupcam_finetune": lambda m, ibs=None: GroupCAM(
        m, layer=LAYER, groups=4, theta=None, forward_only=True, internal_batch_size=ibs
    ),
}


# ---------------------------------------------------------------- known answers (float64)
def test_gradcam_family_hand_formulas() -> None:
    net, (x, t) = tiny_cnn(), inputs()
    feats = net[:5](x)
    logits = net[5:](feats)
    (g,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), feats)
    feats, w = feats.detach(), g.mean(dim=(2, 3), keepdim=True)
    up = lambda m: F.interpolate(m, size=(16, 16), mode="bilinear", align_corners=False)  # noqa: E731
    expected = {
        GradCAM: up((w * feats).sum(1, keepdim=True).clamp_min(0)),
        GradCAMPos: up((w * feats).abs().sum(1, keepdim=True)),
        GradMid: up(g.abs().sum(1, keepdim=True)),
    }
    for cls, ref in expected.items():
        out = cls(net, layer=LAYER)(x, t).double()
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)  # float32 output
    no_relu = GradCAM(net, layer=LAYER, relu=False)(x, t).double()
    torch.testing.assert_close(no_relu, up((w * feats).sum(1, keepdim=True)), atol=1e-6, rtol=1e-6)
    assert (no_relu < 0).any()


def _reference_net_and_inputs(model: str):
    if model == "tiny":
        return tiny_cnn(torch.float32), *inputs(2, 16, torch.float32), LAYER, LAYER
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    return net, x, torch.tensor([1, 7]), "layer4", "layer3"


@pytest.mark.parametrize("model", ["tiny", "resnet18"])
@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "scorecam"])
def test_agrees_with_pytorch_grad_cam(model: str, method: str) -> None:
    """pytorch-grad-cam returns minmax(upsample(ReLU(cam))): compare with minmax of our map.
    It runs on a deep copy (it calls ``model.eval()`` and accumulates parameter grads)."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net, x, t, layer, score_layer = _reference_net_and_inputs(model)
    if method == "scorecam":  # B*K masked forwards: one sample on resnet18 (layer3, 256 ch)
        x, t, layer = (x[:1], t[:1], score_layer) if model == "resnet18" else (x, t, layer)
        ours = ScoreCAM(net, layer=layer, mask_align_corners=True, internal_batch_size=128)
        ref_cls = pgc.ScoreCAM
    else:
        ours = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus}[method](net, layer=layer)
        ref_cls = {"gradcam": pgc.GradCAM, "gradcampp": pgc.GradCAMPlusPlus}[method]
    out = minmax(ours(x, t))[:, 0]
    ref_net = copy.deepcopy(net)
    ref = ref_cls(ref_net, [ref_net.get_submodule(layer)])
    ref.batch_size = 128
    expected = torch.from_numpy(ref(x, [ClassifierOutputTarget(int(c)) for c in t]))
    assert expected.std() > 0.05  # a non-trivial map
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


def test_guided_gradcam_matches_captum() -> None:
    from captum.attr import GuidedGradCam

    net, (x, t) = tiny_cnn(), inputs()
    ref_net = copy.deepcopy(net)
    ref = GuidedGradCam(ref_net, ref_net.get_submodule(LAYER))
    expected = ref.attribute(x, target=t, interpolate_mode="bilinear")
    out = GuidedGradCAM(net, layer=LAYER)(x, t)
    assert out.shape == x.shape
    torch.testing.assert_close(out.double(), expected, atol=1e-6, rtol=1e-5)
    assert GuidedGradCAM(net).layer == "5"  # default: last nn.Conv2d in module order


def _randomise_bn(net: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(5)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            for buf, lo, hi in ((m.running_mean, -0.5, 0.5), (m.running_var, 0.5, 2.0)):
                buf.copy_(torch.rand(buf.shape, generator=g) * (hi - lo) + lo)
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g))
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g))
    return net


def _vgg_style() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 8),
    )  # fmt: skip


@pytest.mark.parametrize("arch", ["resnet_bn", "vgg_bias"])
def test_fullgrad_completeness(arch: str) -> None:
    """sum(grad * x) + sum of all bias terms (BN effective, conv, linear) == target logit."""
    torch.manual_seed(0)
    net = _randomise_bn(ResNet8(8, widths=(4, 8, 8))) if arch == "resnet_bn" else _vgg_style()
    net = net.double().eval()
    x, t = inputs(3, 16)
    grad, terms, logits = FullGrad(net).decompose(x, t)
    total = (grad * x).flatten(1).sum(1) + sum(term.flatten(1).sum(1) for term in terms)
    target = logits.gather(1, t[:, None])[:, 0]
    torch.testing.assert_close(total, target, rtol=1e-4, atol=0)
    assert any(term.dim() == 2 for term in terms)  # the linear bias takes part
    out = FullGrad(net)(x, t)
    assert out.shape == (3, 1, 16, 16) and (out >= 0).all()


def test_fullgrad_psi_normalises_per_sample() -> None:
    t = torch.tensor([[[[1.0, -3.0]], [[2.0, 0.0]]]])  # [1, 2, 1, 2]: min 0, max 3 over C, H, W
    expected = (torch.tensor([[[[1.0, 3.0]]]]) + torch.tensor([[[[2.0, 0.0]]]])) / (3 + 1e-6)
    torch.testing.assert_close(psi(t), expected)


def test_fullgrad_matches_pytorch_grad_cam_on_single_channel_net() -> None:
    """pytorch-grad-cam normalises each channel separately and resizes with OpenCV, so it
    implements FullGrad's formula only where every layer has one channel at input resolution."""
    from pytorch_grad_cam import FullGrad as RefFullGrad
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(), nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 3),
    ).eval()  # fmt: skip
    with torch.no_grad():
        net[6].weight.mul_(1e3)  # terms >> the eps (1e-6 here, 1e-7 there) of the normalisation
    x, t = (
        torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(0)),
        torch.tensor([0, 2]),
    )
    out = minmax(FullGrad(net)(x, t))[:, 0]
    ref_net = copy.deepcopy(net)
    ref = RefFullGrad(ref_net, [])(x, [ClassifierOutputTarget(int(c)) for c in t])
    torch.testing.assert_close(out, torch.from_numpy(ref), atol=1e-4, rtol=0)


def test_fullgrad_needs_eval_mode_batchnorm() -> None:
    net = ResNet8(8, widths=(4, 8, 8)).train()
    with pytest.raises(ValueError, match="eval mode"):
        FullGrad(net)(*inputs(2, 16, torch.float32))
    assert net.training and hooks_left(net) == 0


def test_scorecam_class_softmax_matches_authors_loop() -> None:
    """The authors' released Score-CAM: per channel, p_c(x * normalised mask), constant
    channels skipped; combined at feature resolution as our CAM template does."""
    net, (x, t) = tiny_cnn(), inputs(2)
    out = ScoreCAM(net, layer=LAYER, weighting="class_softmax", internal_batch_size=5)(x, t)
    for i in range(2):
        acts = net[:5](x[i : i + 1]).detach()
        cam = torch.zeros(1, 1, 8, 8, dtype=x.dtype)
        for k in range(acts.shape[1]):
            m = F.interpolate(
                acts[:, k : k + 1], size=(16, 16), mode="bilinear", align_corners=False
            )
            if m.max() == m.min():
                continue
            m = (m - m.min()) / (m.max() - m.min())
            cam += net(x[i : i + 1] * m).softmax(1)[0, t[i]] * acts[:, k : k + 1]
        ref = F.interpolate(cam.clamp_min(0), size=(16, 16), mode="bilinear", align_corners=False)
        torch.testing.assert_close(out[i : i + 1].double(), ref, atol=1e-6, rtol=1e-5)


def _groupcam_reference(net, x, c, groups, theta, forward_only=False):
    """A loop transcription of Group-CAM@cc85ed2 for one sample (numpy percentile)."""
    feats = net[:5](x)
    (g,) = torch.autograd.grad(net[5:](feats)[0, c], feats)
    acts = feats.detach() if forward_only else g.mean((2, 3), keepdim=True) * feats.detach()
    blur = gaussian_blur(x, 51, 50.0)
    with torch.no_grad():
        base = net(blur).softmax(-1)[0, c]
        sal = torch.zeros(1, 1, *x.shape[-2:], dtype=x.dtype)
        for chunk in acts.chunk(groups, 1):
            m = chunk.sum(1, keepdim=True).clamp_min(0)
            if theta is not None:
                m = torch.where(m > float(np.percentile(m.numpy(), theta)), m, 0.0)
            m = F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)
            if m.max() == m.min():
                continue
            m = (m - m.min()) / (m.max() - m.min())
            sal += (net(x * m + blur * (1 - m)).softmax(-1)[0, c] - base) * m
    sal = sal.clamp_min(0)
    if sal.max() == sal.min():
        return torch.zeros_like(sal)
    return (sal - sal.min()) / (sal.max() - sal.min())


GROUPCAM_CASES = [(32, 70, False), (5, 70, False), (16, None, True), (3, 50, True)]


@pytest.mark.parametrize(("groups", "theta", "fwd"), GROUPCAM_CASES)
def test_groupcam_matches_reference_loop(groups: int, theta: float | None, fwd: bool) -> None:
    net, (x, t) = tiny_cnn(), inputs(3)
    out = GroupCAM(
        net,
        layer=LAYER,
        groups=groups,
        theta=theta,
        forward_only=fwd,
        internal_batch_size=4,
        blur_kernel=51,
        blur_sigma=50.0,  # the paper's blur, as in the reference
    )(x, t)
    ref = [_groupcam_reference(net, x[i : i + 1], t[i], groups, theta, fwd) for i in range(3)]
    ref = torch.cat(ref)
    torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=1e-5)


def test_groupcam_one_group_is_normalised_gradcam() -> None:
    """G = 1 without de-noising: alpha * minmax(Grad-CAM) -> minmax(Grad-CAM) if alpha > 0."""
    net, (x, t) = tiny_cnn(), inputs(4)
    out = GroupCAM(net, layer=LAYER, groups=1, theta=None, blur_kernel=51, blur_sigma=50.0)
    out = out(x, t).double()
    gradcam = minmax(GradCAM(net, layer=LAYER)(x, t).double())
    blur = gaussian_blur(x, 51, 50.0)
    with torch.no_grad():
        p = lambda z: net(z).softmax(1).gather(1, t[:, None])[:, 0]  # noqa: E731
        alpha = p(x * gradcam + blur * (1 - gradcam)) - p(blur)
    expected = torch.where(alpha[:, None, None, None] > 0, gradcam, 0.0)
    assert (alpha > 0).any()
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


def test_constant_maps_stay_zero() -> None:
    net = tiny_cnn()
    with torch.no_grad():
        net[3].weight.zero_()
        net[3].bias.fill_(-1.0)  # layer 4 (ReLU) is dead: every group is constant
    x, t = inputs(2)
    methods = [GroupCAM(net, layer=LAYER), GroupCAM(net, layer=LAYER, groups=1, theta=None)]
    for method in [*methods, GradCAM(net, layer=LAYER)]:
        out = method(x, t)
        assert torch.isfinite(out).all() and (out == 0).all()
    assert (minmax(torch.ones(2, 1, 4, 4)) == 0).all()


def test_cumulative_is_sum_of_normalised_layer_maps() -> None:
    net, (x, t) = tiny_cnn(), inputs()
    cases = [
        (CumulativeGradCAM, GradCAMPos, {}),
        (CumulativeGradMid, GradMid, {}),
        (CumulativeGradCAM, GradCAM, {"absolute": False}),
    ]
    for cum, single, kw in cases:
        out = cum(net, layers={f"B{i}": n for i, n in enumerate(BLOCKS)}, **kw)(x, t)
        ref = sum(minmax(single(net, layer=n)(x, t)) for n in BLOCKS)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------- ViT and refusals
def vit_meta(**kw) -> ModelMeta:
    return ModelMeta.create(
        name="vit_tiny", num_classes=8, input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3,
        cam_layer="blocks.1.norm1", block_layers={"B1": "blocks.0.norm1", "B2": "blocks.1.norm1"},
        convolutional=False, relu_only=False, reshape="vit_tokens", num_prefix_tokens=1, **kw,
    )  # fmt: skip


VIT_ARGS = {"layer": "blocks.1.norm1", "reshape": "vit_tokens", "num_prefix_tokens": 1}
VIT_METHODS = {
    "gradcam": lambda m, meta: GradCAM(m, meta, **VIT_ARGS),
    "gradcam_pos": lambda m, meta: GradCAMPos(m, meta, **VIT_ARGS),
    "gradcampp": lambda m, meta: GradCAMPlusPlus(m, meta, **VIT_ARGS),
    "gradmid": lambda m, meta: GradMid(m, meta, **VIT_ARGS),
    "scorecam": lambda m, meta: ScoreCAM(m, meta, **VIT_ARGS),
    "groupcam": lambda m, meta: GroupCAM(m, meta, **VIT_ARGS),
    "groupcam_finetune": lambda m, meta: GroupCAM(
        m, meta, **VIT_ARGS, groups=16, theta=None, forward_only=True
    ),
    "cumulative_gradcam": lambda m, meta: CumulativeGradCAM(
        m, meta, layers=meta.block_layers, reshape="vit_tokens", num_prefix_tokens=1
    ),
    "cumulative_gradmid": lambda m, meta: CumulativeGradMid(
        m, meta, layers=meta.block_layers, reshape="vit_tokens", num_prefix_tokens=1
    ),
}


@pytest.fixture(scope="module")
def vit() -> nn.Module:
    torch.manual_seed(0)
    return small_vit(num_classes=8, img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)


@pytest.mark.parametrize("name", sorted(VIT_METHODS))
def test_cam_methods_on_vit(vit: nn.Module, name: str) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = VIT_METHODS[name](vit, vit_meta())(x, torch.tensor([1, 6]))
    assert out.shape == (2, 1, 32, 32) and torch.isfinite(out).all()
    assert hooks_left(vit) == 0


@pytest.mark.parametrize("meta", [vit_meta(), None])
def test_fullgrad_and_guided_gradcam_refuse_vit(vit: nn.Module, meta) -> None:
    with pytest.raises(MethodNotApplicableError):
        FullGrad(vit, meta)
    with pytest.raises(MethodNotApplicableError):
        GuidedGradCAM(vit, meta, **VIT_ARGS)


@pytest.mark.parametrize("name", sorted(CNN_METHODS))
def test_mlp_is_refused(name: str) -> None:
    """The MLP has no CAM layer (cam_layer null, block_layers {}) and is not convolutional."""
    mlp = MLP(48, hidden=(8, 8), num_classes=4)
    meta = ModelMeta.create(
        "mlp", 4, (3, 4, 4), (0.5,) * 3, (0.5,) * 3, cam_layer=None, convolutional=False
    )
    factory = {
        "cumulative_gradcam": lambda: CumulativeGradCAM(mlp, meta, layers=meta.block_layers),
        "cumulative_gradmid": lambda: CumulativeGradMid(mlp, meta, layers=meta.block_layers),
        "fullgrad": lambda: FullGrad(mlp, meta),
    }.get(name, lambda: type(CNN_METHODS[name](tiny_cnn()))(mlp, meta, layer=meta.cam_layer))
    with pytest.raises(MethodNotApplicableError):
        factory()


def test_unknown_layer_is_refused_at_construction() -> None:
    with pytest.raises(UnknownLayerError):
        GradCAM(tiny_cnn(), layer="features.29")


# ------------------------------------------------------------------------ contract checks
@pytest.mark.parametrize("name", sorted(CNN_METHODS))
def test_batched_equals_per_sample(name: str) -> None:
    net, (x, t) = tiny_cnn(), inputs(3)
    explainer = CNN_METHODS[name](net, ibs=4)
    out = explainer(x, t)
    single = torch.cat([explainer(x[i : i + 1], t[i : i + 1]) for i in range(3)])
    assert out.shape[0] == 3 and out.shape[-2:] == x.shape[-2:] and torch.isfinite(out).all()
    torch.testing.assert_close(out, single, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["scorecam", "scorecam_class", "groupcam", "groupcam_finetune"])
def test_internal_batch_size_invariance(name: str) -> None:
    net, (x, t) = tiny_cnn(), inputs(3)
    ref = CNN_METHODS[name](net, ibs=None)(x, t)
    for ibs in (1, 7):
        torch.testing.assert_close(CNN_METHODS[name](net, ibs=ibs)(x, t), ref, atol=1e-6, rtol=0)


def _state(net: nn.Module):
    return (
        {k: v.clone() for k, v in net.state_dict().items()},
        [p.requires_grad for p in net.parameters()],
        [m.inplace for m in net.modules() if isinstance(m, nn.ReLU)],
        net.training,
    )


@pytest.mark.parametrize("name", sorted(CNN_METHODS))
def test_model_unchanged_and_no_hooks_left(name: str) -> None:
    net = tiny_cnn(inplace=True).train()  # no BN/dropout: train mode computes the same
    net[0].weight.requires_grad_(False)
    before = _state(net)
    explainer = CNN_METHODS[name](net, ibs=4)
    x, t = inputs(2)
    explainer(x, t)
    with pytest.raises((IndexError, RuntimeError)):
        explainer(x, torch.tensor([0, 99]))  # target out of range, raised mid-way
    after = _state(net)
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert before[1:] == after[1:]
    assert hooks_left(net) == 0
    assert all(p.grad is None for p in net.parameters())
