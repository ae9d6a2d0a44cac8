"""Time xai-bench methods against captum / pytorch-grad-cam / zennit on the same model and batch.

Usage: python scripts/speed_vs_reference.py [--model resnet8|resnet50|vgg16] [--batch 32]
       [--size 32] [--repeats 3] [--device cpu|cuda]
Prints a markdown table of seconds per batch (median after one warm-up, ours and the reference
timed interleaved) and the speed-up.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable

import torch
import torchvision
from torch import nn

from xai_bench.methods.deconvnet import Deconvnet
from xai_bench.methods.fullgrad import FullGrad
from xai_bench.methods.gradcam import GradCAM
from xai_bench.methods.gradcampp import GradCAMPlusPlus
from xai_bench.methods.gradient import Gradient
from xai_bench.methods.guided_backprop import GuidedBackprop
from xai_bench.methods.input_x_gradient import InputXGradient
from xai_bench.methods.integrated_gradients import IntegratedGradients
from xai_bench.methods.scorecam import ScoreCAM
from xai_bench.methods.smoothgrad import SmoothGrad
from xai_bench.models.small import ResNet8


def timed_pair(
    ours: Callable[[], object], ref: Callable[[], object], device: torch.device, repeats: int
) -> tuple[float, float]:
    """Median seconds of ``ours`` and ``ref`` after one warm-up each, timed interleaved (ours,
    ref, ref, ours, ...) so that drifting machine load affects both alike."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    ours()
    ref()
    times: dict[int, list[float]] = {0: [], 1: []}
    for r in range(repeats):
        for k in (0, 1) if r % 2 == 0 else (1, 0):
            sync()
            start = time.perf_counter()
            (ours, ref)[k]()
            sync()
            times[k].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def build(name: str) -> tuple[nn.Module, str]:
    torch.manual_seed(0)
    if name == "resnet8":
        return ResNet8(num_classes=10), "layer3"
    if name == "resnet50":
        return torchvision.models.resnet50(), "layer4"
    if name == "vgg16":
        return torchvision.models.vgg16(), "features.29"
    raise ValueError(name)


def pairs(model: nn.Module, layer: str, steps: int, samples: int) -> dict[str, tuple]:
    """Method name -> (ours, reference) callables taking (x, target)."""
    from captum.attr import Deconvolution, NoiseTunnel, Saliency
    from captum.attr import GuidedBackprop as CGuidedBackprop
    from captum.attr import InputXGradient as CInputXGradient
    from captum.attr import IntegratedGradients as CaptumIG
    from pytorch_grad_cam import FullGrad as GFullGrad
    from pytorch_grad_cam import GradCAM as GGradCAM
    from pytorch_grad_cam import GradCAMPlusPlus as GGradCAMPP
    from pytorch_grad_cam import ScoreCAM as GScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ref = copy.deepcopy(model)  # pytorch-grad-cam calls .eval() and keeps hooks: its own copy
    target_layer = [ref.get_submodule(layer)]

    def cam(cls, **kw):
        def run(x, t):
            with cls(model=ref, target_layers=target_layer, **kw) as c:
                return c(input_tensor=x, targets=[ClassifierOutputTarget(int(k)) for k in t])

        return run

    nt = NoiseTunnel(Saliency(model))
    return {
        "gradient": (Gradient(model), lambda x, t: Saliency(model).attribute(x, t, abs=False)),
        "input_x_gradient": (InputXGradient(model), CInputXGradient(model).attribute),
        "integrated_gradients": (
            IntegratedGradients(model, steps=steps, baseline="zero", internal_batch_size=None),
            lambda x, t: CaptumIG(model).attribute(
                x, target=t, n_steps=steps, method="riemann_trapezoid"
            ),
        ),
        "smoothgrad": (
            SmoothGrad(model, base=Gradient, n_samples=samples, sigma=0.15, sigma_mode="absolute"),
            lambda x, t: nt.attribute(
                x, target=t, nt_type="smoothgrad", nt_samples=samples, stdevs=0.15, abs=False
            ),
        ),
        "guided_backprop": (GuidedBackprop(model), CGuidedBackprop(model).attribute),
        "deconvnet": (Deconvnet(model), Deconvolution(model).attribute),
        "gradcam": (GradCAM(model, layer=layer), cam(GGradCAM)),
        "gradcampp": (GradCAMPlusPlus(model, layer=layer), cam(GGradCAMPP)),
        "scorecam": (ScoreCAM(model, layer=layer, internal_batch_size=32), cam(GScoreCAM)),
        "fullgrad": (
            FullGrad(model),
            lambda x, t: GFullGrad(ref, [], None)(x, [ClassifierOutputTarget(int(k)) for k in t]),
        ),
    }


def main() -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's Score-CAM progress bars
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnet8")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    model, layer = build(args.model)
    model = model.to(device).eval()
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    with torch.no_grad():
        target = model(x).argmax(1)
    print(
        f"| method | xai-bench s/batch | reference s/batch | speed-up |  ({args.model}, "
        f"batch {args.batch}, {args.size} px, {device})\n| --- | --- | --- | --- |"
    )
    for name, (ours, ref) in pairs(model, layer, args.steps, args.samples).items():
        if args.only and name not in args.only:
            continue
        t_ours, t_ref = timed_pair(
            lambda o=ours: o(x, target), lambda r=ref: r(x, target), device, args.repeats
        )
        print(f"| {name} | {t_ours:.4f} | {t_ref:.4f} | {t_ref / t_ours:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
