"""Perturbation family (occlusion, RISE, XRAI) and PruneGrad / PrunePGD: known answers,
reference libraries (Captum, PAIR ``saliency``), batching and model safety."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import Occlusion as CaptumOcclusion
from torch import Tensor, nn

from xai_bench.methods.base import Explainer, MethodNotApplicableError, input_gradient
from xai_bench.methods.hooks import hooks_left
from xai_bench.methods.occlusion import Occlusion
from xai_bench.methods.prunegrad import PruneGrad, neuron_scores, pruned_forward, row_percentile
from xai_bench.methods.prunepgd import PrunePGD
from xai_bench.methods.rise import RISE
from xai_bench.methods.xrai import XRAI, segment_masks, xrai_greedy
from xai_bench.models.meta import ModelMeta
from xai_bench.models.small import ResNet8, small_vit

F64 = torch.float64
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
TARGETS = torch.tensor([0, 5, 2])


def meta(size: int = 16, relu_only: bool = True) -> ModelMeta:
    return ModelMeta.create("tiny", 8, (3, size, size), MEAN, STD, relu_only=relu_only)


def resnet8(dtype: torch.dtype = F64) -> nn.Module:
    torch.manual_seed(0)
    return ResNet8(num_classes=8, widths=(4, 8, 8)).to(dtype).eval()


def inplace_cnn() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(inplace=True),
        nn.Flatten(), nn.Linear(6 * 8 * 8, 8),
    ).to(F64).eval()  # fmt: skip


def resnet18() -> nn.Module:
    """torchvision resnet18: every BasicBlock calls its (in-place) ``self.relu`` twice."""
    torch.manual_seed(5)
    return torchvision.models.resnet18(weights=None, num_classes=8).to(F64).eval()


def images(b: int = 3, size: int = 16, seed: int = 4) -> Tensor:
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=F64)


# Every method under test, small settings so the suite stays fast.
METHODS: dict[str, Callable[..., Explainer]] = {
    "occlusion": partial(Occlusion, window=6, stride=4, internal_batch_size=5),
    "rise": partial(RISE, n_masks=40, s=4, p1=0.5, internal_batch_size=7),
    "rise_logit": partial(RISE, n_masks=30, s=3, score="logit", internal_batch_size=None),
    "xrai": partial(XRAI, steps=4, internal_batch_size=5, segment_resize=None, min_segment_size=8,
                    dilation_radius=1, min_pixel_diff=4),
    "prunegrad": partial(PruneGrad, percentile=60.0),
    "prunepgd": partial(PrunePGD, percentile=60.0, iterations=4, step=0.05),
}  # fmt: skip
MULTI_PASS = ("occlusion", "rise", "xrai")


# ---------------------------------------------------------------- contract, for every method


@pytest.mark.parametrize("name", METHODS)
def test_batch_equals_single_samples(name: str) -> None:
    """A batch with mixed targets equals per-sample calls (float64, atol 1e-10)."""
    explainer = METHODS[name](resnet8(), meta())
    x = images()
    out = explainer(x, TARGETS)
    assert out.dtype == torch.float32 and torch.isfinite(out).all() and out.abs().sum() > 0
    assert out.shape[0] == 3 and out.shape[1] in (1, 3) and out.shape[2:] == (16, 16)
    single = torch.cat([explainer.attribute(x[i : i + 1], TARGETS[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(explainer.attribute(x, TARGETS), single, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("name", MULTI_PASS)
def test_internal_batch_size_invariance(name: str) -> None:
    """internal_batch_size in {1, 4, None} gives the same attributions (atol 1e-10)."""
    net, x = resnet8(), images(2)
    outs = [
        METHODS[name](net, meta(), internal_batch_size=ibs).attribute(x, TARGETS[:2])
        for ibs in (1, 4, None)
    ]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], atol=1e-10, rtol=1e-8)


def model_state(model: nn.Module) -> tuple:
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    inplace = [m.inplace for m in model.modules() if isinstance(m, nn.ReLU)]
    return sd, model.training, [p.requires_grad for p in model.parameters()], inplace


def assert_model_unchanged(model: nn.Module, before: tuple) -> None:
    sd, training, flags, inplace = before
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())
    assert model.training == training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert [m.inplace for m in model.modules() if isinstance(m, nn.ReLU)] == inplace
    assert all(p.grad is None for p in model.parameters())
    assert hooks_left(model) == 0


@pytest.mark.parametrize("name", METHODS)
def test_model_unchanged_also_after_an_error(name: str) -> None:
    """State, mode, requires_grad, .grad, hooks and in-place flags survive a call and an
    exception raised midway (a target index out of range, passed to ``_attribute``)."""
    for model in (resnet8(torch.float32), inplace_cnn().float()):
        before = model_state(model)
        explainer = METHODS[name](model, meta())
        x = images().float()
        explainer(x, TARGETS)
        assert_model_unchanged(model, before)
        with pytest.raises(ValueError, match="outside"):  # refused by __call__ (meta given)
            explainer(x, torch.tensor([0, 99, 1]))
        with pytest.raises((RuntimeError, IndexError)):  # raised inside the model / backward
            explainer._attribute(x, torch.tensor([0, 99, 1]))  # the unchecked implementation
        assert_model_unchanged(model, before)


def test_prune_methods_refuse_non_relu_models() -> None:
    """PruneGrad / PrunePGD refuse a ViT (meta relu_only false, and without meta: no nn.ReLU)."""
    torch.manual_seed(3)
    vit = small_vit(num_classes=8, img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2)
    for cls in (PruneGrad, PrunePGD):
        with pytest.raises(MethodNotApplicableError, match="ReLU"):
            cls(vit, meta(relu_only=False))
        with pytest.raises(MethodNotApplicableError, match="has none"):
            cls(vit)
    out = Occlusion(vit, window=8, stride=8)(
        images(2).float(), torch.tensor([1, 2])
    )  # works on a ViT
    assert torch.isfinite(out).all()


def test_argument_checks() -> None:
    net = resnet8()
    with pytest.raises(ValueError, match="larger than the image"):
        Occlusion(net, window=20)(images(1), 0)
    with pytest.raises(ValueError, match="needs meta"):
        XRAI(net)
    with pytest.raises(ValueError):
        RISE(net, score="probability")
    with pytest.raises(ValueError):
        PruneGrad(net, percentile=101)


# ---------------------------------------------------------------- occlusion


def test_occlusion_matches_captum() -> None:
    """Same windows, strides and fill as Captum's Occlusion (incl. windows cropped at the
    border): equal within 1e-5 (measured ~1e-9: Captum divides in float32)."""
    net, x = resnet8(), images(3, 20)
    for window, stride, fill in ((8, 4, 0.0), (5, 3, 0.5), (6, 6, -1.0), (20, 1, 0.0)):
        ours = Occlusion(net, window=window, stride=stride, fill=fill, internal_batch_size=7)
        ref = CaptumOcclusion(net).attribute(
            x, (3, window, window), strides=(3, stride, stride), baselines=fill, target=TARGETS
        )
        torch.testing.assert_close(ours(x, TARGETS), ref, atol=1e-5, rtol=0)


def test_occlusion_linear_model_known_answer() -> None:
    """Linear model, 1 px windows: every channel of a pixel gets sum_c w_c x_c (atol 1e-12);
    2 px windows with stride 2 tile the image: each pixel gets its tile's sum."""
    torch.manual_seed(6)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).to(F64)
    x, t = images(2, 4), torch.tensor([1, 0])
    w = lin[1].weight.detach().view(2, 3, 4, 4)[t]  # [B, C, H, W]
    per_pixel = (w * x).sum(dim=1, keepdim=True)
    out = Occlusion(lin, window=1, stride=1).attribute(x, t)
    torch.testing.assert_close(out, per_pixel.expand_as(x), atol=1e-12, rtol=0)
    tiles = F.avg_pool2d(per_pixel, 2) * 4
    out2 = Occlusion(lin, window=2, stride=2).attribute(x, t)
    torch.testing.assert_close(
        out2[:, :1], F.interpolate(tiles, scale_factor=2), atol=1e-12, rtol=0
    )


