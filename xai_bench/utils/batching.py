"""Internal batching of multi-pass methods behind an explicit knob."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def chunked(fn: Callable[[Tensor], Tensor], inputs: Tensor, batch_size: int | None) -> Tensor:
    """``fn`` over ``inputs`` in chunks of ``batch_size`` along dim 0, concatenated.

    ``None`` (or a size >= len) runs a single chunk; results equal the unchunked call.
    """
    if batch_size is None or batch_size >= inputs.shape[0]:
        return fn(inputs)
    if batch_size < 1:
        raise ValueError("internal_batch_size must be >= 1")
    return torch.cat([fn(part) for part in inputs.split(int(batch_size))])
