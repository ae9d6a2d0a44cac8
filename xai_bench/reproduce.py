"""Every paper experiment at one scale: ``make reproduce`` (``SCALE=embedded|paper``).

The papers' results are the files ``experiment/<paper>/<result>.yaml``
(:mod:`xai_bench.experiments`). :func:`sweep_jobs` expands one into the override lists of its
sweep jobs, exactly as ``xai-bench -m experiment=<paper>/<result> scale=<scale>`` does (the
scale's overrides, then ``hydra.sweeper.params`` and the command line, as Hydra's basic
sweeper combines them), so that the jobs can be composed in this process:

* :func:`unfinished_jobs` finds the jobs without up-to-date results (the same test a run
  makes before it computes: :func:`xai_bench.run.finished_result`), so that a second
  ``make reproduce`` only composes configs and reads checksums: seconds, no subprocess;
* :func:`missing_inputs` lists, for ``scale=paper``, every weights file and dataset folder
  that the experiment's jobs need and that is not on disk, for one error line.

:func:`main` runs the experiments with unfinished jobs as ``xai-bench -m`` subprocesses, two at
a time on a CPU (one thread each), or submits them to SLURM (``--launcher slurm``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from xai_bench.experiments import DEFAULT_SCALE, SCALES, expand_argv, paper_experiments
from xai_bench.utils.configs import CONFIG_MODULE
from xai_bench.utils.errors import UserInputError


@contextmanager
def hydra_configs() -> Iterator[None]:
    """Hydra's compose API on the package configs (nested calls reuse the open one)."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from xai_bench.resolvers import register_resolvers

    register_resolvers()
    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        yield


