"""Saved run configs read back as plain containers, fast (``make reproduce``'s cached check).

``OmegaConf.load`` followed by ``to_container`` builds a node tree first, about 0.3 s for a run
config; the same values come from libyaml's parser with OmegaConf's scalar rules (``1e-3`` is a
float, timestamps stay strings) in a few milliseconds.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from omegaconf._utils import get_yaml_loader

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """libyaml's safe loader with OmegaConf's implicit scalar resolvers."""


_Loader.yaml_implicit_resolvers = {
    key: list(value) for key, value in get_yaml_loader().yaml_implicit_resolvers.items()
}


def load_plain_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file as ``OmegaConf.to_container(OmegaConf.load(path))`` gives
    it (interpolations unresolved)."""
    with Path(path).open(encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=_Loader)
    return {} if data is None else data


def as_saved(value: Any) -> Any:
    """``value`` as it reads back after ``OmegaConf.create`` and a YAML dump: tuples become
    lists, enums their names, paths strings; other scalars stay."""
    if isinstance(value, dict):
        return {(k.name if isinstance(k, Enum) else k): as_saved(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_saved(v) for v in value]
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, Path):
        return str(value)
    return value