# ---------------------------------------------------------------- RISE


class BoxModel(nn.Module):
    """Logit 0 = scale * (mean of the input inside rows 8:20, cols 4:14 - shift); logit 1 = 0."""

    def __init__(self, scale: float = 1.0, shift: float = 0.0) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x: Tensor) -> Tensor:
        v = self.scale * (x[:, :, 8:20, 4:14].mean(dim=(1, 2, 3)) - self.shift)
        return torch.stack([v, torch.zeros_like(v)], dim=1)


def test_rise_box_known_answer() -> None:
    """Output = mean of the input in a box: RISE's map is higher inside the box than outside;
    with the logit and 3000 masks it correlates with the box indicator > 0.8."""
    x = torch.ones(1, 3, 32, 32, dtype=F64)
    box = torch.zeros(32, 32, dtype=F64)
    box[8:20, 4:14] = 1
    for score, model, min_corr in (("logit", BoxModel(), 0.8), ("softmax", BoxModel(4, 0.5), 0.5)):
        rise = RISE(model, n_masks=3000, s=8, p1=0.5, score=score, internal_batch_size=1000)
        sal = rise.attribute(x, torch.tensor([0]))[0, 0]
        assert sal[box > 0].mean() > sal[box == 0].mean()
        assert torch.corrcoef(torch.stack([sal.flatten(), box.flatten()]))[0, 1] > min_corr


