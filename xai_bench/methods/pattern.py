"""PatternNet and PatternAttribution (Kindermans et al., 2018) with the two-component estimator.

For every linear layer ``y = w^T x + b`` (each output unit of an ``nn.Linear``, each filter of an
``nn.Conv2d`` over all image patches) the pattern is learnt from data::

    a+ = cov+[x, y] / (w^T cov+[x, y]),   cov+[x, y] = E+[x y] - E+[x] E+[y]

where ``E+`` averages over the samples (and positions) at which the unit is active, ``y > 0``
(the pre-activation, bias included). ``E+[y]`` also in the second term, as in the paper and
iNNvestigate: this makes ``cov+`` and the patterns invariant to a constant input shift that the
bias compensates (UNREL §2). The statistics are sums in float64, accumulated in one pass.

Attribution is the gradient of the target logit in which each layer's backward uses the pattern
in place of the weight (PatternNet: ``a+``, the back-projected signal; PatternAttribution:
``w * a+``, the deep-Taylor root point ``x - a+ y``), ReLUs and pooling gating as in the forward
pass; the backward pass is seeded with the logit itself, so that for one linear layer PatternNet
returns the signal ``a+ y`` and PatternAttribution ``w * a+ y``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xai_bench.methods.base import Explainer, MethodNotApplicableError, target_logits
from xai_bench.models.meta import ModelMeta

PATTERN_LAYERS = (nn.Linear, nn.Conv2d)
# Weight-free modules of plain MLPs / CNNs that the gradient passes through unchanged.
PLAIN_LAYERS = (
    nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten,
    nn.Dropout, nn.Identity,
)  # fmt: skip
STATS = ("count", "sum_x", "sum_y", "sum_xy")


def _apply(module: nn.Module, x: Tensor, weight: Tensor) -> Tensor:
    """The layer's map with another weight and no bias."""
    if isinstance(module, nn.Linear):
        return F.linear(x, weight)
    return module._conv_forward(x, weight, None)  # type: ignore[operator]


def _unit_sum(t: Tensor, module: nn.Module) -> Tensor:
    """Sum an output ``[N, K]`` or ``[B, K, H, W]`` over everything but the unit axis: ``[K]``."""
    if isinstance(module, nn.Linear):
        return t.reshape(-1, t.shape[-1]).sum(0)
    return t.sum(dim=(0, *range(2, t.dim())))


def _input_correlation(module: nn.Module, x: Tensor, grads: tuple[Tensor, ...]) -> list[Tensor]:
    """``sum_n g_n[k] * x_n`` per unit ``k``, shaped like the weight, for each ``g`` in ``grads``.

    ``x_n`` is the input the unit sees (a patch for a conv): this is the weight gradient of the
    layer for the output gradient ``g``, computed by autograd (no unfolded patches).
    """
    w = torch.zeros_like(module.weight, dtype=x.dtype, device=x.device).requires_grad_(True)
    with torch.enable_grad():
        out = _apply(module, x, w)
        return [
            torch.autograd.grad(out, w, grad_outputs=g, retain_graph=i + 1 < len(grads))[0]
            for i, g in enumerate(grads)
        ]


def _accumulate(stats: dict[str, Tensor], module: nn.Module, x: Tensor, z: Tensor) -> None:
    """Add one batch to a layer's sums over active units (``z > 0``), in float64."""
    x, z = x.detach().double(), z.detach().double()
    mask = (z > 0).double()
    sum_x, sum_xy = _input_correlation(module, x, (mask, z * mask))
    batch = {
        "count": _unit_sum(mask, module),
        "sum_x": sum_x,
        "sum_y": _unit_sum(z * mask, module),
        "sum_xy": sum_xy,
    }
    for key, value in batch.items():
        stats[key] = stats[key] + value if key in stats else value


def pattern_from_stats(stats: dict[str, Tensor], weight: Tensor) -> Tensor:
    """``a+ = cov+[x, y] / (w^T cov+[x, y])`` per unit, shaped like ``weight`` (float64).

    Units never active, or with ``w^T cov+ = 0``, get a zero pattern.
    """
    shape = (-1,) + (1,) * (weight.dim() - 1)
    n = stats["count"].clamp_min(1).view(shape)
    cov = stats["sum_xy"] / n - (stats["sum_x"] / n) * (stats["sum_y"].view(shape) / n)
    den = (weight.double() * cov).flatten(1).sum(1).view(shape)
    ok = (den != 0) & (stats["count"].view(shape) > 0)
    return torch.where(ok, cov / torch.where(ok, den, 1.0), 0.0)