def _parse(overrides: Sequence[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(overrides))


#: where :func:`compose_config` keeps composed configs (``None``: compose every time);
#: :func:`main` sets ``<outputs>/cache/compose``
COMPOSE_CACHE: Path | None = None


def configs_digest(root: Path | None = None) -> str:
    """SHA-256 over every file of a config tree (default: the package's; names and bytes), and
    the Hydra and OmegaConf versions: what a composition depends on besides its overrides."""
    import hydra
    import omegaconf

    from xai_bench.utils.configs import CONFIG_DIR

    root = Path(CONFIG_DIR) if root is None else root
    digest = hashlib.sha256(f"{hydra.__version__} {omegaconf.__version__}".encode())
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def compose_config(overrides: Sequence[str]) -> DictConfig:
    """The run config of ``overrides`` with its ``hydra`` node (Hydra's compose API).

    With :data:`COMPOSE_CACHE` set, a composition is stored under a key of the config tree's
    bytes, the overrides and the working directory, so that a cached ``make reproduce`` does
    not compose again; any edited config file changes the key. Overrides that reach outside
    the package's configs (``hydra.searchpath``) are never cached."""
    from hydra import compose

    key = None
    if COMPOSE_CACHE is not None and not any("searchpath" in o for o in overrides):
        key = _compose_key(list(overrides))
        cached = COMPOSE_CACHE / f"{key}.pkl"
        if cached.is_file():
            from hydra.core.utils import setup_globals

            from xai_bench.resolvers import register_resolvers

            setup_globals()  # Hydra's resolvers (`${hydra:...}`), as composing registers them
            register_resolvers()
            try:
                with cached.open("rb") as handle:
                    return pickle.load(handle)
            except Exception:  # a torn or foreign file: compose again and replace it
                pass
    with hydra_configs():
        cfg = compose("run", overrides=list(overrides), return_hydra_config=True)
    if key is not None:
        from xai_bench.utils.io import atomic_write

        data = pickle.dumps(cfg)
        atomic_write(COMPOSE_CACHE / f"{key}.pkl", lambda p: p.write_bytes(data))
    return cfg


_DIGEST: dict[str, str] = {}


def _compose_key(overrides: list[str]) -> str:
    if "tree" not in _DIGEST:
        _DIGEST["tree"] = configs_digest()
    text = "\n".join([_DIGEST["tree"], os.getcwd(), *overrides])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def sweep_jobs_for(argv: Sequence[str]) -> list[list[str]]:
    """The override lists of the jobs of ``xai-bench -m <argv>`` (``argv``: the overrides of the
    command line, without flags): a paper experiment's scale overrides first
    (:func:`~xai_bench.experiments.expand_argv`), then the composed config's
    ``hydra.sweeper.params`` and the command line, expanded to their product as Hydra's basic
    sweeper does (a key given twice keeps its last value)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    argv = expand_argv(list(argv))
    fixed = [str(o.input_line) for o in _parse(argv) if not o.is_sweep_override()]
    node = compose_config(fixed).hydra.sweeper.get("params")
    params = (OmegaConf.to_container(node) if node is not None else None) or {}
    lines = [f"{k}={v}" for k, v in params.items()] + argv  # type: ignore[union-attr]
    return BasicSweeper.split_arguments(_parse(lines), None)[0]


def sweep_jobs(name: str, scale: str = DEFAULT_SCALE, extra: Sequence[str] = ()) -> list[list[str]]:
    """The override lists of the jobs of ``xai-bench -m experiment=<name> scale=<scale>
    <extra>`` (:func:`sweep_jobs_for`)."""
    return sweep_jobs_for([f"experiment={name}", f"scale={scale}", *extra])


def compose_job(overrides: Sequence[str]) -> tuple[DictConfig, Path]:
    """A job's config (without the ``hydra`` node, as the task receives it) and its run
    directory."""
    from hydra.core.hydra_config import HydraConfig

    cfg = compose_config(overrides)
    HydraConfig.instance().set_config(cfg)
    run_dir = Path(str(cfg.hydra.run.dir))
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, run_dir


def job_setup(overrides: Sequence[str]) -> str | None:
    """The ``setup`` option a job composes (``None``: none)."""
    value = compose_config(overrides).hydra.runtime.choices.get("setup")
    return None if value in (None, "null") else str(value)


def unfinished_jobs(
    name: str, scale: str = DEFAULT_SCALE, extra: Sequence[str] = ()
) -> list[tuple[list[str], DictConfig, Path]]:
    """The experiment's jobs that have no up-to-date results: overrides, config, run dir."""
    from xai_bench.run import finished_result

    todo = []
    for job in sweep_jobs(name, scale, extra):
        cfg, run_dir = compose_job(job)
        if finished_result(cfg, run_dir) is None:
            todo.append((job, cfg, run_dir))
    return todo


def untrained_setups(jobs: Sequence[tuple[list[str], DictConfig, Path]]) -> list[str]:
    """The ``setup`` options of jobs whose trained checkpoint is missing, once each, so that
    they can be trained side by side before the experiments that share them start."""
    from xai_bench.training.fit import MODEL_FILE
    from xai_bench.workspace import Workspace

    setups: dict[Path, str] = {}
    for job, cfg, run_dir in jobs:
        setup = job_setup(job)
        if setup is None or str(cfg.model.weights) != "trained":
            continue
        checkpoint = Workspace(cfg, run_dir).checkpoint_dir
        if not (checkpoint / MODEL_FILE).is_file():
            setups.setdefault(checkpoint, setup)
    return list(dict.fromkeys(setups.values()))


def missing_inputs(name: str, scale: str = "paper", extra: Sequence[str] = ()) -> list[str]:
    """What the experiment's jobs need and is not on disk (weights files, dataset folders),
    one message each, without repeats."""
    from xai_bench.checks import check_weights, missing_pretrained
    from xai_bench.run import build_benchmark
    from xai_bench.utils.errors import WeightsNotFoundError, one_line
    from xai_bench.workspace import Workspace

    found: dict[str, None] = {}
    for job in sweep_jobs(name, scale, extra):
        cfg, run_dir = compose_job(job)
        try:
            check_weights(cfg)
        except (UserInputError, WeightsNotFoundError) as err:
            found[one_line(err)] = None
        keys = _pretrained_inits(cfg)  # training or ROAR's retrains start from them
        if keys:
            instead = "or train from scratch (" + ", ".join(f"{k}=scratch" for k in keys) + ")"
            message = missing_pretrained(cfg.model.get("pretrained") or {}, instead)
            if message is not None:
                found[message] = None
        try:
            task = build_benchmark(cfg.benchmark)  # files the benchmark names (subset flags)
        except (UserInputError, FileNotFoundError) as err:
            found[one_line(err)] = None
        else:
            if not task.reads_data:
                continue
        try:
            sources = Workspace(cfg, run_dir).build_datamodule().sources()
        except UserInputError as err:
            found[one_line(err)] = None
            continue
        for path in sources:
            if not Path(path).exists():
                found[f"dataset '{cfg.dataset.name}' is not on disk: put it in {path}"] = None
    return list(found)


def _pretrained_inits(cfg: DictConfig) -> list[str]:
    """The keys that start a training of the job from the model's published weights:
    ``train.init`` when the job trains its checkpoint, ``benchmark.init`` (ROAR's retrains)."""
    keys = []
    trains = str(cfg.model.get("weights")) == "trained" and cfg.get("train") is not None
    if trains and str(cfg.train.get("init")) == "pretrained":
        keys.append("train.init")
    bench = cfg.get("benchmark")
    if bench is not None and str(bench.get("init")) == "pretrained":
        keys.append("benchmark.init")
    return keys


#: flags that print instead of running: no input is read, so none is checked
PRINT_FLAGS = ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "--shell-completion")


