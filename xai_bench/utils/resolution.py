"""Pixel sizes defined at the papers' 224 px inputs, scaled to the evaluated input size.

The papers fix windows and kernels in pixels of 224 px inputs: the pointing game's 15 px
tolerance (TorchRay), 16 px HOG cells (POSAGG, PRUNE), SSIM's Gaussian window of sigma 1.5
(scikit-image), the 51 px / sigma 50 blur (Group-CAM) and the 11 px / sigma 5 blur (RISE). On a
32 px input the same pixel counts cover 7 times more of the image, and measure something else.
A benchmark option set to ``auto`` (the default) therefore takes the paper's value times
``side / 224``, where ``side`` is the shorter side of the model's input; a number is used as
given, in pixels.
"""

from __future__ import annotations

from typing import Any

REFERENCE_SIDE = 224
AUTO = "auto"

# The papers' values at 224 px inputs.
HOG_CELL = 16  # POSAGG, PRUNE: scikit-image hog(pixels_per_cell=(16, 16))
SSIM_SIGMA = 1.5  # scikit-image structural_similarity(gaussian_weights=True)
POINTING_TOLERANCE = 15  # TorchRay's pointing game


def is_auto(value: Any) -> bool:
    """Whether an option asks for the scaled paper value (``auto`` or ``None``)."""
    return value is None or (isinstance(value, str) and value.lower() == AUTO)


def scale_px(
    paper: float, side: int, minimum: int = 1, odd: bool = False, reference: int = REFERENCE_SIDE
) -> int:
    """``paper`` px at ``reference`` px inputs, for inputs of ``side`` px: rounded, at least
    ``minimum``, and odd if ``odd`` (a kernel with a centre)."""
    value = max(int(minimum), round(float(paper) * int(side) / int(reference)))
    if odd and value % 2 == 0:
        value += 1
    return value


def scale_sigma(
    paper: float, side: int, minimum: float = 0.0, reference: int = REFERENCE_SIDE
) -> float:
    """A Gaussian sigma of ``paper`` px at ``reference`` px inputs, for ``side`` px inputs."""
    return max(float(minimum), float(paper) * int(side) / int(reference))


def px_option(value: Any, name: str, allow_zero: bool = False) -> int | str:
    """Validate an ``auto``-or-pixels option: ``auto`` or an integer >= 1 (>= 0)."""
    if is_auto(value):
        return AUTO
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ValueError(f"{name} must be 'auto' or an integer >= {low} (px), got {value!r}")
    if int(value) < low:
        raise ValueError(f"{name} must be 'auto' or an integer >= {low} (px), got {value!r}")
    return int(value)


def float_option(value: Any, name: str) -> float | str:
    """Validate an ``auto``-or-pixels option that may be fractional (a sigma, a radius):
    ``auto`` or a number > 0."""
    if is_auto(value):
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value) > 0:
        raise ValueError(f"{name} must be 'auto' or a number > 0 (px), got {value!r}")
    return float(value)


def resolve_blur(
    kernel: int | str, sigma: float | str, paper: tuple[int, float], side: int
) -> tuple[int, float]:
    """A Gaussian blur's ``(kernel size, sigma)``: each given in pixels, or ``auto``: the
    paper's ``(kernel, sigma)`` at 224 px scaled to ``side`` (an odd kernel of at least 3 px,
    a sigma of at least 0.5 px)."""
    k = resolve_px(kernel, paper[0], side, minimum=3, odd=True)
    return k, resolve_float(sigma, paper[1], side, minimum=0.5)


def resolve_px(
    value: int | str, paper: float, side: int, minimum: int = 1, odd: bool = False
) -> int:
    """``value`` in pixels, or the paper's value scaled to ``side`` when it is ``auto``."""
    return scale_px(paper, side, minimum, odd) if is_auto(value) else int(value)


def resolve_float(value: float | str, paper: float, side: int, minimum: float = 0.0) -> float:
    """``value`` in pixels, or the paper's value scaled to ``side`` when it is ``auto``."""
    return scale_sigma(paper, side, minimum) if is_auto(value) else float(value)