def test_rise_matches_hand_loop() -> None:
    """Masks rebuilt independently (per-mask bilinear upsample to (s+1)*ceil(H/s), crop at the
    drawn shift) and the weighted sum over masks in a loop equal RISE (atol 1e-10); the masks
    are the same on every call, in [0, 1], and change with the seed."""
    net, x, h = resnet8(), images(2, 18), 18
    rise = RISE(net, n_masks=12, s=5, p1=0.3, internal_batch_size=5, seed=3)
    grid, shift = rise.draw(h, h)
    cell = math.ceil(h / 5)
    expected = torch.zeros(2, 1, h, h, dtype=F64)
    for k in range(12):
        up = F.interpolate(
            grid[k][None, None].double(),
            size=(6 * cell, 6 * cell),
            mode="bilinear",
            align_corners=False,
        )
        m = up[:, :, shift[k, 0] : shift[k, 0] + h, shift[k, 1] : shift[k, 1] + h]
        assert m.min() >= 0 and m.max() <= 1
        with torch.no_grad():
            p = net(x * m).softmax(dim=1).gather(1, TARGETS[:2, None]).view(2, 1, 1, 1)
        expected += p * m / (12 * 0.3)
    torch.testing.assert_close(rise.attribute(x, TARGETS[:2]), expected, atol=1e-10, rtol=0)
    again, _ = rise.draw(h, h)
    other, _ = RISE(net, n_masks=12, s=5, p1=0.3, seed=4).draw(h, h)
    assert torch.equal(grid, again) and not torch.equal(grid, other)
    big, _ = RISE(net, n_masks=2000, s=7, p1=0.1).draw(h, h)
    assert abs(float(big.mean()) - 0.1) < 0.01


# ---------------------------------------------------------------- XRAI


