"""Named, composable post-processing of raw attributions (papers collapse differently).

A pipeline is a list of steps, each a name or a one-key mapping ``{name: argument}``::

    postprocess: [channel_mean, abs, minmax]                # OPPSD's baselines
    postprocess: [channel_max_abs, maxabs]                  # PathwayGrad's signed view
    postprocess: [channel_sum_abs, {clip_percentile: 99}]   # Adebayo's abs view

Every step maps ``[B, C, H, W]`` to ``[B, C', H, W]`` on the same device, and normalisations
turn a constant map into zeros instead of NaNs.

A map is *constant* when its values span at most :data:`CONSTANT_RTOL` (1e-5) of its largest
magnitude (:func:`constant_maps`), not only when the span is exactly 0. Float32 rounding leaves
ripples of one or two units in the last place (about 1e-7 relative) on maps that are constant by
definition (GradMid at a layer feeding global pooling, bilinearly upsampled); min-max scaling
with ``span > 0`` would stretch that ripple into a full [0, 1] noise map. The threshold is the
same for every dtype, so that a map computed in float32 and in float64 is constant in both or in
neither; :func:`xai_bench.methods.cam_base.minmax` applies the same rule inside the methods.

Non-finite maps stay non-finite: a map that holds a NaN or an infinite value becomes all NaN
in every normalisation (:func:`clip_percentile`, :func:`minmax`, :func:`maxabs`) and after any
:class:`Postprocess` pipeline, so no step turns it into a plausible finite map (dividing by an
infinite maximum, clipping ``inf`` to 1, ``relu(-inf) = 0`` or a NaN span read as a constant
map would).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from xai_bench.utils.numerics import CONSTANT_RTOL, constant_maps

Step = Callable[..., Tensor]


def _flat(x: Tensor) -> Tensor:
    return x.flatten(1)


def _per_sample(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def nonfinite_maps(x: Tensor) -> Tensor:
    """Per sample ``[B]`` (bool): the map holds a NaN or an infinite value."""
    return ~torch.isfinite(_flat(x)).all(1)


def poison(out: Tensor, bad: Tensor) -> Tensor:
    """``out`` with every value of the samples flagged in ``bad`` ``[B]`` set to NaN."""
    if not bool(bad.any()):
        return out
    if not out.is_floating_point():
        out = out.float()
    return torch.where(_per_sample(bad.to(out.device), out), torch.nan, out)


def channel_max_abs(x: Tensor) -> Tensor:
    """Per pixel, the channel value with the largest magnitude, sign kept (PathwayGrad)."""
    idx = x.abs().argmax(1, keepdim=True)
    return x.gather(1, idx)


def clip_percentile(x: Tensor, q: float = 99.0) -> Tensor:
    """Clip each map at its ``q``-th percentile of absolute values, then divide by it (a map
    with a non-finite value becomes all NaN)."""
    top = torch.quantile(_flat(x.abs()).float(), q / 100.0, dim=1).to(x.dtype)
    top = _per_sample(top, x)
    scaled = x / torch.where(top > 0, top, torch.ones_like(top))
    return poison(scaled.clamp(-1.0, 1.0), nonfinite_maps(x))


def minmax(x: Tensor, rtol: float = CONSTANT_RTOL) -> Tensor:
    """Per-sample min-max scaling to [0, 1]; constant maps (:func:`constant_maps` with
    ``rtol``) become 0, maps with a non-finite value all NaN."""
    lo = _per_sample(_flat(x).amin(1), x)
    hi = _per_sample(_flat(x).amax(1), x)
    span = hi - lo
    flat = constant_maps(lo, hi, rtol)
    out = torch.where(flat, torch.zeros_like(x), (x - lo) / torch.where(flat, 1.0, span))
    return poison(out, nonfinite_maps(x))


def maxabs(x: Tensor) -> Tensor:
    """Per-sample division by the largest magnitude, to [-1, 1]; zero maps stay 0, maps with
    a non-finite value become all NaN."""
    top = _per_sample(_flat(x.abs()).amax(1), x)
    return poison(x / torch.where(top > 0, top, torch.ones_like(top)), nonfinite_maps(x))


def upsample(x: Tensor, size: int | Sequence[int]) -> Tensor:
    """Bilinear resize to ``size`` (align_corners=False)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


STEPS: dict[str, Step] = {
    "abs": torch.abs,
    "relu": torch.relu,
    "square": torch.square,
    "channel_mean": lambda x: x.mean(1, keepdim=True),
    "channel_sum": lambda x: x.sum(1, keepdim=True),
    "channel_sum_abs": lambda x: x.abs().sum(1, keepdim=True),
    "channel_max_abs": channel_max_abs,
    "clip_percentile": clip_percentile,
    "minmax": minmax,
    "maxabs": maxabs,
    "upsample": upsample,
}


class Postprocess:
    """A pipeline of named steps, applied in order. A map that holds a NaN or an infinite
    value, before or after the steps, comes out all NaN.

    Args:
        steps: names from :data:`STEPS`, or one-key mappings ``{name: argument}``.
    """

    def __init__(self, steps: Sequence[str | Mapping[str, Any]] | None = None) -> None:
        self.steps: list[tuple[str, Any]] = []
        for step in steps or ():
            if isinstance(step, str):
                name, arg = step, None
            elif isinstance(step, Mapping) and len(step) == 1:
                ((name, arg),) = step.items()
            else:
                raise ValueError(f"a postprocess step is a name or a one-key mapping, got {step}")
            if name not in STEPS:
                raise ValueError(f"unknown postprocess step '{name}' (known: {sorted(STEPS)})")
            self.steps.append((name, arg))

    def __call__(self, attr: Tensor) -> Tensor:  # [B, C, H, W] -> [B, C', H, W]
        bad = nonfinite_maps(attr)  # stays all NaN whatever the steps (e.g. relu(-inf) = 0)
        for name, arg in self.steps:
            attr = STEPS[name](attr) if arg is None else STEPS[name](attr, arg)
        return poison(attr, bad | nonfinite_maps(attr))

    def __repr__(self) -> str:
        return " -> ".join(n if a is None else f"{n}({a})" for n, a in self.steps) or "identity"
