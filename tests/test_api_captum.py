"""The Captum-compatible call: ``explainer.attribute(inputs, target=..., baselines=...)``.

Targets as Captum takes them (int, list, tuple, 0-d/1-d tensor), layers given as modules,
tensor baselines for integrated gradients and occlusion, checked against Captum itself on a
float64 ResNet-8; invalid arguments give one-line errors.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from captum.attr import InputXGradient as CaptumIxG
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr import LayerAttribution, LayerGradCam
from captum.attr import Occlusion as CaptumOcclusion
from captum.attr import Saliency as CaptumSaliency
from torch import Tensor, nn

from xai_bench.methods.base import Explainer, input_gradient
from xai_bench.methods.cumulative import CumulativeGradCAM, CumulativeGradMid
from xai_bench.methods.gradcam import GradCAM
from xai_bench.methods.gradcam_pos import GradCAMPos
from xai_bench.methods.gradcampp import GradCAMPlusPlus
from xai_bench.methods.gradient import Gradient
from xai_bench.methods.gradmid import GradMid
from xai_bench.methods.groupcam import GroupCAM
from xai_bench.methods.guided_gradcam import GuidedGradCAM
from xai_bench.methods.input_x_gradient import InputXGradient
from xai_bench.methods.integrated_gradients import IntegratedGradients
from xai_bench.methods.occlusion import Occlusion
from xai_bench.methods.scorecam import ScoreCAM
from xai_bench.methods.smoothgrad import SmoothGrad
from xai_bench.models.layers import UnknownLayerError
from xai_bench.models.meta import ModelMeta
from xai_bench.models.small import ResNet8

F64 = torch.float64
B = 3


def resnet8(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return ResNet8(num_classes=8, widths=(4, 8, 8)).to(F64).eval()


def images(b: int = B, size: int = 16, seed: int = 4) -> Tensor:
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=F64)


def meta() -> ModelMeta:
    return ModelMeta.create("tiny", 8, (3, 16, 16), (0.5, 0.4, 0.3), (0.2, 0.25, 0.5))


# ---------------------------------------------------------------- targets


# (our target, Captum's target for the same classes)
TARGET_FORMS = {
    "int": (3, 3),
    "numpy_int": (np.int64(3), 3),
    "0d_tensor": (torch.tensor(3), 3),
    "1_element_tensor": (torch.tensor([3]), 3),
    "list": ([3, 0, 5], [3, 0, 5]),
    "tuple": ((3, 0, 5), torch.tensor([3, 0, 5])),  # a tuple is one multi-dim index in Captum
    "1d_tensor": (torch.tensor([3, 0, 5]), torch.tensor([3, 0, 5])),
    "numpy_array": (np.array([3, 0, 5]), [3, 0, 5]),
}
CAPTUM_PAIRS: dict[str, tuple[Callable[..., Explainer], Callable[..., Tensor]]] = {
    "gradient": (Gradient, lambda net, x, t: CaptumSaliency(net).attribute(x, t, abs=False)),
    "input_x_gradient": (InputXGradient, lambda net, x, t: CaptumIxG(net).attribute(x, t)),
    "integrated_gradients": (
        partial(IntegratedGradients, steps=6, integration="gausslegendre"),
        lambda net, x, t: CaptumIG(net).attribute(x, target=t, n_steps=6, method="gausslegendre"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("method", CAPTUM_PAIRS)
def test_every_captum_target_form_matches_captum(method: str) -> None:
    """``attribute(x, target=...)`` with an int, a numpy int, a 0-d or 1-element tensor, a list,
    a tuple, a 1-d tensor or a numpy array equals Captum with the same classes (atol 1e-10)."""
    ours_cls, theirs = CAPTUM_PAIRS[method]
    net, x = resnet8(), images()
    explainer = ours_cls(net, meta())
    for name, (ours_t, captum_t) in TARGET_FORMS.items():
        out = explainer.attribute(x, target=ours_t)
        ref = theirs(net, x.clone(), captum_t)
        torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-6, msg=f"target form {name}")
    kw = explainer.attribute(inputs=x, target=3)  # Captum's keyword names
    torch.testing.assert_close(kw, theirs(net, x.clone(), 3), atol=1e-10, rtol=1e-6)
    assert explainer(x, 3).dtype == torch.float32  # __call__: the same, cast to float32


METHODS: dict[str, Callable[[nn.Module], Explainer]] = {
    "gradient": Gradient,
    "ig": partial(IntegratedGradients, steps=4, baseline="blur", blur_kernel=5, blur_sigma=1.0),
    "smoothgrad": partial(SmoothGrad, n_samples=3, internal_batch_size=4),
    "gradcam": partial(GradCAM, layer="layer3"),
    "scorecam": partial(ScoreCAM, layer="layer2", internal_batch_size=5),
    "occlusion": partial(Occlusion, window=6, stride=5, internal_batch_size=7),
}


@pytest.mark.parametrize("method", METHODS)
def test_list_target_equals_per_sample_int_targets(method: str) -> None:
    """A list of classes gives, per sample, the map of that sample alone with an int target."""
    explainer, x = METHODS[method](resnet8()), images()
    classes = [3, 0, 5]
    single = torch.cat([explainer.attribute(x[i : i + 1], target=c) for i, c in enumerate(classes)])
    torch.testing.assert_close(
        explainer.attribute(x, target=classes), single, atol=1e-10, rtol=1e-7
    )
    same = explainer.attribute(x, target=2)  # an int: the same class for every sample
    torch.testing.assert_close(same, explainer.attribute(x, target=[2, 2, 2]), atol=0, rtol=0)


BAD_TARGETS = {
    "float": (2.5, "must be an int, a list of ints or a tensor, not float"),
    "bool": (True, "not bool"),
    "str": ("3", "not str"),
    "none": (None, "target is required"),
    "float_list": ([1.0, 2.0, 3.0], "one int class per sample"),
    "nested_list": ([(1, 2), (3, 4), (5, 6)], "multi-output models are not supported"),
    "float_tensor": (torch.tensor([0.0, 1.0, 2.0]), "integer class indices"),
    "bool_tensor": (torch.tensor([True, False, True]), "integer class indices"),
    "2d_tensor": (torch.tensor([[0, 1, 2]]), r"0-d or 1-d, got shape \(1, 3\)"),
    "too_few": (torch.tensor([0, 1]), "2 targets for a batch of 3"),
    "too_many": ([0, 1, 2, 3], "4 targets for a batch of 3"),
    "negative": (-1, r"outside \[0, 8\)"),
    "too_large": ([0, 8, 1], r"outside \[0, 8\)"),
}


@pytest.mark.parametrize("case", BAD_TARGETS)
def test_invalid_targets_give_one_line_value_errors(case: str) -> None:
    target, message = BAD_TARGETS[case]
    explainer = Gradient(resnet8(), meta())
    for call in (explainer.attribute, explainer):
        with pytest.raises(ValueError, match=message) as err:
            call(images(), target)
        assert "\n" not in str(err.value)


def test_input_and_keyword_checks() -> None:
    """A non-batch input, a negative class without meta, Captum's ``additional_forward_args``
    and keywords the method does not take are refused with a clear message."""
    net, x = resnet8(), images()
    with pytest.raises(
        ValueError, match=r"expected a batch \[B, C, H, W\], got shape \(3, 16, 16\)"
    ):
        Gradient(net).attribute(x[0], target=1)
    with pytest.raises(ValueError, match=r"outside \[0, num_classes\)"):
        Gradient(net).attribute(x, target=-2)  # no meta: only the lower bound is known
    with pytest.raises(ValueError, match="additional_forward_args is not supported"):
        Gradient(net).attribute(x, target=1, additional_forward_args=(2,))
    none = Gradient(net).attribute(x, target=1, additional_forward_args=None)
    torch.testing.assert_close(none, Gradient(net).attribute(x, 1))
    with pytest.raises(TypeError, match=r"Gradient.attribute\(\) got unknown keyword\(s\) "):
        Gradient(net).attribute(x, target=1, baselines=0.0)
    with pytest.raises(TypeError, match=r"it takes \['baselines'\]"):
        IntegratedGradients(net, steps=2).attribute(x, target=1, n_steps=2)


# ---------------------------------------------------------------- baselines


@pytest.mark.parametrize("shape", ["chw", "1chw", "bchw", "c11", "scalar_tensor", "float"])
def test_ig_tensor_baseline_matches_captum(shape: str) -> None:
    """A tensor (or number) baseline, given to the constructor or per call as ``baselines=``,
    equals Captum's IntegratedGradients with that baseline (Gauss-Legendre, 7 steps; 1e-10)."""
    net, x = resnet8(), images()
    g = torch.Generator().manual_seed(9)
    full = torch.randn(B, 3, 16, 16, generator=g, dtype=F64)
    baseline = {
        "chw": full[0], "1chw": full[:1], "bchw": full, "c11": full[0, :, :1, :1],
        "scalar_tensor": torch.tensor(-0.7, dtype=F64), "float": -0.7,
    }[shape]  # fmt: skip
    x0 = torch.as_tensor(baseline, dtype=F64).expand_as(x).contiguous()
    ref = CaptumIG(net).attribute(x, x0, target=[1, 4, 6], n_steps=7, method="gausslegendre")
    kw = dict(steps=7, integration="gausslegendre", internal_batch_size=5)
    ours = IntegratedGradients(net, baseline=baseline, **kw).attribute(x, target=[1, 4, 6])
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=1e-6)
    per_call = IntegratedGradients(net, **kw).attribute(x, target=[1, 4, 6], baselines=baseline)
    torch.testing.assert_close(per_call, ref, atol=1e-10, rtol=1e-6)
    float32 = IntegratedGradients(net.float(), baseline=baseline, **kw)(x.float(), [1, 4, 6])
    assert float32.dtype == torch.float32  # a float64 baseline follows the input's dtype


