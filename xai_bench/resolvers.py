"""OmegaConf resolvers used by the configs (registered by importing :mod:`xai_bench.cli`)."""

from __future__ import annotations

import math

from omegaconf import OmegaConf

from xai_bench.utils.hashing import stable_hash

MAX_DIRNAME = 100


def dirname(overrides: str) -> str:
    """A safe folder name for Hydra's ``override_dirname`` (``base`` when there is none)."""
    if not overrides:
        return "base"
    name = overrides.replace("/", "%").replace(" ", "")
    if len(name) > MAX_DIRNAME:
        name = f"{name[: MAX_DIRNAME - 11]}-{stable_hash(name)}"
    return name


def prod(*values: int) -> int:
    """Product of integers (e.g. C*H*W for an MLP's input size)."""
    return math.prod(int(v) for v in values)


def register_resolvers() -> None:
    """Register ``xb_dirname`` and ``eval_prod`` (idempotent)."""
    OmegaConf.register_new_resolver("xb_dirname", dirname, replace=True)
    OmegaConf.register_new_resolver("eval_prod", prod, replace=True)
