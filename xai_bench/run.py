"""``run(cfg, run_dir)``: the task behind the CLI, callable from tests and notebooks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from xai_bench.benchmarks.base import Benchmark
from xai_bench.results.store import RunStore
from xai_bench.utils.distributed import is_global_zero
from xai_bench.utils.errors import UserInputError
from xai_bench.utils.io import atomic_write_text
from xai_bench.utils.seed import seed_everything
from xai_bench.workspace import Workspace

log = logging.getLogger(__name__)


def build_benchmark(node: DictConfig) -> Benchmark:
    """Instantiate a benchmark config (its ``name`` key labels the config, not the class)."""
    params = {k: v for k, v in node.items() if k != "name"}
    try:
        return instantiate(OmegaConf.create(params))
    except InstantiationException as err:
        if isinstance(err.__cause__, ValueError | TypeError):  # a bad value or an unknown key
            raise UserInputError(f"benchmark={node.get('name')}: {err.__cause__}") from err
        raise


def changed_keys(saved: Path, cfg: DictConfig) -> list[str]:
    """Top-level sections of ``cfg`` that differ from the config saved beside a result."""
    if not saved.is_file():
        return []
    old = OmegaConf.to_container(OmegaConf.load(saved), resolve=False)
    new = OmegaConf.to_container(cfg, resolve=True)
    ignore = {"force", "device", "num_workers", "paths", "hydra"}
    keys = (set(old) | set(new)) - ignore  # type: ignore[arg-type]
    return sorted(k for k in keys if old.get(k) != new.get(k))  # type: ignore[union-attr]


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Run the configured benchmark into ``run_dir``, or return its earlier summary.

    A run directory that holds a finished summary is not recomputed unless ``force=true``.
    """
    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    if store.done and not cfg.force:
        log.info("finished results found in %s (force=true recomputes)", run_dir)
        changed = changed_keys(run_dir / "config.yaml", cfg)
        if changed:
            log.warning(
                "the finished results in %s were computed with a different config (%s differ); "
                "they are kept: force=true recomputes them",
                run_dir,
                ", ".join(changed),
            )
        return {**store.summary(), "run_dir": str(run_dir), "cached": True}
    seed_everything(int(cfg.seed))
    benchmark = build_benchmark(cfg.benchmark)
    if is_global_zero():
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    ws = Workspace(cfg, run_dir)
    result = benchmark.run(ws)
    summary = {**result.summary, "figures": result.figures}
    if is_global_zero():  # in a data-parallel run every rank holds the same gathered results
        store.save(result.table, summary)
        log.info("results written to %s", run_dir)
    return {**summary, "run_dir": str(run_dir), "cached": False}