def check_paper_inputs(argv: Sequence[str]) -> None:
    """For ``xai-bench ... experiment=<paper>/<result> scale=paper``: raise one error that
    lists every missing weights file and dataset of the whole sweep (before anything runs)."""
    from xai_bench.experiments import _value, is_paper_experiment

    name, scale = _value(argv, "experiment"), _value(argv, "scale")
    if scale != "paper" or not name or "," in name or not is_paper_experiment(name):
        return
    if any(a.split("=", 1)[0] in PRINT_FLAGS for a in argv):
        return
    keys = ("experiment", "scale")
    extra = [a for a in argv if ("=" in a or a.startswith("~")) and not a.startswith("-")]
    missing = missing_inputs(name, "paper", [a for a in extra if a.split("=")[0] not in keys])
    if missing:
        raise UserInputError(
            f"experiment={name} scale=paper needs files that are not on disk: " + "; ".join(missing)
        )


def _call(cmd: list[str], log: Path) -> tuple[int, float]:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.monotonic()
    with log.open("w") as handle:
        rc = subprocess.call(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
    return rc, time.monotonic() - start


def _log_name(name: str) -> str:
    return name.replace("/", "__") + ".log"


def main(argv: Sequence[str] | None = None) -> int:
    """``make reproduce``: run (or submit) every paper experiment at one scale whose results
    are missing or stale; prints one line per experiment and returns 1 if any failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", default=DEFAULT_SCALE, choices=SCALES)
    parser.add_argument("--jobs", type=int, default=2, help="experiments run side by side")
    parser.add_argument("--only", default="", help="experiments whose name contains this text")
    parser.add_argument("--launcher", default=None, help="hydra/launcher option, e.g. slurm")
    parser.add_argument("--outputs", default=None, help="paths.output_dir (default: outputs)")
    parser.add_argument("overrides", nargs="*", help="added to every run, e.g. seed=1")
    args = parser.parse_args(argv)
    global COMPOSE_CACHE
    previous, COMPOSE_CACHE = COMPOSE_CACHE, Path(args.outputs or "outputs") / "cache" / "compose"
    try:
        return _reproduce(args)
    finally:
        COMPOSE_CACHE = previous


def _reproduce(args: argparse.Namespace) -> int:
    extra = [*([f"paths.output_dir={args.outputs}"] if args.outputs else []), *args.overrides]
    if args.launcher:
        extra.append(f"hydra/launcher={args.launcher}")
    names = [n for n in paper_experiments() if args.only in n]
    start = time.monotonic()
    todo: dict[str, list] = {}
    for name in names:
        jobs = [] if args.launcher else unfinished_jobs(name, args.scale, extra)
        if jobs or args.launcher:
            todo[name] = jobs
        else:
            print(f"  cached   {name}")
    print(f"{len(names) - len(todo)} of {len(names)} experiments up to date "
          f"({time.monotonic() - start:.1f} s); running {len(todo)}")  # fmt: skip
    log_dir = Path(args.outputs or "outputs") / args.scale / "logs"
    xb = [sys.executable, "-m", "xai_bench"]
    commands = {
        f"train {setup}": [*xb, "benchmark=train", f"setup={setup}", *extra]
        for setup in untrained_setups([job for jobs in todo.values() for job in jobs])
    }
    failed = _run_all(commands, log_dir, args.jobs)  # the shared checkpoints first
    commands = {
        name: [*xb, "-m", f"experiment={name}", f"scale={args.scale}", *extra] for name in todo
    }
    failed += _run_all(commands, log_dir, args.jobs)
    print(f"make reproduce: {len(names)} experiments, {failed} failed, "
          f"{time.monotonic() - start:.0f} s")  # fmt: skip
    return 1 if failed else 0


def _run_all(commands: dict[str, list[str]], log_dir: Path, jobs: int) -> int:
    """Run the commands ``jobs`` at a time; one line each; the number that failed."""
    failed = 0

    def one(item: tuple[str, list[str]]) -> tuple[str, int, float]:
        return (item[0], *_call(item[1], log_dir / _log_name(item[0])))

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for name, rc, seconds in pool.map(one, commands.items()):
            log = log_dir / _log_name(name)
            print(f"  {'done' if rc == 0 else 'FAILED':8s} {name} ({seconds:.0f} s)"
                  + ("" if rc == 0 else f": exit {rc}, see {log}"), flush=True)  # fmt: skip
            failed += rc != 0
    return failed
