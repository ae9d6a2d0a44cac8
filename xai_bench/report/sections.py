"""One :class:`~xai_bench.report.model.Section` per paper experiment, from stored results only:
``outputs/<scale>/<paper>/<result>/`` (finished runs), the figure of `make figures`
(``outputs/figures/<scale>/<paper>/<result>.png``) and the experiment file."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from xai_bench.experiments import (
    DEFAULT_SCALE,
    EXPERIMENT_DIR,
    experiment_file,
    paper_experiments,
    read_experiment,
    reported,
)
from xai_bench.report.compare import compare
from xai_bench.report.model import Report, Section
from xai_bench.report.setups import default_setup, run_setups
from xai_bench.report.verdicts import check, claim_keys
from xai_bench.results.store import CONFIG_FILE, finished_run_dirs
from xai_bench.results.summary import headline_markdown, long_summary
from xai_bench.utils.errors import UserInputError

READ_ERRORS = (OSError, ValueError, KeyError, TypeError, yaml.YAMLError, UserInputError)


def command(name: str, scale: str) -> str:
    """The command that runs experiment ``name`` at ``scale``."""
    return f"xai-bench -m experiment={name} scale={scale}"


def description(name: str, root: Path = EXPERIMENT_DIR) -> str:
    """The header comment of an experiment file up to its ``Run:`` line, as one paragraph."""
    lines = []
    for line in experiment_file(name, root).read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text.startswith("Run:"):
            break
        if not text.startswith("@package"):
            lines.append(text)
    return " ".join(t for t in lines if t)


def renamed(long: pd.DataFrame, run_dirs: list[Path]) -> pd.DataFrame:
    """``long`` with every method label replaced by its claims' name (:func:`claim_keys`)."""
    by_hash: dict[str, str] = {}
    by_label: dict[str, str] = {}
    for run_dir in run_dirs:
        path = run_dir / CONFIG_FILE
        config = yaml.safe_load(path.read_text()) if path.is_file() else None
        if not isinstance(config, Mapping):
            continue
        keys = claim_keys(config)
        by_label.update(keys)
        for m in config.get("resolved_methods") or []:
            if isinstance(m, Mapping) and m.get("hash") and str(m.get("label")) in keys:
                by_hash[str(m["hash"])] = keys[str(m["label"])]
    if long.empty or not (by_hash or by_label):
        return long
    hashes = long["method_hash"] if "method_hash" in long else [""] * len(long)
    out = long.copy()
    out["method"] = [by_hash.get(str(h)) or by_label.get(m, m) for m, h in zip(long.method, hashes)]
    return out


class Results:
    """The finished runs of each experiment at one scale, read once."""

    def __init__(self, outputs: Path, scale: str) -> None:
        self.outputs, self.scale = Path(outputs), scale
        self.runs = cache(self._runs)
        self.long = cache(self._long)
        self.claims_long = cache(self._claims_long)

    def folder(self, name: str) -> Path:
        return self.outputs / self.scale / name

    def _runs(self, name: str) -> list[Path]:
        folder = self.folder(name)
        return finished_run_dirs(folder) if folder.is_dir() else []

    def _long(self, name: str) -> pd.DataFrame:
        return long_summary(self.folder(name))[0] if self.runs(name) else pd.DataFrame()

    def _claims_long(self, name: str) -> pd.DataFrame:
        return renamed(self.long(name), self.runs(name))


def section(
    name: str, scale: str, results: Results, figures: Path, root: Path = EXPERIMENT_DIR
) -> Section:
    """The section of experiment ``name``; a file or result that cannot be read sets
    ``problem`` instead of raising."""
    out = Section(name=name, scale=scale, command=command(name, scale))
    figure = figures / scale / f"{name}.png"
    out.figure = figure if figure.is_file() else None
    try:
        spec: dict[str, Any] = read_experiment(name, root)
        out.description = description(name, root)
        block = reported(name, root)
        out.source, out.paper_scale = str(block["source"]), str(block["scale"])
        out.unit, out.note = str(block["unit"]), str(block.get("note") or "")
        out.gpu_hours = ((spec.get("scales") or {}).get("paper") or {}).get("gpu_hours")
        runs = results.runs(name)
        out.runs = len(runs)
        out.setups = run_setups(runs, default_setup(spec, scale))
        long = results.long(name)
        out.comparisons = compare(block, long)
        out.headline = headline_markdown(long) if not long.empty else ""
        out.checks = check(name, spec, results.claims_long, out.command)
    except READ_ERRORS as err:
        out.problem = f"{type(err).__name__}: {err}"
    return out


def collect(
    scale: str = DEFAULT_SCALE,
    outputs: str | Path = "outputs",
    figures: str | Path | None = None,
    root: Path = EXPERIMENT_DIR,
) -> Report:
    """Every paper experiment's section at ``scale`` (the files under ``root``), from the
    results under ``outputs`` and the figures under ``figures`` (default ``<outputs>/figures``)."""
    outputs = Path(outputs)
    figures = Path(figures) if figures is not None else outputs / "figures"
    results = Results(outputs, scale)
    sections = [section(n, scale, results, figures, root) for n in paper_experiments(root)]
    return Report(scale=scale, outputs=str(outputs), sections=sections)