def test_xrai_greedy_known_answer() -> None:
    """Hand case on 10 pixels: A = {0,1} (density 5) first, then C = {4..7} (1) beats B's new
    pixels {2..5} (0.75), then B's {2,3} (0.5), then D (-2). With min_pixel_diff 3, B and D
    A second image with fewer masks (zero padding) is processed alongside: the segment holding
    the attribution gets the top value. With min_pixel_diff 3, A and D (2 px) are dropped at
    once, B (13/6) is taken, C then adds only 2 px and is dropped, and {6..9} get their mean
    attribution (-0.5)."""
    attr = torch.tensor([[6, 4, 0, 1, 2, 0, 1, 1, -1, -3], [0, 0, 0, 0, 0, 0, 0, 9, 9, 0.0]])
    masks = torch.zeros(2, 4, 10, dtype=attr.dtype)
    for m, (lo, hi) in enumerate([(0, 2), (0, 6), (4, 8), (8, 10)]):
        masks[0, m, lo:hi] = 1
    masks[1, 0, :7], masks[1, 1, 7:] = 1, 1
    out = xrai_greedy(attr, masks, min_pixel_diff=1)
    expected0 = torch.tensor([5, 5, 0.5, 0.5, 1, 1, 1, 1, -2, -2])
    torch.testing.assert_close(out[0], expected0)
    torch.testing.assert_close(out[1], torch.tensor([0.0] * 7 + [6.0] * 3))
    out3 = xrai_greedy(attr[:1], masks[:1], min_pixel_diff=3)
    torch.testing.assert_close(out3[0], torch.tensor([13 / 6] * 6 + [-0.5] * 4))


def test_xrai_matches_pair_saliency() -> None:
    """PAIR ``saliency`` (test-only dependency) on the same inputs: identical Felzenszwalb
    masks; IG within 1e-9 (PAIR sums gradients in float32); greedy selection on the same IG and
    masks within 1e-12; end-to-end XRAI.GetMask with our baselines and masks within 1e-9."""
    px = pytest.importorskip("saliency.core.xrai")
    from saliency.core.integrated_gradients import INPUT_OUTPUT_GRADIENTS
    from saliency.core.integrated_gradients import IntegratedGradients as PairIG

    net, x, t = resnet8(), images(2, 32), torch.tensor([1, 4])
    xrai = XRAI(net, meta(32), steps=8, internal_batch_size=7)
    ig, out, baselines = xrai.integrated_gradients(x, t), xrai(x, t), xrai.make_baselines(x)
    for n in range(2):

        def call_model(batch, call_model_args=None, expected_keys=None, n: int = n):
            xb = torch.from_numpy(np.asarray(batch)).permute(0, 3, 1, 2).requires_grad_()
            (g,) = torch.autograd.grad(net(xb)[:, int(t[n])].sum(), xb)
            return {INPUT_OUTPUT_GRADIENTS: g.permute(0, 2, 3, 1).numpy()}

        hwc = x[n].permute(1, 2, 0).numpy()
        bases = [baselines[j, n].permute(1, 2, 0).numpy() for j in range(2)]
        ref_ig = np.mean(
            [
                PairIG().GetMask(hwc, call_model, x_baseline=b, x_steps=8, batch_size=3)
                for b in bases
            ],
            axis=0,
        )
        np.testing.assert_allclose(ig[n].permute(1, 2, 0).numpy(), ref_ig, atol=1e-9, rtol=0)
        image = hwc * np.array(STD) + np.array(MEAN)
        segs = px._get_segments_felzenszwalb(image)
        ours = segment_masks(image)
        assert len(segs) == len(ours) and all(np.array_equal(a, b) for a, b in zip(segs, ours))
        greedy, _ = px.XRAI._xrai(ref_ig.max(axis=-1), segs)
        np.testing.assert_allclose(out[n, 0].double().numpy(), greedy, atol=1e-6, rtol=0)
        ours_same_attr = xrai_greedy(
            torch.from_numpy(ref_ig.max(axis=-1)).flatten()[None],
            torch.from_numpy(np.stack(segs).reshape(1, len(segs), -1)).double(),
        )[0].view(32, 32)
        np.testing.assert_allclose(ours_same_attr.numpy(), greedy, atol=1e-12, rtol=0)
        params = px.XRAIParameters(steps=8)
        full = px.XRAI().GetMask(
            hwc, call_model, baselines=bases, segments=segs, batch_size=5, extra_parameters=params
        )
        np.testing.assert_allclose(xrai.attribute(x, t)[n, 0].numpy(), full, atol=1e-9, rtol=0)


