"""Method jobs over seeded batches: resumable chunks, data-parallel over ranks, tidy rows.

A :class:`Job` is one explainer configuration (a :class:`MethodSpec`, optionally under a
condition such as a sanity-check stage) and how it scores one batch. :func:`run_jobs` computes
every missing ``(job, batch)`` chunk (batch ``n`` on rank ``n % world`` with a DDP trainer
preset), writes each atomically, then reads all chunks back, so every rank and a single process
see the same table, and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from xai_bench.engine.batches import BatchPlan, EvalBatch
from xai_bench.engine.context import RunContext
from xai_bench.engine.fingerprint import fingerprint
from xai_bench.methods.base import Explainer, MethodNotApplicableError
from xai_bench.methods.spec import MethodSpec
from xai_bench.results.partial import PartialStore
from xai_bench.utils.distributed import distributed_map

log = logging.getLogger(__name__)

IDENTITY = ("experiment", "model", "dataset", "seed", "benchmark")
METHOD_COLUMNS = ("method", "method_config", "method_hash")


@dataclass
class Job:
    """One method (under optional ``conditions``, e.g. ``{"stage": "fc"}``) and its scorer.

    ``compute(batch)`` returns the rows of one batch: ``metric``, ``value`` and per-sample
    context (``image``, ``target`` ...); the engine adds the method and condition columns.
    """

    spec: MethodSpec
    compute: Callable[[EvalBatch], pd.DataFrame]
    conditions: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        cond = "".join(f"/{k}={v}" for k, v in self.conditions.items())
        return f"{self.spec.key}{cond}"


def chunk_store(ctx: RunContext, benchmark: str, params: Mapping[str, Any]) -> PartialStore:
    """The resumable chunk store of a benchmark run, keyed by :func:`fingerprint` (emptied first
    when the run is forced)."""
    key = fingerprint(ctx, benchmark=benchmark, params=dict(params))
    return PartialStore(ctx.run_dir, key, force=ctx.force)


def build_explainers(
    ctx: RunContext, specs: Sequence[MethodSpec] | None = None
) -> tuple[list[tuple[MethodSpec, Explainer]], dict[str, str]]:
    """Explainers of ``specs`` (default: the run's methods) for the run's model, and the labels
    of those that do not fit the model with the reason."""
    built, skipped = [], {}
    for spec in ctx.methods if specs is None else specs:
        try:
            built.append((spec, ctx.explainer(spec)))
        except MethodNotApplicableError as err:
            skipped[spec.label] = str(err)
    return built, skipped


def run_jobs(
    ctx: RunContext, store: PartialStore, jobs: Sequence[Job], plan: BatchPlan, name: str = ""
) -> pd.DataFrame:
    """Rows of every (batch, job) chunk in batch order, jobs in the given order within a batch,
    with the method identity and condition columns. ``store.computed`` lists the chunks this
    process computed, ``store.loaded`` all others."""
    keys = [f"{job.key}/batch={{}}" for job in jobs]
    total = plan.n_batches(ctx)

    def done(number: int) -> bool:
        return all(store.has(k.format(number)) for k in keys)

    def work(number: int) -> None:
        batch = plan.batch(ctx, number)
        for key, job in zip(keys, jobs, strict=True):
            if not store.has(key.format(number)):
                store.computed.append(key.format(number))
                store.put(key.format(number), job.compute(batch))
        log.info("%s: batch %d/%d of %d job(s) done", name, number + 1, total, len(jobs))

    numbers = range(total)
    distributed_map(numbers, work, ctx.trainer_kwargs, done)
    seen = set(store.computed)
    parts = []
    for n in numbers:
        for key, job in zip(keys, jobs, strict=True):
            if key.format(n) not in seen:  # finished earlier, or by another rank
                store.loaded.append(key.format(n))
            rows = store.get(key.format(n))
            parts.append(rows.assign(**job.spec.identity, **dict(job.conditions)))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def tidy_table(
    ctx: RunContext, benchmark: str, rows: pd.DataFrame, skipped: Mapping[str, str]
) -> pd.DataFrame:
    """Long results: identity, ``benchmark``, method columns, ``metric``, ``value``, context;
    one ``applicable = 0`` row per skipped method with the reason in ``note``."""
    notes = []
    for label, note in skipped.items():
        spec = ctx.methods.by_label(label)
        notes.append({**spec.identity, "metric": "applicable", "value": 0.0, "note": note})
    frames = [f for f in (rows, pd.DataFrame(notes)) if len(f)]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    front = {**dict(ctx.identity), "seed": ctx.seed, "benchmark": benchmark}
    for key, value in front.items():
        table[key] = value
    first = [*front, *METHOD_COLUMNS, "metric", "value"]
    return table.reindex(columns=first + [c for c in table.columns if c not in first])