def test_ig_named_baselines_still_work_per_call() -> None:
    """``baselines="blur"`` per call equals the constructor's ``baseline="blur"``."""
    net, x = resnet8(), images()
    kw = dict(steps=3, blur_kernel=5, blur_sigma=1.0)
    ref = IntegratedGradients(net, baseline="blur", **kw).attribute(x, 2)
    per_call = IntegratedGradients(net, **kw).attribute(x, 2, baselines="blur")
    torch.testing.assert_close(per_call, ref, atol=0, rtol=0)


def test_occlusion_tensor_fill_matches_captum() -> None:
    """A tensor fill (``[1, C, H, W]`` or ``[B, C, H, W]``, constructor or ``baselines=``)
    equals Captum's Occlusion with the same baselines (atol 1e-5; Captum divides in float32)."""
    net, x = resnet8(), images(B, 20)
    g = torch.Generator().manual_seed(3)
    for fill in (torch.randn(1, 3, 20, 20, generator=g, dtype=F64),
                 torch.randn(B, 3, 20, 20, generator=g, dtype=F64)):  # fmt: skip
        ref = (
            CaptumOcclusion(net)
            .attribute(x, (3, 6, 6), strides=(3, 4, 4), baselines=fill, target=[0, 5, 2])
            .double()
        )  # Captum divides in float32
        ours = Occlusion(net, window=6, stride=4, fill=fill, internal_batch_size=7)
        torch.testing.assert_close(ours.attribute(x, [0, 5, 2]), ref, atol=1e-5, rtol=0)
        per_call = Occlusion(net, window=6, stride=4, internal_batch_size=None)
        out = per_call.attribute(x, target=[0, 5, 2], baselines=fill)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


