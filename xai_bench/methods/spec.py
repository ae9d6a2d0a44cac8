"""Method specs: one explainer configuration with its label and identity, config-free.

A :class:`MethodSpec` is what a benchmark compares: a ``label`` (shown in tables and figures),
the method config it came from, its fully resolved parameters, and a stable hash of them. A
:class:`MethodSet` is the ordered list a run compares; labels are unique within it. Specs are
built from configs by :mod:`xai_bench.method_specs` (the config boundary), or directly in a
notebook with :meth:`MethodSpec.create`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.utils import instantiate
from torch import nn

from xai_bench.methods.base import Explainer
from xai_bench.models.meta import ModelMeta
from xai_bench.utils.hashing import stable_hash

ExplainerFactory = Callable[..., Explainer]


def default_label(config_name: str, params: Mapping[str, Any]) -> str:
    """``name`` or ``name(key=value, ...)`` with the overridden keys in the given order."""
    if not params:
        return config_name
    inner = ",".join(f"{k}={_short(v)}" for k, v in params.items())
    return f"{config_name}({inner})"


def _short(value: Any) -> str:
    if isinstance(value, Mapping):
        return stable_hash(value, 6)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)


@dataclass(frozen=True)
class MethodSpec:
    """One explainer configuration as a benchmark sees it.

    Attributes:
        label: unique name in its :class:`MethodSet`; the ``method`` column of results.
        config_name: the method config it derives from (the ``method_config`` column).
        params: the explainer keys that differ from that config (the overrides).
        config: the resolved method node, ``{"name": ..., "explainer": {"_target_": ...}}``.
        hash: stable hash of ``config`` (the ``method_hash`` column; keys caches).
    """

    label: str
    config_name: str
    params: Mapping[str, Any]
    config: Mapping[str, Any]
    hash: str = field(default="")

    def __post_init__(self) -> None:
        if not self.hash:
            object.__setattr__(self, "hash", stable_hash(self.config))

    @classmethod
    def create(
        cls,
        config_name: str,
        explainer: Mapping[str, Any],
        label: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> MethodSpec:
        """A spec from a resolved explainer node (``_target_``, ``_partial_: true``, kwargs)."""
        params = dict(params or {})
        config = {"name": config_name, "explainer": copy.deepcopy(dict(explainer))}
        return cls(label or default_label(config_name, params), config_name, params, config)

    @property
    def identity(self) -> dict[str, str]:
        """The result columns that identify this spec."""
        return {"method": self.label, "method_config": self.config_name, "method_hash": self.hash}

    @property
    def key(self) -> str:
        """A file-safe chunk prefix, unique per (label, parameters)."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.label)[:60]
        return f"{safe}-{self.hash[:8]}"

    def factory(self) -> ExplainerFactory:
        """``factory(model=..., meta=...) -> Explainer`` built from the resolved node."""
        return instantiate(copy.deepcopy(dict(self.config["explainer"])))

    def build(self, model: nn.Module, meta: ModelMeta | None) -> Explainer:
        """The explainer for ``model`` (not fitted: see :meth:`Explainer.fit`)."""
        return self.factory()(model=model, meta=meta)


class MethodSet(Sequence[MethodSpec]):
    """The ordered methods a run compares; labels are unique.

    Raises:
        ValueError: when a label is used twice.
    """

    def __init__(self, specs: Sequence[MethodSpec]) -> None:
        seen: dict[str, MethodSpec] = {}
        for spec in specs:
            if spec.label in seen:
                raise ValueError(
                    f"method label '{spec.label}' is used twice; give one entry a `label`"
                )
            seen[spec.label] = spec
        self._specs = tuple(specs)

    def __getitem__(self, index: int) -> MethodSpec:  # type: ignore[override]
        return self._specs[index]

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self) -> Iterator[MethodSpec]:
        return iter(self._specs)

    def labels(self) -> list[str]:
        return [s.label for s in self._specs]

    def by_label(self, label: str) -> MethodSpec:
        for spec in self._specs:
            if spec.label == label:
                return spec
        raise KeyError(f"no method labelled '{label}' (have {self.labels()})")

    def resolved(self) -> list[dict[str, Any]]:
        """Every spec as plain data (written to the run's ``config.yaml``)."""
        return [
            {"label": s.label, "name": s.config_name, "params": dict(s.params),
             "hash": s.hash, "config": copy.deepcopy(dict(s.config))}
            for s in self._specs
        ]  # fmt: skip
