"""Input invariance (Kindermans et al., "(Un)reliability of saliency methods").

An input shift ``m2`` (:class:`Shift`), the comparison of a method's maps of a network and its
mean-shifted twin (:func:`compare_maps`), and the crafted shift's target image and its Pearson
check (UNREL §4). The twin itself is built by :mod:`xai_bench.models.shift`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xai_bench.methods.base import input_gradient
from xai_bench.models.shift import assert_same_logits, crafted_shift, shifted_twin

Explain = Callable[[Tensor, Tensor], Tensor]
#: relative difference up to which a method counts as invariant, per evaluation dtype (float32
#: rounding alone reaches about 1e-4)
TOLERANCE = {"float32": 1e-3, "float64": 1e-4}


@dataclass
class Shift:
    """One input shift ``m2`` ``[C, H, W]`` and the minimum of the shifted training data.

    ``info`` of the crafted shift holds ``x_hat``, ``t_hat``, ``grad`` (``df1/dx`` at
    ``x_hat``), ``s_hat`` (the target image), ``raw`` (the unclipped shift) and, after
    :func:`crafted_pearson`, ``gi`` (the gradient x input maps).
    """

    name: str
    m2: Tensor
    data_min: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


def compare_maps(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Per image ``[B]``: ``max |a - b|`` and that over ``max |a|`` (``a``: the original's map).

    A zero original map gives a relative difference of 0 if ``b`` is zero too, else ``inf``;
    an image with a non-finite value in either map gives NaN for both.
    """
    a, b = a.double().flatten(1), b.double().flatten(1)
    diff = (a - b).abs().amax(1)
    scale = a.abs().amax(1)
    rel = torch.where(scale > 0, diff / scale.clamp_min(1e-300), diff * math.inf)
    rel = torch.where(diff == 0, 0.0, rel)
    finite = torch.isfinite(a).all(1) & torch.isfinite(b).all(1)
    return diff.where(finite, math.nan), rel.where(finite, math.nan)


def compare_explainers(
    e1: Explain, e2: Explain, batches: Iterable[tuple[Tensor, Tensor]], m2: Tensor, tolerance: float
) -> tuple[dict[str, float], str, tuple[Tensor, Tensor] | None]:
    """Maps of ``e1`` on ``x`` and ``e2`` on ``x + m2`` over all ``(x, target)`` batches.

    Returns:
        ``max_abs_diff``, ``rel_diff`` (largest over the images) and ``invariant`` (1 when
        ``rel_diff <= tolerance``), all three NaN when a map of any image has a non-finite
        value; a note on non-finite maps (or ``""``); the two maps of the first batch, on the
        CPU.
    """
    diffs, rels, shown = [], [], None
    for x, t in batches:
        a, b = e1(x, t), e2(x + m2, t)
        d, r = compare_maps(a, b)
        diffs.append(d)
        rels.append(r)
        if shown is None:
            shown = (a.cpu(), b.cpu())
    d, r = torch.cat(diffs), torch.cat(rels)
    bad = int(r.isnan().sum())
    values = {
        "max_abs_diff": math.nan if bad else float(d.max()),
        "rel_diff": math.nan if bad else float(r.max()),
        "invariant": math.nan if bad else float(float(r.max()) <= tolerance),
    }
    return values, f"non-finite maps for {bad} images" if bad else "", shown


def twin_check(
    model: nn.Module,
    twin: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    m2: Tensor,
    tolerance: float,
    accuracy: bool = True,
) -> dict[str, float]:
    """``logit_max_abs_diff`` of ``twin(x + m2)`` and ``model(x)`` over ``(x, label)`` batches
    (raises past ``tolerance``, see :func:`~xai_bench.models.shift.assert_same_logits`) and,
    with ``accuracy``, ``accuracy_original`` and ``accuracy_twin`` (single-label data)."""
    worst, correct, n = 0.0, [0, 0], 0
    with torch.no_grad():
        for x, y in batches:
            out = (model(x), twin(x + m2))
            worst = max(worst, assert_same_logits(*out, tolerance))
            if accuracy:
                correct = [c + int((o.argmax(1) == y).sum()) for c, o in zip(correct, out)]
            n += len(x)
    values = {"logit_max_abs_diff": worst}
    if accuracy:
        values.update(accuracy_original=correct[0] / n, accuracy_twin=correct[1] / n)
    return values


def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two maps over all their values (NaN if one is constant)."""
    a, b = a.double().flatten(), b.double().flatten()
    a, b = a - a.mean(), b - b.mean()
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else math.nan


def photo_target(shape: tuple[int, ...], like: Tensor) -> Tensor:
    """scikit-learn's ``china.jpg`` in gray, area-resized to ``shape[1:]``, on every channel."""
    from sklearn.datasets import load_sample_image

    photo = torch.tensor(load_sample_image("china.jpg"), dtype=torch.float64).mean(2)
    img = F.interpolate(photo[None, None], size=tuple(shape[1:]), mode="area")[0]
    return img.to(like).expand(*shape)


def crafted(model: nn.Module, x_hat: Tensor, t_hat: Tensor, image: Tensor, clip: float) -> Shift:
    """UNREL §4: the shift that makes gradient x input of ``x_hat`` show ``image``.

    ``image`` is scaled to [0, 1], then by ``clip * max |df1/dx|`` (its bright pixels use the
    whole clip range) into the target ``s_hat``; the shift is clipped to ``[-clip, clip]``.
    """
    grad = input_gradient(model, x_hat[None], t_hat[None])[0][0]
    img = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-12)
    s_hat = clip * grad.abs().max() * img
    m2, raw = crafted_shift(grad, x_hat, s_hat, clip=clip)
    info = {"x_hat": x_hat, "t_hat": t_hat, "grad": grad, "s_hat": s_hat, "raw": raw}
    return Shift("crafted", m2, info=info)


def crafted_pearson(model: nn.Module, shift: Shift) -> dict[str, float]:
    """Pearson of gradient x input with ``s_hat``: original, twin (raw / clipped shift).

    Keys ``pearson_target_original``, ``pearson_target_unclipped``, ``pearson_target``; the
    maps are kept in ``shift.info["gi"]`` for the figure.
    """
    x, t, s_hat = shift.info["x_hat"][None], shift.info["t_hat"][None], shift.info["s_hat"]
    gi = {"pearson_target_original": x * input_gradient(model, x, t)[0]}
    for metric, m2 in (
        ("pearson_target_unclipped", shift.info["raw"]),
        ("pearson_target", shift.m2),
    ):
        twin = shifted_twin(model, m2)
        gi[metric] = (x + m2) * input_gradient(twin, x + m2, t)[0]
    shift.info["gi"] = {k: v[0] for k, v in gi.items()}
    return {k: pearson(v, s_hat) for k, v in gi.items()}