BAD_BASELINES = {
    "wrong_channels": (torch.zeros(2, 16, 16, dtype=F64), r"shape \(2, 16, 16\) does not fit"),
    "wrong_batch": (torch.zeros(2, 3, 16, 16, dtype=F64), r"does not fit inputs of shape"),
    "five_dims": (torch.zeros(1, 1, 3, 16, 16), "expected \\[C, H, W\\], \\[1, C, H, W\\]"),
    "integer_tensor": (torch.zeros(3, 16, 16, dtype=torch.long), "must be floating point"),
    "nan_tensor": (torch.full((3, 16, 16), float("nan")), "NaN or infinite"),
    "unknown_name": ("purple", "must be one of .*'zero'.*, a number or a tensor"),
    "infinite": (float("inf"), "must be finite"),
}


@pytest.mark.parametrize("case", BAD_BASELINES)
def test_invalid_baselines_are_refused(case: str) -> None:
    value, message = BAD_BASELINES[case]
    net, x = resnet8(), images()
    with pytest.raises(ValueError, match=message) as err:
        IntegratedGradients(net, steps=2, baseline=value).attribute(x, 1)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=message):
        IntegratedGradients(net, steps=2).attribute(x, 1, baselines=value)
    if case != "unknown_name":  # occlusion takes no names
        with pytest.raises(ValueError, match=message.replace("must be one of .*'zero'.*, ", "")):
            Occlusion(net, window=8, stride=8).attribute(x, 1, baselines=value)
    with pytest.raises(ValueError, match="fill must be a number or a tensor, got 'zero'"):
        Occlusion(net, fill="zero")  # type: ignore[arg-type]


# ---------------------------------------------------------------- layers as modules


CAMS: dict[str, Callable[..., Explainer]] = {
    "gradcam": GradCAM,
    "gradcampp": GradCAMPlusPlus,
    "gradcam_pos": GradCAMPos,
    "gradmid": GradMid,
    "guided_gradcam": GuidedGradCAM,
    "scorecam": partial(ScoreCAM, internal_batch_size=None),
    "groupcam": partial(GroupCAM, groups=4, theta=None, blur_kernel=5, blur_sigma=1.0),
}


@pytest.mark.parametrize("method", CAMS)
def test_cam_layer_given_as_module_equals_its_path(method: str) -> None:
    """``layer=model.layer3`` is stored as ``"layer3"`` and gives the same map."""
    net, x = resnet8(), images()
    by_module = CAMS[method](net, layer=net.layer3)
    assert by_module.layer == "layer3"
    ref = CAMS[method](net, layer="layer3").attribute(x, [0, 5, 2])
    torch.testing.assert_close(by_module.attribute(x, target=[0, 5, 2]), ref, atol=0, rtol=0)
    nested = CAMS[method](net, layer=net.layer2.conv2)
    assert nested.layer == "layer2.conv2"


