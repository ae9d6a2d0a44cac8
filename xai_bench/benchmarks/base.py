"""The benchmark contract: stateless, ``run(workspace) -> Result`` with a tidy table."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from xai_bench.workspace import Workspace


@dataclass
class Result:
    """A benchmark's output: long rows (``metric``, ``value`` and context) and a summary."""

    table: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)


class Benchmark(ABC):
    """Base class. Subclasses take explicit hyper-parameters and implement :meth:`run`.

    Class attributes: ``name`` labels the rows; ``higher_is_better`` says which way is good for
    the headline metric (``None`` when it has no direction).
    """

    name: str = "benchmark"
    higher_is_better: bool | None = None

    @abstractmethod
    def run(self, ws: Workspace) -> Result:
        """Compute the benchmark for the workspace's model, data and method."""