def test_xrai_baselines() -> None:
    """black_white: (0 - mean) / std and (1 - mean) / std; min_max: the image's min and max."""
    x = images(2, 8)
    bw = XRAI(resnet8(), meta(8)).make_baselines(x)
    for j, v in enumerate((0.0, 1.0)):
        expected = torch.tensor([(v - m) / s for m, s in zip(MEAN, STD)], dtype=F64)
        torch.testing.assert_close(bw[j, 1, :, 2, 3], expected)
    mm = XRAI(resnet8(), baselines="min_max").make_baselines(x)
    assert torch.equal(mm[0, 1], x[1].min().expand(3, 8, 8))
    assert torch.equal(mm[1, 0], x[0].max().expand(3, 8, 8))


# ---------------------------------------------------------------- PruneGrad / PrunePGD


def hand_net() -> nn.Module:
    """x [1,1,2,2] -> 5 hidden ReLUs -> 2 logits. With x = (1, 2, 3, 4): a = (1, 2, 3, 0, 3),
    d logit_0 / d a = (4, -1, 1, 5, -3), scores |a * R| = (4, 2, 3, 0, 9)."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 5, bias=False), nn.ReLU(), nn.Linear(5, 2))
    w1 = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, -1], [1, 1, 0, 0]]
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor(w1, dtype=F64))
        net[3].weight.copy_(torch.tensor([[4, -1, 1, 5, -3], [0, 0, 0, 0, 1]], dtype=F64))
        net[3].bias.zero_()
    return net.to(F64).eval()


X_HAND = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64).view(1, 1, 2, 2)


def test_row_percentile_matches_numpy() -> None:
    """Linear-interpolation percentile per row equals numpy.percentile (atol 1e-12)."""
    ties = torch.randint(0, 5, (3, 101), generator=torch.Generator().manual_seed(0)).to(F64)
    for v in (torch.randn(3, 101, dtype=F64), ties):  # ties: the repeated-order-statistic path
        for q in (0.0, 12.5, 50.0, 70.0, 99.99, 100.0):
            expected = np.percentile(v.numpy(), q, axis=1)
            torch.testing.assert_close(
                row_percentile(v, q), torch.from_numpy(expected), atol=1e-12, rtol=0
            )


@pytest.mark.parametrize(
    "q, kept, grad",
    [
        (0.0, [1, 1, 1, 0, 1], [1, -4, 1, 0]),  # tau = 0: only the dead unit 3 -> plain gradient
        (25.0, [1, 0, 1, 0, 1], [1, -3, 1, 0]),  # tau = 2: units 3, 1 pruned
        (50.0, [1, 0, 0, 0, 1], [1, -3, 0, 0]),  # tau = 3: the unit at tau is pruned too (<=)
        (70.0, [1, 0, 0, 0, 1], [1, -3, 0, 0]),  # tau = 3 + 0.8 * (4 - 3) = 3.8
        (90.0, [0, 0, 0, 0, 1], [-3, -3, 0, 0]),  # tau = 4 + 0.6 * (9 - 4) = 7
        (100.0, [0, 0, 0, 0, 0], [0, 0, 0, 0]),  # tau = max: everything pruned
    ],
)
def test_prunegrad_known_answer(q: float, kept: list[int], grad: list[float]) -> None:
    """Hand-built net: which neurons are pruned, and the gradient of the pruned network."""
    net, t = hand_net(), torch.tensor([0])
    explainer = PruneGrad(net, percentile=q)
    (mask,) = explainer.masks(X_HAND, t)
    torch.testing.assert_close(mask.flatten(), torch.tensor(kept, dtype=F64))
    out = explainer.attribute(X_HAND, t).flatten()
    torch.testing.assert_close(out, torch.tensor(grad, dtype=F64))


def test_prunegrad_percentile_zero_is_the_plain_gradient() -> None:
    """Percentile 0 prunes the neurons whose score equals the minimum, 0 here: inactive ones
    (a = 0, already cut by the ReLU) and active ones with zero gradient (e.g. non-maximal inputs
    of a max-pool), whose removal changes neither the max-pool outputs nor the gradient. So
    PruneGrad equals the vanilla gradient (atol 1e-12) on ResNet-8 and a max-pool CNN."""
    for net in (resnet8(), inplace_cnn()):
        x = images()
        plain = input_gradient(net, x, TARGETS)[0]
        torch.testing.assert_close(
            PruneGrad(net, percentile=0.0).attribute(x, TARGETS), plain, atol=1e-12, rtol=0
        )


def reference_prune(net: nn.Module, x: Tensor, t: Tensor, q: float) -> tuple[Tensor, Tensor]:
    """Per-sample reference in the style of ``PathwayGrad:src/Pruner.py``: forward hooks on the
    ReLU modules appending outputs in call order, numpy percentile, masks applied in the hook.
    Returns the pruned network's input gradients and logits."""
    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    flags = [m.inplace for m in relus]
    grads, logits = [], []
    for i in range(len(x)):
        acts: list[Tensor] = []
        masks: list[Tensor] = []

        def hook(
            module: nn.Module, inputs: tuple, out: Tensor, acts: list = acts, masks: list = masks
        ) -> Tensor:
            out = out * masks[len(acts)] if masks else out
            acts.append(out)
            return out

        handles = [m.register_forward_hook(hook) for m in relus]
        try:
            for m in relus:
                m.inplace = False
            xi = x[i : i + 1].clone().requires_grad_()
            scores = torch.autograd.grad(net(xi)[0, t[i]], acts)
            scores = [(a * g).abs().detach() for a, g in zip(acts, scores)]
            tau = np.percentile(torch.cat([s.flatten() for s in scores]).numpy(), q)
            masks += [(s > tau).to(s.dtype) for s in scores]
            acts.clear()
            out = net(xi)
            grads.append(torch.autograd.grad(out[0, t[i]], xi)[0])
            logits.append(out.detach())
        finally:
            for h in handles:
                h.remove()
            for m, flag in zip(relus, flags):
                m.inplace = flag
    return torch.cat(grads), torch.cat(logits)


