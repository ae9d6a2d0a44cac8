"""PruneGrad (Khakzar et al., 2019): the input gradient of a per-input pruned network.

The pruning code here is shared with :mod:`xai_bench.methods.prunepgd`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from xai_bench.methods.base import Explainer, MethodNotApplicableError, target_logits
from xai_bench.methods.hooks import relu_forward
from xai_bench.models.meta import ModelMeta


def row_percentile(v: Tensor, q: float) -> Tensor:  # [B, N] -> [B]
    """Percentile ``q`` in [0, 100] of each row, linear interpolation (``numpy.percentile``).

    One ``kthvalue`` for the lower order statistic; the next one is the lower one again when it
    is repeated, else the smallest value above it (two cheap passes instead of a second sort).
    """
    n = v.shape[1]
    pos = q / 100.0 * (n - 1)
    lo = int(pos)
    frac = pos - lo
    low = torch.kthvalue(v, lo + 1, dim=1).values
    if frac == 0.0 or lo + 1 >= n:
        return low
    repeated = (v <= low[:, None]).sum(1) >= lo + 2
    above = torch.where(v > low[:, None], v, torch.full_like(v, float("inf"))).amin(1)
    high = torch.where(repeated, low, above)
    return low + (high - low) * frac


def neuron_scores(model: nn.Module, x: Tensor, target: Tensor) -> list[Tensor]:
    """``|a * d logit_c / d a|`` for the output ``a`` of every ``nn.ReLU`` call, in call order.

    One forward and one backward pass; a ReLU module called several times (torchvision's
    ``BasicBlock.relu``) gives one entry per call.
    """
    acts: list[Tensor] = []

    def record(k: int, a: Tensor) -> Tensor:
        acts.append(a)
        return a.clone()  # later in-place ops cannot touch the recorded output

    x = x.detach().requires_grad_(True)  # keeps the graph alive when no parameter needs grad
    with torch.enable_grad(), relu_forward(model, record):
        logit = target_logits(model(x), target)
    if not acts:
        raise MethodNotApplicableError("PruneGrad found no nn.ReLU call in the forward pass")
    grads = torch.autograd.grad(logit.sum(), acts)
    return [(a * g).abs().detach() for a, g in zip(acts, grads)]


def prune_masks(scores: list[Tensor], percentile: float) -> list[Tensor]:
    """Keep-masks (1 = kept) per ReLU call: one global threshold per sample over all calls.

    The threshold is the ``percentile`` of all the sample's scores concatenated; neurons with
    score ``<=`` threshold are pruned (as ``PathwayGrad:src/Pruner.py``).
    """
    flat = torch.cat([s.flatten(1) for s in scores], dim=1)  # [B, N]
    threshold = row_percentile(flat, percentile)
    return [(s > threshold.view(-1, *[1] * (s.dim() - 1))).to(s.dtype) for s in scores]


def pruned_forward(model: nn.Module, x: Tensor, masks: list[Tensor]) -> Tensor:
    """Logits ``[B, K]`` of the network whose k-th ReLU call output is multiplied by masks[k]."""

    def apply(k: int, a: Tensor) -> Tensor:
        if k >= len(masks) or masks[k].shape != a.shape:
            raise RuntimeError("the pruned forward pass calls its ReLUs differently")
        return a * masks[k]

    with relu_forward(model, apply):
        return model(x)


class PruneGrad(Explainer):
    """PruneGrad (Khakzar et al. 2019): gradient of the target logit in the pruned network.

    Neurons are the outputs of every ``nn.ReLU`` call. Each gets the first-order Taylor score
    ``|a * d logit_c / d a|`` (one forward + backward); per sample, one global percentile over
    all layers' scores is the threshold, and neurons at or below it are masked to 0 (the mask
    multiplies the ReLU output). The attribution is ``d f_p,c / dx`` of the pruned network
    (one more forward + backward), ``[B, C, H, W]``.

    Pruning level: a fixed ``percentile`` (the authors' code uses 70 / 85), or, with
    ``calibrate=True`` (the paper), :meth:`fit` on held-out images (``fit_split = "val"``)
    bisects the percentile so that the mean relative change ``|p_pruned - p| / p`` of the
    predicted class's softmax probability equals ``target_change`` (15%).

    Args:
        model: a ReLU network whose non-linearities are ``nn.ReLU`` modules.
        meta: model facts; ``relu_only`` must hold.
        percentile: pruning percentile in [0, 100] (fixed mode, or the start before calibration).
        calibrate: learn the percentile with :meth:`fit`; attributing before raises.
        target_change: mean relative output change that calibration aims at.
        max_calibration_images: use at most this many held-out images.
        calibration_steps: bisection steps (the percentile is found to ``100 / 2**steps``).
    """

    name = "prunegrad"
    needs_relu = True
    fit_split = "val"

    def __init__(
        self,
        model: nn.Module,
        meta: ModelMeta | None = None,
        percentile: float = 70.0,
        calibrate: bool = False,
        target_change: float = 0.15,
        max_calibration_images: int = 1000,
        calibration_steps: int = 12,
    ) -> None:
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {percentile}")
        if target_change <= 0 or max_calibration_images < 1 or calibration_steps < 1:
            raise ValueError(
                "need target_change > 0, max_calibration_images >= 1, calibration_steps >= 1"
            )
        super().__init__(model, meta)
        self.percentile = float(percentile)
        self.calibrate, self.needs_data = bool(calibrate), bool(calibrate)
        self.target_change = float(target_change)
        self.max_calibration_images = int(max_calibration_images)
        self.calibration_steps = int(calibration_steps)
        self.fitted = False
        self.calibration_trace: list[tuple[float, float]] = []  # (percentile, mean change)

    def check_applicable(self) -> None:
        """Also refuse models without any ``nn.ReLU`` module (the neurons are ReLU outputs)."""
        super().check_applicable()
        if not any(isinstance(m, nn.ReLU) for m in self.model.modules()):
            raise MethodNotApplicableError(
                f"{self.name} prunes the outputs of nn.ReLU modules; "
                f"{type(self.model).__name__} has none"
            )

    def masks(self, x: Tensor, target: Tensor, percentile: float | None = None) -> list[Tensor]:
        """Keep-masks of every ReLU call for inputs ``x`` and targets (default percentile)."""
        q = self.percentile if percentile is None else percentile
        return prune_masks(neuron_scores(self.model, x, target), q)

    def _check_fitted(self) -> None:
        if self.calibrate and not self.fitted:
            raise RuntimeError(
                f"{self.name} with calibrate=True needs fit(batches) on held-out images before "
                "attributing (or use calibrate=False with a fixed percentile)"
            )

    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:  # [B,C,H,W] -> [B,C,H,W]
        self._check_fitted()
        masks = self.masks(x, target)
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logit = target_logits(pruned_forward(self.model, x, masks), target)
            (grad,) = torch.autograd.grad(logit.sum(), x)
        return grad

    def output_change(self, x: Tensor, percentile: float) -> Tensor:  # [B,C,H,W] -> [B]
        """``|p_pruned - p| / p`` of the predicted class's softmax probability per image."""
        with torch.no_grad():
            probs = self.model(x).softmax(dim=1)
        pred = probs.argmax(dim=1)
        masks = self.masks(x, pred, percentile)
        with torch.no_grad():
            pruned = pruned_forward(self.model, x, masks).softmax(dim=1)
        p = target_logits(probs, pred)
        return (target_logits(pruned, pred) - p).abs() / p

    def mean_output_change(self, images: list[Tensor], percentile: float) -> float:
        """Mean of :meth:`output_change` over the held-out batches."""
        changes = torch.cat([self.output_change(x, percentile) for x in images])
        return float(changes.mean())

    def fit(self, batches: Iterable[tuple[Tensor, Tensor]]) -> PruneGrad:
        """Bisect the global percentile so that the mean output change is ``target_change``.

        Labels are unused (the predicted class is explained). The percentile with the change
        closest to the target among those evaluated is kept; all are in ``calibration_trace``.
        """
        if not self.calibrate:
            return self
        images, count = [], 0
        for x, _ in batches:
            x = x[: self.max_calibration_images - count].detach()
            images.append(x)
            count += x.shape[0]
            if count >= self.max_calibration_images:
                break
        if count == 0:
            raise ValueError(f"{self.name}.fit got no held-out image")
        lo, hi, trace = 0.0, 100.0, []
        for _ in range(self.calibration_steps):
            mid = (lo + hi) / 2
            change = self.mean_output_change(images, mid)
            trace.append((mid, change))
            lo, hi = (mid, hi) if change < self.target_change else (lo, mid)
        self.percentile = min(trace, key=lambda t: abs(t[1] - self.target_change))[0]
        self.calibration_trace, self.fitted = trace, True
        return self
