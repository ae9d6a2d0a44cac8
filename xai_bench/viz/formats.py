"""The file formats figures are written in (``figure_formats`` of the run config).

Kept apart from the drawing code so that the run loop sets them without importing matplotlib:
``with figure_formats(("png", "pdf")): benchmark.run(ctx)`` makes every figure function called
without its own ``formats`` write a PNG and a PDF beside each other.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from xai_bench.utils.errors import UserInputError

FORMATS = ("png", "pdf", "svg")
_CURRENT: ContextVar[tuple[str, ...]] = ContextVar("figure_formats", default=("png",))


def check_formats(formats: Sequence[str] | str | None) -> tuple[str, ...]:
    """``formats`` as a tuple of known lower-case formats (``None`` or empty: PNG only).

    Raises:
        UserInputError: for a format other than png, pdf or svg.
    """
    if formats is None:
        return ("png",)
    if isinstance(formats, str):
        formats = [formats]
    out = tuple(dict.fromkeys(str(f).lower().lstrip(".") for f in formats))
    bad = [f for f in out if f not in FORMATS]
    if bad:
        raise UserInputError(f"figure_formats must be among {', '.join(FORMATS)}, got {bad}")
    return out or ("png",)


def current_formats() -> tuple[str, ...]:
    """The formats of the enclosing :func:`figure_formats` block (PNG outside one)."""
    return _CURRENT.get()


@contextmanager
def figure_formats(formats: Sequence[str] | str | None) -> Iterator[tuple[str, ...]]:
    """Within the block, figure functions called without ``formats`` write ``formats``."""
    token = _CURRENT.set(check_formats(formats))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)