def test_prunegrad_matches_reference_and_reused_relus() -> None:
    """PruneGrad equals the Pruner-style reference (atol 1e-12) on ResNet-8 and on torchvision
    resnet18, whose in-place ``self.relu`` is called twice per block: 17 ReLU calls (one layer
    each) from 9 modules. The pruned logits and the relative softmax change also agree."""
    for net, x, q in ((resnet8(), images(), 70.0), (resnet18(), images(2, 32), 85.0)):
        t = TARGETS[: len(x)]
        ref_grad, ref_logits = reference_prune(net, x, t, q)
        explainer = PruneGrad(net, percentile=q)
        torch.testing.assert_close(explainer.attribute(x, t), ref_grad, atol=1e-12, rtol=0)
        masks = explainer.masks(x, t)
        with torch.no_grad():
            torch.testing.assert_close(
                pruned_forward(net, x, masks), ref_logits, atol=1e-12, rtol=0
            )
    assert len(neuron_scores(net, x, t)) == 17
    assert sum(isinstance(m, nn.ReLU) for m in net.modules()) == 9
    with torch.no_grad():
        probs = net(x).softmax(1)
    pred = probs.argmax(1)
    _, ref_logits = reference_prune(net, x, pred, 85.0)
    p, pp = probs.gather(1, pred[:, None]), ref_logits.softmax(1).gather(1, pred[:, None])
    torch.testing.assert_close(explainer.output_change(x, 85.0), ((pp - p).abs() / p).flatten())


