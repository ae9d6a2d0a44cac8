"""``run(cfg, run_dir)``: the task behind the CLI, callable from tests and notebooks."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from xai_bench import provenance
from xai_bench.checks import check_config
from xai_bench.engine.benchmark import Task
from xai_bench.results.store import CONFIG_FILE, NOT_FINISHED, RunStore
from xai_bench.utils.distributed import is_global_zero
from xai_bench.utils.errors import UserInputError
from xai_bench.utils.io import remove_stray_tmp, strict_json
from xai_bench.utils.lock import RunLock
from xai_bench.utils.plain_yaml import as_saved, load_plain_yaml
from xai_bench.utils.seed import seed_everything
from xai_bench.utils.verbosity import quiet_lightning
from xai_bench.viz.formats import figure_formats
from xai_bench.workspace import Workspace

log = logging.getLogger(__name__)

METHODS_KEY = "resolved_methods"  # config.yaml: every method spec, fully resolved
INPUTS_KEY = "inputs"  # config.yaml: content keys of the weights, data and flag files


def build_benchmark(node: DictConfig) -> Task:
    """Instantiate a benchmark config. Its ``name`` labels the config, and ``methods`` is read
    by :func:`~xai_bench.method_specs.resolve_methods`, not by the class. Nested values are
    resolved in the run config first (``recipe: {lr: ${train.lr}}``)."""
    params = {
        k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
        for k, v in node.items()
        if k not in ("name", "methods")
    }
    try:
        return instantiate(OmegaConf.create(params))
    except InstantiationException as err:
        if isinstance(err.__cause__, ValueError | TypeError):  # a bad value or an unknown key
            raise UserInputError(f"benchmark={node.get('name')}: {err.__cause__}") from err
        raise


def saved_config(cfg: DictConfig, ws: Workspace) -> dict[str, Any]:
    """The resolved config with every method spec fully resolved and the content keys of the
    input files (``config.yaml``)."""
    out = OmegaConf.to_container(cfg, resolve=True)
    out[METHODS_KEY] = ws.methods.resolved()  # type: ignore[index]
    out["trainer"].pop("logger", None)  # type: ignore[index,union-attr]  # runtime, as `logger`
    out[INPUTS_KEY] = ws.inputs()  # type: ignore[index]
    return out  # type: ignore[return-value]


# Keys that do not change the numbers: a rerun that differs only in them reuses the results.
# (`scale` and a paper experiment's `scales`, `reported` and `figure` blocks only document; the
# overrides that a scale adds change the sections they set.)
RUNTIME_KEYS = {"force", "device", "num_workers", "paths", "hydra", "checkpoint_every_n_steps",
                "lock_timeout", "threads", "scale", "scales", "reported", "figure", "logger",
                "verbose", "figure_formats"}  # fmt: skip


def changed_keys(saved: Path, new: dict[str, Any]) -> list[str]:
    """Top-level sections of ``new`` that differ from the config saved beside a result."""
    if not saved.is_file():
        return []
    old = load_plain_yaml(saved)
    keys = (set(old) | set(new)) - RUNTIME_KEYS
    new = as_saved(new)  # as YAML reads it back
    return sorted(k for k in keys if old.get(k) != new.get(k))


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Run the configured benchmark into ``run_dir``, or return its earlier results.

    Finished results are returned as they are when they are intact and were computed from the
    same config and input files; otherwise the run is computed (reusing the finished chunks of
    an interrupted run). ``force=true`` recomputes everything of the run, ``force=all`` also
    retrains the base checkpoint. Only one process works in a run directory at a time.
    Computed results get a ``provenance.json`` (:mod:`xai_bench.provenance`); reused ones keep
    theirs.
    """
    check_config(cfg, run_dir)  # bad values fail here, in one line, before anything is written
    quiet_lightning(not cfg.get("verbose", False))  # Lightning's banners: verbose=true only
    if cfg.get("threads") is not None:
        torch.set_num_threads(int(cfg.threads))
    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    ws = Workspace(cfg, run_dir)
    ws.methods  # noqa: B018 - method specs fail here, before any computation
    lock = RunLock(run_dir, timeout=_timeout(cfg)) if is_global_zero() else nullcontext()
    with lock:
        if is_global_zero():
            for path in remove_stray_tmp(run_dir):
                log.info("removed %s, left by a killed run", path)
        if not cfg.force:
            cached = _finished(cfg, ws, store, run_dir)
            if cached is not None:
                return cached
        started = provenance.start()
        seed_everything(int(cfg.seed))
        benchmark = build_benchmark(cfg.benchmark)
        with figure_formats(cfg.get("figure_formats")):  # png, and pdf/svg beside it if asked
            result = benchmark.run(ws.context())
        summary = {**result.summary, "figures": result.figures}
        if is_global_zero():  # in a data-parallel run every rank holds the same gathered results
            config = OmegaConf.to_yaml(OmegaConf.create(saved_config(cfg, ws)))
            provenance.discard(run_dir)  # it described the results about to be replaced
            store.save(result.table, summary, config)
            provenance.write(run_dir, started, ws.device)  # provenance.json: what computed them
            ws.log_results(summary)  # headline metrics and figures to the `logger`
            log.info("results written to %s", run_dir)
    return {**strict_json(summary), "run_dir": str(run_dir), "cached": False}


def finished_result(cfg: DictConfig, run_dir: str | Path) -> dict | None:
    """The results :func:`run` would return without computing (intact, same config and input
    files), or ``None``; reads checksums and the saved config only (``make reproduce``)."""
    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    if store.problem() is not None:
        return None
    return _finished(cfg, Workspace(cfg, run_dir), store, run_dir)


def _finished(cfg: DictConfig, ws: Workspace, store: RunStore, run_dir: Path) -> dict | None:
    """The finished results of ``run_dir`` if they are intact and up to date, else ``None``
    (the reason is logged)."""
    problem = store.problem()
    if problem == NOT_FINISHED:
        return None
    if problem is not None:
        log.warning("%s; recomputing", problem)
        return None
    changed = changed_keys(run_dir / CONFIG_FILE, saved_config(cfg, ws))
    if changed:
        log.warning(
            "the results in %s were computed with a different config or input files (%s "
            "differ); recomputing them",
            run_dir,
            ", ".join(changed),
        )
        return None
    log.info("finished results found in %s (force=true recomputes)", run_dir)
    return {**store.summary(), "run_dir": str(run_dir), "cached": True}


def _timeout(cfg: DictConfig) -> float | None:
    value = cfg.get("lock_timeout")
    return None if value is None else float(value)
