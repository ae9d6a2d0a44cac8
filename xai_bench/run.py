"""``run(cfg, run_dir)``: the task behind the CLI, callable from tests and notebooks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from xai_bench.engine.benchmark import Task
from xai_bench.results.store import RunStore
from xai_bench.utils.distributed import is_global_zero
from xai_bench.utils.errors import UserInputError
from xai_bench.utils.io import atomic_write_text
from xai_bench.utils.seed import seed_everything
from xai_bench.workspace import Workspace

log = logging.getLogger(__name__)

METHODS_KEY = "resolved_methods"  # config.yaml: every method spec, fully resolved


def build_benchmark(node: DictConfig) -> Task:
    """Instantiate a benchmark config. Its ``name`` labels the config, and ``methods`` is read
    by :func:`~xai_bench.method_specs.resolve_methods`, not by the class."""
    params = {k: v for k, v in node.items() if k not in ("name", "methods")}
    try:
        return instantiate(OmegaConf.create(params))
    except InstantiationException as err:
        if isinstance(err.__cause__, ValueError | TypeError):  # a bad value or an unknown key
            raise UserInputError(f"benchmark={node.get('name')}: {err.__cause__}") from err
        raise


def saved_config(cfg: DictConfig, ws: Workspace) -> dict[str, Any]:
    """The resolved config with every method spec fully resolved (``config.yaml``)."""
    out = OmegaConf.to_container(cfg, resolve=True)
    out[METHODS_KEY] = ws.methods.resolved()  # type: ignore[index]
    return out  # type: ignore[return-value]


def changed_keys(saved: Path, new: dict[str, Any]) -> list[str]:
    """Top-level sections of ``new`` that differ from the config saved beside a result."""
    if not saved.is_file():
        return []
    old = OmegaConf.to_container(OmegaConf.load(saved), resolve=False)
    ignore = {"force", "device", "num_workers", "paths", "hydra", "checkpoint_every_n_steps"}
    keys = (set(old) | set(new)) - ignore  # type: ignore[arg-type]
    return sorted(k for k in keys if old.get(k) != new.get(k))  # type: ignore[union-attr]


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Run the configured benchmark into ``run_dir``, or return its earlier summary.

    A run directory that holds a finished summary is not recomputed unless ``force=true``.
    """
    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    ws = Workspace(cfg, run_dir)
    resolved = saved_config(cfg, ws)  # method specs fail here, before any computation
    if store.done and not cfg.force:
        log.info("finished results found in %s (force=true recomputes)", run_dir)
        changed = changed_keys(run_dir / "config.yaml", resolved)
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
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(resolved)))
    result = benchmark.run(ws.context())
    summary = {**result.summary, "figures": result.figures}
    if is_global_zero():  # in a data-parallel run every rank holds the same gathered results
        store.save(result.table, summary)
        log.info("results written to %s", run_dir)
    return {**summary, "run_dir": str(run_dir), "cached": False}
