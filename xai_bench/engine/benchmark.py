"""The task and benchmark contract, and the template of the evaluation benchmarks.

A task (``train``, ``overview``, ``gallery``) or benchmark is stateless: ``run(ctx) -> Result``.
An :class:`EvalBenchmark` implements only what is its own: how it scores one batch for one
explainer (:meth:`~EvalBenchmark.score`), how its rows aggregate (:meth:`~EvalBenchmark.
summarize`), what it draws (:meth:`~EvalBenchmark.draw`), and its headline metrics with their
direction (:attr:`~Task.headline`). The engine does the rest: method iteration, seeded batches
and targets, resumable chunks, the data-parallel split and progress reporting.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from xai_bench.engine.batches import BatchPlan, EvalBatch
from xai_bench.engine.context import RunContext
from xai_bench.engine.jobs import Job, build_explainers, chunk_store, run_jobs, tidy_table
from xai_bench.methods.base import Explainer
from xai_bench.metrics.aggregate import nan_counts
from xai_bench.results.partial import PartialStore

log = logging.getLogger(__name__)

#: what a NaN that does not come from a non-finite map means, for the console warning
UNDEFINED = "undefined"


@dataclass
class Result:
    """A run's output: long rows (``metric``, ``value`` and context) and a summary."""

    table: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)


class Task(ABC):
    """Base class of everything ``benchmark=<name>`` runs.

    Class attributes: ``name`` labels the rows; ``headline`` maps the metrics shown in summary
    tables to whether higher is better (``None``: no direction), which draws the arrows.
    """

    name: ClassVar[str] = "task"
    headline: ClassVar[Mapping[str, bool | None]] = {}

    @property
    def reads_data(self) -> bool:
        """Whether the task reads the dataset (``scale=paper`` asks for its files only then)."""
        return True

    @abstractmethod
    def run(self, ctx: RunContext) -> Result:
        """Compute the task for the context's model, data and methods."""


class Benchmark(Task):
    """A benchmark: scores the context's methods."""


class EvalBenchmark(Benchmark):
    """Template of a benchmark that scores methods batch by batch on a seeded image subset.

    Subclasses set :attr:`plan` (a :class:`BatchPlan`) in ``__init__`` and implement
    :meth:`score`; :meth:`params` (what changes the numbers) defaults to the instance's public
    attributes.
    """

    plan: BatchPlan
    #: attributes that do not change the numbers (left out of the chunk fingerprint)
    runtime_params: ClassVar[tuple[str, ...]] = ("internal_batch_size",)
    #: what a NaN result of a finite map means (named in the console warning)
    nan_reason: ClassVar[str] = UNDEFINED

    def params(self) -> dict[str, Any]:
        """Everything that changes the numbers: keys the resumable chunks."""
        out = {k: v for k, v in vars(self).items() if k not in self.runtime_params}
        out["plan"] = vars(self.plan)
        return {k: v if _plain(v) else repr(v) for k, v in out.items()}

    def check(self, ctx: RunContext) -> None:
        """Refuse a model or dataset the benchmark cannot score (before any computation)."""

    @abstractmethod
    def score(self, ctx: RunContext, explainer: Explainer, batch: EvalBatch) -> pd.DataFrame:
        """Rows of one batch for one explainer: ``metric``, ``value``, per-sample context."""

    def summarize(self, rows: pd.DataFrame) -> dict[str, Any]:
        """Summary numbers of the rows (default: the mean per method and metric)."""
        means = rows.groupby(["method", "metric"], sort=False)["value"].mean()
        return {f"{m}/{metric}": float(v) for (m, metric), v in means.items()}

    def draw(self, rows: pd.DataFrame, run_dir: Path) -> list[Path]:
        """Figures of the rows (default: none)."""
        return []

    def tabulate(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The rows kept in ``results.csv`` (default: all; e.g. curves may be averaged)."""
        return rows

    def nan_counts(self, rows: pd.DataFrame) -> dict[str, tuple[int, int, int]]:
        """Per method label: ``(NaN results, results, NaN results of non-finite maps)``
        (default: the rows whose ``value`` is NaN, and of those the rows flagged
        ``map_nonfinite``); :meth:`result` puts the first in ``summary["nonfinite"]`` and warns
        (:func:`report_nan`)."""
        return nan_counts(rows)

    def run(self, ctx: RunContext) -> Result:
        self.check(ctx)
        store = chunk_store(ctx, self.name, self.params())
        built, skipped = build_explainers(ctx)
        jobs = [Job(spec, partial(self.score, ctx, e)) for spec, e in built]
        rows = run_jobs(ctx, store, jobs, self.plan, self.name)
        return self.result(ctx, rows, skipped, store)

    def result(
        self, ctx: RunContext, rows: pd.DataFrame, skipped: Mapping[str, str], store: PartialStore
    ) -> Result:
        """The tidy table, the summary (with the engine's counts) and the figures."""
        table = tidy_table(ctx, self.name, self.tabulate(rows) if len(rows) else rows, skipped)
        summary: dict[str, Any] = {"n_images": n_images(rows)}
        if len(rows):
            summary.update(self.summarize(rows))
        counts = self.nan_counts(rows) if len(rows) else {}
        summary.update(
            nonfinite=report_nan(self.name, counts, skipped, self.nan_reason),
            skipped=dict(skipped),
            chunks_loaded=len(store.loaded),
            chunks_computed=len(store.computed),
            headline=dict(self.headline),
        )
        figures = [] if rows.empty else [str(p) for p in self.draw(rows, ctx.run_dir)]
        return Result(table, summary, figures)


def report_nan(
    name: str,
    counts: Mapping[str, tuple[int, int, int]],
    skipped: Mapping[str, str] | None = None,
    reason: str = UNDEFINED,
) -> dict[str, int]:
    """Warn once per method with NaN results or skipped, and return the summary's
    ``nonfinite`` entry: ``{label: NaN results}`` for the methods that have any.

    Args:
        name: the benchmark (prefixes each line).
        counts: per label ``(NaN results, results, NaN results of non-finite maps)``.
        skipped: labels of methods that do not fit the model, with the reason.
        reason: what a NaN of a finite map means (e.g. ``constant maps``).

    Lines read ``<benchmark>: <label>: 12 of 96 results are NaN (12 of non-finite saliency
    maps)`` and ``<benchmark>: <label>: skipped (<reason>)``.
    """
    out = {}
    for label, (n_nan, n, n_maps) in counts.items():
        if not n_nan:
            continue
        out[label] = int(n_nan)
        why = [f"{n_maps} of non-finite saliency maps"] if n_maps else []
        why += [f"{n_nan - n_maps} {reason}"] if n_nan > n_maps else []
        log.warning("%s: %s: %d of %d results are NaN (%s)", name, label, n_nan, n, ", ".join(why))
    for label, why in (skipped or {}).items():
        log.warning("%s: %s: skipped (%s)", name, label, why)
    return out


def n_images(rows: pd.DataFrame) -> int:
    """Images scored per method (the largest count over methods)."""
    column = "image" if "image" in rows else "index" if "index" in rows else None
    if column is None or rows.empty:
        return 0
    return int(rows.groupby("method")[column].nunique().max())


def _plain(value: Any) -> bool:
    if isinstance(value, str | int | float | bool | type(None)):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_plain(v) for v in value.values())
    return False
