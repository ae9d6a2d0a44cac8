"""OmegaConf resolvers used by the configs (registered by importing :mod:`xai_bench.cli`)."""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

# xai_bench.methods.spec and xai_bench.utils.hashing import torch: they are imported where they
# are needed, so that the CLI reaches its early checks without importing torch
MAX_DIRNAME = 200  # file systems allow 255 bytes per folder name


def dirname(overrides: str) -> str:
    """A safe folder name for Hydra's ``override_dirname`` (``base`` when there is none); cut
    and suffixed by a hash only when longer than :data:`MAX_DIRNAME`."""
    if not overrides:
        return "base"
    name = overrides.replace("/", "%").replace(" ", "")
    if len(name.encode()) > MAX_DIRNAME:
        from xai_bench.utils.hashing import stable_hash

        name = f"{name[: MAX_DIRNAME - 11]}-{stable_hash(name)}"
    return name


def methods_segment(method: str, benchmark: Any) -> str | None:
    """The run directory's method folder: the labels of ``benchmark.methods`` joined by ``+``,
    the run's ``method`` when the list is empty, ``None`` for tasks without methods."""
    if not isinstance(benchmark, DictConfig) or "methods" not in benchmark:
        return None
    entries = OmegaConf.to_container(benchmark.methods, resolve=True) or []
    if not entries:
        return method
    labels = []
    for entry in entries:  # type: ignore[union-attr]
        if isinstance(entry, str):
            labels.append(entry)
        elif isinstance(entry, dict) and entry.get("label") is not None:
            labels.append(str(entry["label"]))
        elif isinstance(entry, dict):
            from xai_bench.methods.spec import default_label

            params = {k: v for k, v in entry.items() if k not in ("name", "label", "params")}
            labels.append(
                default_label(str(entry.get("name")), {**entry.get("params", {}), **params})
            )
    return dirname("+".join(labels))


def run_subdir(
    experiment: str, benchmark: str, model: str, dataset: str, method: str, node: Any,
    overrides: str,
) -> str:  # fmt: skip
    """``<experiment>/<benchmark>/<model>/<dataset>[/<methods>]/<overrides>`` (deterministic)."""
    parts = [experiment, benchmark, model, dataset, methods_segment(method, node)]
    return "/".join(str(p) for p in parts if p is not None) + "/" + dirname(overrides)


def prod(*values: int) -> int:
    """Product of integers (e.g. C*H*W for an MLP's input size)."""
    return math.prod(int(v) for v in values)


def register_resolvers() -> None:
    """Register ``xb_dirname``, ``xb_run_subdir`` and ``eval_prod`` (idempotent)."""
    OmegaConf.register_new_resolver("xb_dirname", dirname, replace=True)
    OmegaConf.register_new_resolver("xb_run_subdir", run_subdir, replace=True)
    OmegaConf.register_new_resolver("eval_prod", prod, replace=True)
