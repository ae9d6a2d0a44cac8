"""OPPSD: one-step pixel-level perturbation saliency (Kim, Cho & Chung)

One backward pass gives the input gradient ``g(x, y)`` (a C-vector per pixel, in the
normalised input space). Its outer products ``g g^T``, summed over a ``k x k`` window with unit
weights and zero padding, form a structure tensor ``J(x, y)`` (C x C) per pixel, as in corner
detection. A criterion turns ``J`` into one non-negative score per pixel:

* ``noble``: ``det(J) / (trace(J) + eps * s)`` (Noble's corner measure);
* ``frobenius``: ``||J||_F``;
* ``min_eigenvalue``: the exact smallest eigenvalue of ``J`` (closed form for C <= 3).

Scale: the criteria are computed on ``J / s``, with ``s`` the mean of ``trace(J)`` over the
image's pixels (its own gradient scale), all in float64. So the map is the paper's up to one
positive factor per image (``s^-1`` for Frobenius and the eigenvalue, ``s^(1-C)`` for Noble), it
does not change when the logits are multiplied by any constant, and it cannot underflow when
cast to float32 (with the paper's fixed ``eps = 1e-6``, gradients of ~2e-10, as after
cascading randomisation, give ``det(J) / (trace(J) + eps) ~ 1e-47``: exactly 0 in float32).
``eps`` is therefore relative: ``1e-6`` of the image's mean trace. A determinant below ``DET_RTOL *
trace(J)^C`` is rounding noise of a rank-deficient ``J`` and is set to 0 (a 1x1 window gives
``J = g g^T``, of rank one, whose Noble score is 0 by definition).

Window: ``k = 7`` at 224 px in the paper. ``window="auto"`` (the default) scales it with the
input as the benchmarks' windows do (:mod:`xai_bench.utils.resolution`): ``7 * min(H, W) /
224`` rounded, made odd (an even value is increased by one), at least 3 (:func:`auto_window`).

The ablations of the paper's §4.4 are ``component="patch"`` (the signed gradient summed over the
window and the channels, no outer product) and ``window=1`` (the corner criterion alone).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xai_bench.methods.base import Explainer, input_gradient
from xai_bench.models.meta import ModelMeta
from xai_bench.utils.resolution import is_auto, scale_px

CRITERIA = ("noble", "frobenius", "min_eigenvalue")
PAPER_WINDOW, PAPER_SIZE = 7, 224  # the paper's 7x7 window on 224 px inputs
DET_RTOL = 1e-12  # det(J) <= DET_RTOL * trace(J)^C: rounding noise (cofactor error ~1e-15)


def auto_window(size: int) -> int:
    """The paper's 7 px window at 224 px scaled to inputs of side ``size``: ``7 * size / 224``
    rounded, odd (even values go up by one), at least 3 (32 px: 3; 64 px: 3; 128 px: 5;
    224 px: 7; 448 px: 15)."""
    return scale_px(PAPER_WINDOW, size, minimum=3, odd=True, reference=PAPER_SIZE)


def gradient_scale(J: Tensor) -> Tensor:  # [B, C, C, H, W] -> [B]
    """Each image's mean ``trace(J)`` over its pixels (0 for a zero gradient)."""
    return J.diagonal(dim1=1, dim2=2).sum(-1).mean(dim=(1, 2))


def window_sum(x: Tensor, k: int) -> Tensor:
    """Sum over a ``k x k`` window centred on each pixel, zero padded: ``[B, M, H, W]``."""
    if k == 1:
        return x
    return F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=True) * (k * k)


def structure_tensor(grad: Tensor, k: int) -> Tensor:
    """Windowed outer products ``[B, C, H, W] -> [B, C, C, H, W]`` (in ``grad``'s dtype)."""
    b, c, h, w = grad.shape
    iu, ju = torch.triu_indices(c, c, device=grad.device)
    products = grad[:, iu] * grad[:, ju]  # [B, C(C+1)/2, H, W] unique entries
    summed = window_sum(products, k)
    J = grad.new_zeros(b, c, c, h, w)
    J[:, iu, ju] = summed
    J[:, ju, iu] = summed
    return J


def min_eigenvalue(J: Tensor) -> Tensor:
    """Smallest eigenvalue of symmetric ``[B, C, C, H, W]`` matrices -> ``[B, H, W]``.

    Closed forms for C = 1, 2, 3 (trigonometric solution of the characteristic cubic);
    ``torch.linalg.eigvalsh`` otherwise.
    """
    c = J.shape[1]
    if c == 1:
        return J[:, 0, 0]
    if c == 2:
        a, b, d = J[:, 0, 0], J[:, 0, 1], J[:, 1, 1]
        return (a + d) / 2 - torch.sqrt(((a - d) / 2) ** 2 + b * b)
    if c == 3:
        a11, a22, a33 = J[:, 0, 0], J[:, 1, 1], J[:, 2, 2]
        a12, a13, a23 = J[:, 0, 1], J[:, 0, 2], J[:, 1, 2]
        q = (a11 + a22 + a33) / 3
        p1 = a12 * a12 + a13 * a13 + a23 * a23
        p2 = (a11 - q) ** 2 + (a22 - q) ** 2 + (a33 - q) ** 2 + 2 * p1
        p = torch.sqrt(p2 / 6)
        safe = torch.where(p > 0, p, torch.ones_like(p))
        b11, b22, b33 = (a11 - q) / safe, (a22 - q) / safe, (a33 - q) / safe
        b12, b13, b23 = a12 / safe, a13 / safe, a23 / safe
        det_b = b11 * (b22 * b33 - b23 * b23) - b12 * (b12 * b33 - b23 * b13)
        det_b = det_b + b13 * (b12 * b23 - b22 * b13)
        phi = torch.acos((det_b / 2).clamp(-1, 1)) / 3
        smallest = q + 2 * p * torch.cos(phi + 2 * math.pi / 3)
        return torch.where(p > 0, smallest, q)
    return torch.linalg.eigvalsh(J.permute(0, 3, 4, 1, 2))[..., 0]