@contextmanager
def _record_stats(model: nn.Module, stats: dict[str, dict[str, Tensor]]) -> Iterator[None]:
    handles = []
    try:
        for name, m in model.named_modules():
            if name in stats:

                def hook(mod: nn.Module, inputs: tuple, out: Tensor, name: str = name) -> None:
                    _accumulate(stats[name], mod, inputs[0], out)

                handles.append(m.register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def _backward_weights(model: nn.Module, weights: dict[str, Tensor]) -> Iterator[None]:
    """Each listed layer keeps its output but back-propagates through ``weights[name]``."""
    handles = []
    try:
        for name, m in model.named_modules():
            if name in weights:

                def hook(mod: nn.Module, inputs: tuple, out: Tensor, name: str = name) -> Tensor:
                    x = inputs[0]
                    alt = _apply(mod, x, weights[name].to(device=x.device, dtype=x.dtype))
                    return out.detach() + (alt - alt.detach())

                handles.append(m.register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()


class PatternNet(Explainer):
    """PatternNet (Kindermans et al., 2018): the target's signal back-projected through patterns.

    Needs data: :meth:`fit` learns the two-component patterns ``a+`` of every ``nn.Linear`` and
    ``nn.Conv2d`` from training batches (``fit_split = "train"``); :meth:`attribute` then
    returns the gradient of the target logit, seeded by the logit, with each weight replaced by
    its pattern in the backward pass. Plain ReLU MLPs / CNNs only (Linear, Conv2d, ReLU,
    pooling, flatten, dropout); BatchNorm, residual nets and ViTs are refused at construction.

    Args:
        model: a plain ReLU MLP or CNN (in eval mode for fitting and attributing).
        meta: model facts; ``relu_only`` must hold.
        max_batches: use at most this many batches in :meth:`fit` (``None``: all).
    """

    name = "pattern_net"
    needs_relu = True
    needs_data = True
    fit_split = "train"

    def __init__(
        self, model: nn.Module, meta: ModelMeta | None = None, max_batches: int | None = None
    ) -> None:
        if max_batches is not None and max_batches < 1:
            raise ValueError(f"max_batches must be >= 1 or None, got {max_batches}")
        self.max_batches = max_batches
        self.patterns: dict[str, Tensor] | None = None  # a+ per layer name, shaped like weights
        self._backward: dict[str, Tensor] = {}  # what each layer's backward pass uses
        super().__init__(model, meta)

    def check_applicable(self) -> None:
        """Refuse models with modules other than linear/conv layers, ReLUs and pooling."""
        super().check_applicable()
        model_name = self.meta.name if self.meta is not None else type(self.model).__name__
        containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
        leaves = [
            m
            for m in self.model.modules()
            if not list(m.children()) and not isinstance(m, containers)
        ]
        other = sorted(
            {type(m).__name__ for m in leaves if not isinstance(m, PATTERN_LAYERS + PLAIN_LAYERS)}
        )
        if other:
            raise MethodNotApplicableError(
                f"{self.name} learns patterns for plain ReLU MLPs / CNNs (Linear, Conv2d, ReLU, "
                f"pooling); {model_name} has {other} (BatchNorm / residual / attention nets are "
                "not supported)"
            )
        if not any(isinstance(m, PATTERN_LAYERS) for m in leaves):
            raise MethodNotApplicableError(f"{self.name}: {model_name} has no Linear/Conv2d layer")

    def layer_names(self) -> list[str]:
        """Dotted names of the layers that get a pattern."""
        return [n for n, m in self.model.named_modules() if isinstance(m, PATTERN_LAYERS)]

    def fit(self, batches: Iterable[tuple[Tensor, Tensor]]) -> PatternNet:
        """Learn the patterns from ``(x, label)`` batches (labels unused) in one pass."""
        stats: dict[str, dict[str, Tensor]] = {name: {} for name in self.layer_names()}
        with _record_stats(self.model, stats), torch.no_grad():
            for x, _ in islice(batches, self.max_batches):
                self.model(x)
        if any(not s for s in stats.values()):
            raise ValueError(f"{self.name}.fit got no batch (or a layer was never called)")
        modules = dict(self.model.named_modules())
        weights = {name: modules[name].weight.detach().double() for name in stats}
        self.patterns = {name: pattern_from_stats(s, weights[name]) for name, s in stats.items()}
        self._backward = {n: self.backward_weight(weights[n], a) for n, a in self.patterns.items()}
        return self

    def backward_weight(self, weight: Tensor, pattern: Tensor) -> Tensor:
        """The matrix a layer's backward pass uses: the pattern itself for PatternNet."""
        return pattern

    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:  # [B,C,H,W] -> [B,C,H,W]
        if self.patterns is None:
            raise RuntimeError(f"{self.name} has no patterns yet: call fit(batches) first")
        x = x.detach().requires_grad_(True)
        with torch.enable_grad(), _backward_weights(self.model, self._backward):
            logit = target_logits(self.model(x), target)
            (grad,) = torch.autograd.grad(logit, x, grad_outputs=logit.detach())
        return grad


class PatternAttribution(PatternNet):
    """PatternAttribution (Kindermans et al., 2018): backward through ``w * a+``.

    Deep Taylor decomposition with the learnt root point ``x0 = x - a+ y``; for one linear layer
    the attribution is ``w * a+ * y``. Same fitting and applicability as :class:`PatternNet`.
    """

    name = "pattern_attribution"

    def backward_weight(self, weight: Tensor, pattern: Tensor) -> Tensor:
        return weight * pattern