def trained_net() -> tuple[nn.Module, Tensor]:
    """A small CNN fitted for 150 Adam steps to 4 noisy blob classes; returns it and 96
    held-out images."""
    gen = torch.Generator().manual_seed(7)
    centers = torch.randn(4, 3, 8, 8, generator=gen, dtype=F64)

    def sample(n: int) -> tuple[Tensor, Tensor]:
        y = torch.randint(0, 4, (n,), generator=gen)
        return centers[y] + 1.5 * torch.randn(n, 3, 8, 8, generator=gen, dtype=F64), y

    torch.manual_seed(8)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 4),
    ).to(F64)  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(150):
        x, y = sample(64)
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    net.zero_grad(set_to_none=True)
    return net.eval(), sample(96)[0]


def test_prunegrad_calibration_reaches_target_change() -> None:
    """fit() bisects the percentile so that the mean relative softmax change on the held-out
    images is 0.15 within 0.02; it reads at most max_calibration_images; attributing before
    fit raises; the calibrated percentile is then used (and shared by PrunePGD)."""
    net, held_out = trained_net()
    consumed = []

    def batches():
        for start in range(0, 96, 16):
            consumed.append(start)
            yield held_out[start : start + 16], torch.zeros(16, dtype=torch.long)

    explainer = PruneGrad(net, calibrate=True, target_change=0.15, max_calibration_images=72)
    assert explainer.needs_data and explainer.fit_split == "val"
    assert not PruneGrad(net).needs_data
    with pytest.raises(RuntimeError, match="fit"):
        explainer.attribute(held_out[:2], torch.tensor([0, 1]))
    explainer.fit(batches())
    assert len(consumed) == 5  # 16 * 4 + 8 of the fifth batch = 72 images
    change = explainer.mean_output_change([held_out[:72]], explainer.percentile)
    assert abs(change - 0.15) < 0.02, (explainer.percentile, explainer.calibration_trace)
    assert 0 < explainer.percentile < 100 and len(explainer.calibration_trace) == 12
    fixed = PruneGrad(net, percentile=explainer.percentile)
    x, t = held_out[:3], torch.tensor([0, 1, 3])
    torch.testing.assert_close(explainer.attribute(x, t), fixed.attribute(x, t))
    pgd = PrunePGD(net, calibrate=True, max_calibration_images=72).fit(batches())
    assert pgd.percentile == explainer.percentile


def test_prunepgd_bound_ascent_and_known_answer() -> None:
    """||delta||_2 <= 0.1 per sample (1e-12) and the pruned target logit increases; one
    iteration gives step * PruneGrad / ||PruneGrad||; on the hand net (linear around x at
    percentile 50) the 20 steps end at 0.1 * g / ||g|| with g = (1, -3, 0, 0) (atol 1e-12)."""
    net, x = resnet8(), images()
    pgd = PrunePGD(net, percentile=70.0)
    delta = pgd.attribute(x, TARGETS)
    assert (delta.flatten(1).norm(dim=1) <= 0.1 + 1e-12).all()
    masks = pgd.masks(x, TARGETS)
    with torch.no_grad():
        before = pruned_forward(net, x, masks).gather(1, TARGETS[:, None])
        after = pruned_forward(net, x + delta, masks).gather(1, TARGETS[:, None])
    assert (after > before).all()
    one = PrunePGD(net, percentile=70.0, iterations=1, step=0.01).attribute(x, TARGETS)
    g = PruneGrad(net, percentile=70.0).attribute(x, TARGETS)
    torch.testing.assert_close(one, 0.01 * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
    hand = PrunePGD(hand_net(), percentile=50.0).attribute(X_HAND, torch.tensor([0]))
    expected = 0.1 * torch.tensor([1.0, -3, 0, 0], dtype=F64) / math.sqrt(10)
    torch.testing.assert_close(hand.flatten(), expected, atol=1e-12, rtol=0)