def test_gradcam_with_module_layer_matches_captum_layer_gradcam() -> None:
    """``GradCAM(net, layer=net.layer3)`` equals Captum's ``LayerGradCam`` on the same module,
    ReLU'd and upsampled bilinearly (atol 1e-10)."""
    net, x = resnet8(), images()
    ref = LayerGradCam(net, net.layer3).attribute(x, target=[0, 5, 2], relu_attributions=True)
    ref = LayerAttribution.interpolate(ref, (16, 16), interpolate_mode="bilinear")
    out = GradCAM(net, layer=net.layer3).attribute(x, target=[0, 5, 2])
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-6)


def test_cumulative_layers_given_as_modules() -> None:
    net, x = resnet8(), images()
    for cls in (CumulativeGradCAM, CumulativeGradMid):
        by_module = cls(net, layers=[net.layer1, net.layer2, net.layer3])
        assert by_module.layers == ["layer1", "layer2", "layer3"]
        ref = cls(net, layers=["layer1", "layer2", "layer3"]).attribute(x, 1)
        torch.testing.assert_close(by_module.attribute(x, target=1), ref, atol=0, rtol=0)


def test_foreign_module_gives_a_one_line_error() -> None:
    """A module of another model (even an identical copy) is refused in one line, without the
    module's repr."""
    net = resnet8()
    foreign = copy.deepcopy(net).layer3  # a BasicBlock: its repr spans many lines
    for build in (
        lambda: GradCAM(net, layer=foreign),
        lambda: ScoreCAM(net, layer=nn.Conv2d(8, 8, 3)),
        lambda: CumulativeGradCAM(net, layers=[net.layer1, foreign]),
    ):
        with pytest.raises(UnknownLayerError, match="is not a submodule of ResNet8") as err:
            build()
        message = str(err.value)
        assert "\n" not in message and "kernel_size" not in message, message


# ---------------------------------------------------------------- subclasses of the old contract


class LegacyGradient(Explainer):
    """Written for the old contract: overrides ``attribute(x, target)`` itself."""

    name = "legacy_gradient"

    def attribute(self, x: Tensor, target: Tensor) -> Tensor:
        assert isinstance(target, Tensor) and target.shape == (x.shape[0],)
        return input_gradient(self.model, x, target)[0]


class LegacyDoubleCAM(GradCAM):
    """Old contract on top of a concrete method, calling ``super().attribute``."""

    def attribute(self, x: Tensor, target: Tensor) -> Tensor:
        return 2 * super().attribute(x, target)


def test_subclasses_overriding_attribute_keep_working() -> None:
    """They get checked ``[B]`` targets from every form, also inside a noise tunnel."""
    net, x = resnet8(), images()
    ref = Gradient(net).attribute(x, [3, 3, 3])
    torch.testing.assert_close(LegacyGradient(net).attribute(x, target=3), ref, atol=0, rtol=0)
    torch.testing.assert_close(LegacyGradient(net)(x, [3, 3, 3]), ref.float(), atol=0, rtol=0)
    with pytest.raises(ValueError, match="outside"):
        LegacyGradient(net, meta()).attribute(x, target=8)
    tunnel = SmoothGrad(net, base=LegacyGradient, n_samples=2, sigma=0.0)
    torch.testing.assert_close(tunnel.attribute(x, target=3), ref, atol=1e-12, rtol=0)
    cam = GradCAM(net, layer="layer3").attribute(x, [0, 5, 2])
    double = LegacyDoubleCAM(net, layer=net.layer3).attribute(x, target=[0, 5, 2])
    torch.testing.assert_close(double, 2 * cam, atol=0, rtol=0)


# ---------------------------------------------------------------- the documented example


def test_documented_captum_example_runs_and_matches_captum() -> None:
    """The example of docs/methods.md#captum-style-calls on a random resnet18 at 32 px: IG with
    a tensor baseline equals Captum's (atol 1e-4 in float32), Grad-CAM takes ``model.layer4``."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "methods.md").read_text()
    section = doc.split("### Captum-style calls", 1)[1]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=8).eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    scope = {"model": model, "x": x}
    exec(compile(code, "docs/methods.md", "exec"), scope)
    ref = CaptumIG(model).attribute(
        x, torch.zeros_like(x), target=3, n_steps=32, method="gausslegendre"
    )
    torch.testing.assert_close(scope["attr"], ref, atol=1e-4, rtol=1e-3)
    assert scope["cam"].shape == (3, 1, 32, 32)