def criterion_map(J: Tensor, criterion: str, eps: float = 1e-6) -> Tensor:
    """Apply a corner criterion to ``[B, C, C, H, W]`` structure tensors -> ``[B, H, W]``.

    ``eps`` is added to Noble's denominator as given: :class:`OPPSD` passes tensors scaled to
    unit mean trace, which makes it relative. A determinant at most ``DET_RTOL * trace^C``
    counts as 0 (rounding noise of a rank-deficient ``J``).
    """
    if criterion == "noble":
        trace = J.diagonal(dim1=1, dim2=2).sum(-1)
        det = torch.linalg.det(J.permute(0, 3, 4, 1, 2)) if J.shape[1] > 3 else _small_det(J)
        det = torch.where(det <= DET_RTOL * trace.pow(J.shape[1]), torch.zeros_like(det), det)
        den = trace + eps
        return torch.where(den > 0, det / torch.where(den > 0, den, 1.0), 0.0)
    if criterion == "frobenius":
        return J.pow(2).sum((1, 2)).sqrt()
    if criterion == "min_eigenvalue":
        return min_eigenvalue(J).clamp_min(0)
    raise ValueError(f"unknown OPPSD criterion '{criterion}' (one of {CRITERIA})")


def _small_det(J: Tensor) -> Tensor:
    """Determinant of ``[B, C, C, H, W]`` for C <= 3 by cofactors (vectorised)."""
    c = J.shape[1]
    if c == 1:
        return J[:, 0, 0]
    if c == 2:
        return J[:, 0, 0] * J[:, 1, 1] - J[:, 0, 1] * J[:, 1, 0]
    return (
        J[:, 0, 0] * (J[:, 1, 1] * J[:, 2, 2] - J[:, 1, 2] * J[:, 2, 1])
        - J[:, 0, 1] * (J[:, 1, 0] * J[:, 2, 2] - J[:, 1, 2] * J[:, 2, 0])
        + J[:, 0, 2] * (J[:, 1, 0] * J[:, 2, 1] - J[:, 1, 1] * J[:, 2, 0])
    )


class OPPSD(Explainer):
    """OPPSD (Kim, Cho & Chung): corner criteria of the input gradient's structure tensor.

    Args:
        model: the classifier.
        meta: its facts (unused beyond applicability: OPPSD needs only input gradients).
        criterion: ``noble``, ``frobenius`` or ``min_eigenvalue``.
        window: side ``k`` of the summation window, an odd number (7 at 224 px in the paper;
            1 = corner-only ablation), or ``"auto"``: :func:`auto_window` of the input size.
        eps: stabiliser of Noble's denominator, relative to the image's mean ``trace(J)``.
        component: ``full`` (the method) or ``patch`` (ablation: signed gradient summed over the
            window and channels, without outer products; rank by its absolute value).
    """

    name = "oppsd"

    def __init__(
        self,
        model: nn.Module,
        meta: ModelMeta | None = None,
        criterion: str = "noble",
        window: int | str | None = "auto",
        eps: float = 1e-6,
        component: str = "full",
    ) -> None:
        super().__init__(model, meta)
        if criterion not in CRITERIA:
            raise ValueError(f"unknown OPPSD criterion '{criterion}' (one of {CRITERIA})")
        if component not in ("full", "patch"):
            raise ValueError(f"unknown OPPSD component '{component}' (full or patch)")
        if is_auto(window):
            window = "auto"
        elif not isinstance(window, int) or window < 1 or window % 2 == 0:
            raise ValueError(f"window must be a positive odd number or 'auto', got {window!r}")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.criterion, self.window, self.eps, self.component = criterion, window, eps, component

    def window_size(self, x: Tensor) -> int:
        """The window side ``k`` for inputs ``x`` (resolves ``"auto"``)."""
        return auto_window(min(x.shape[-2:])) if self.window == "auto" else int(self.window)

    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:  # [B,C,H,W] -> [B,1,H,W]
        grad = input_gradient(self.model, x, target)[0].double()
        k = self.window_size(x)
        if self.component == "patch":
            return window_sum(grad.sum(1, keepdim=True), k)
        J = structure_tensor(grad, k)
        scale = gradient_scale(J)  # [B]; 0 only for an all-zero gradient (then J = 0)
        J = J / torch.where(scale > 0, scale, torch.ones_like(scale)).view(-1, 1, 1, 1, 1)
        return criterion_map(J, self.criterion, self.eps).unsqueeze(1)
