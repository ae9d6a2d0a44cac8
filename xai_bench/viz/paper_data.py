"""The stored results of one paper experiment (OPPSD, Group-CAM, PruneGrad, POSAGG, UNREL), read
for ``make figures`` from the run folders only: nothing is computed, no model is built.

An experiment ``<paper>/<result>`` at a scale writes its runs under
``<outputs>/<scale>/<paper>/<result>/``; :func:`load_experiment` joins their ``results.csv``
(:func:`~xai_bench.results.store.load_all`), ``config.yaml`` and ``summary.json`` with the
experiment file's ``reported`` and ``figure`` blocks. Two things are added to our rows:

* *run conditions*: a ``benchmark.<key>`` setting that differs between the runs of one benchmark
  (e.g. ``order`` of a LeRF/MoRF sweep) becomes a column named after its last key;
* the paper's unit: where a metric's reported unit says ``%``, ``percent`` or ``x 100``, and our
  values of it all lie in [-1, 1], ours are multiplied by 100 (``factors``); ``figure.factor``
  (a number or ``{metric: number}``) sets the factors instead.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from xai_bench.experiments import EXPERIMENT_DIR, ROW_KEYS, read_experiment, reported
from xai_bench.results.store import CONFIG_FILE, SUMMARY_FILE, load_all
from xai_bench.utils.errors import UserInputError

#: unit texts that mean "the paper's number is ours x 100"
PERCENT = re.compile(r"%|percent|(?:x|\N{MULTIPLICATION SIGN}|\*)\s*100\b", re.IGNORECASE)
#: other names of figure kinds
ALIASES = {"stage_curves": "sanity", "sanity_checks": "sanity", "grid": "maps"}
#: benchmark settings never turned into run conditions
SKIPPED_KEYS = ("name", "methods", "_target_")


@dataclass
class Run:
    """One finished run folder: its config and summary (empty where the file is missing)."""

    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentData:
    """A paper experiment with our stored results.

    Attributes:
        name: ``<paper>/<result>``.
        spec: the experiment file as written.
        reported: its ``reported`` block (``{}`` where it is missing or invalid).
        table: our rows (``applicable`` rows dropped, values times ``factors``).
        runs: the run folders by their ``run_dir`` (relative to ``results_dir``).
        factors: metric -> factor applied to our values (paper's unit).
        results_dir: ``<outputs>/<scale>/<paper>/<result>``.
    """

    name: str
    spec: dict[str, Any]
    reported: dict[str, Any]
    table: pd.DataFrame
    runs: dict[str, Run]
    factors: dict[str, float]
    results_dir: Path

    @property
    def figure(self) -> dict[str, Any]:
        """The ``figure`` block (``{}``: the benchmark's default figure); ``metric`` is read as
        ``metrics: [metric]`` and the kind ``stage_curves`` as ``sanity``."""
        block = (
            dict(self.spec.get("figure") or {})
            if isinstance(self.spec.get("figure"), Mapping)
            else {}
        )
        if "metric" in block and "metrics" not in block:
            block["metrics"] = [block.pop("metric")]
        if isinstance(block.get("metrics"), str):
            block["metrics"] = [block["metrics"]]
        block["kind"] = ALIASES.get(block.get("kind"), block.get("kind"))
        return {k: v for k, v in block.items() if v is not None}

    @property
    def paper(self) -> pd.DataFrame:
        """The paper's numbers: ``method``, ``metric``, ``value``, ``unit`` and conditions."""
        return paper_table(self.reported)

    @property
    def benchmarks(self) -> list[str]:
        """Our benchmarks in the order of the rows."""
        return list(dict.fromkeys(self.table["benchmark"])) if len(self.table) else []

    def headline(self) -> list[str]:
        """The headline metrics named by the runs' summaries."""
        names: dict[str, None] = {}
        for run in self.runs.values():
            if isinstance(run.summary.get("headline"), Mapping):
                names.update(dict.fromkeys(str(m) for m in run.summary["headline"]))
        return list(names)


def paper_table(block: Mapping[str, Any]) -> pd.DataFrame:
    """The ``values`` of a ``reported`` block as a table (a row's own ``unit`` or the block's)."""
    rows = [dict(r) for r in block.get("values") or [] if isinstance(r, Mapping)]
    table = pd.DataFrame(rows, columns=list(ROW_KEYS)) if not rows else pd.DataFrame(rows)
    unit = str(block.get("unit") or "")
    table["unit"] = table["unit"].fillna(unit) if "unit" in table else unit
    table["method"] = table["method"].astype(str)
    table["metric"] = table["metric"].astype(str)
    return table


def benchmark_name(option: str, root: Path = EXPERIMENT_DIR.parent / "benchmark") -> str:
    """The ``name`` (the results' ``benchmark``) of benchmark config ``option``: its own
    ``name``, else that of the config it extends (``roar_oppsd`` -> ``roar``)."""
    for _ in range(5):
        data = _read(root / f"{option}.yaml", yaml.safe_load)
        if isinstance(data.get("name"), str):
            return data["name"]
        bases = [d for d in data.get("defaults") or [] if isinstance(d, str) and d != "_self_"]
        if not bases:
            break
        option = bases[0]
    return option


def expected_benchmarks(spec: Mapping[str, Any]) -> list[str]:
    """The benchmarks (their names in the results) an experiment file runs: its ``override
    /benchmark`` default and the ``benchmark`` values of its sweep."""
    names: list[str] = []
    for entry in spec.get("defaults") or []:
        if isinstance(entry, Mapping):
            for key, value in entry.items():
                if str(key).lstrip("+").replace("override ", "").strip() == "/benchmark":
                    names.append(str(value))
    params = ((spec.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
    swept = params.get("benchmark") if isinstance(params, Mapping) else None
    if swept:
        names = [n.strip() for n in str(swept).split(",")]
    return list(dict.fromkeys(benchmark_name(n) for n in names))


def _read(path: Path, load: Any) -> dict[str, Any]:
    try:
        data = load(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _scalars(node: Any, prefix: str = "") -> dict[str, Any]:
    """The scalar settings of a config node by dotted key (lists and ``methods`` left out)."""
    if not isinstance(node, Mapping):
        return {} if isinstance(node, list) or not prefix else {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if not prefix and key in SKIPPED_KEYS:
            continue
        out.update(_scalars(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def add_run_conditions(table: pd.DataFrame, runs: Mapping[str, Run]) -> pd.DataFrame:
    """Add a column per scalar ``benchmark.<key>`` that differs between the runs of one
    benchmark on one model and dataset (a setting that follows the setup, e.g. ``hog_cell:
    auto`` resolved per model, adds nothing to the ``model`` and ``dataset`` columns)."""
    table, created = table.copy(), set()
    for bench, part in table.groupby("benchmark", sort=False):
        dirs = list(dict.fromkeys(part["run_dir"]))
        setup = {
            d: tuple(part.loc[part["run_dir"] == d, ["model", "dataset"]].iloc[0]) for d in dirs
        }
        settings = {d: _scalars(runs[d].config.get("benchmark")) for d in dirs}
        for key in dict.fromkeys(k for s in settings.values() for k in s):
            text = {d: json.dumps(settings[d].get(key), default=str) for d in dirs}
            if all(len({text[d] for d in dirs if setup[d] == k}) < 2 for k in set(setup.values())):
                continue
            column = key.rsplit(".", 1)[-1]
            if column in table and column not in created:
                column = key  # our rows already have that column: keep the dotted name
            created.add(column)
            mask = table["benchmark"] == bench
            values = {d: settings[d].get(key) for d in dirs}
            table.loc[mask, column] = table.loc[mask, "run_dir"].map(values)
    return table


def unit_factors(
    table: pd.DataFrame, paper: pd.DataFrame, figure: Mapping[str, Any]
) -> dict[str, float]:
    """metric -> factor of our values: ``figure.factor``, else 100 where the paper's unit of
    that metric reads as percent or ``x 100`` and our values lie in [-1, 1]."""
    given = figure.get("factor")
    if isinstance(given, int | float) and not isinstance(given, bool):
        return {str(m): float(given) for m in table.get("metric", pd.Series(dtype=str)).unique()}
    if isinstance(given, Mapping):
        return {str(k): float(v) for k, v in given.items()}
    factors = {}
    for metric, rows in paper.groupby("metric"):
        if not any(PERCENT.search(str(u)) for u in rows["unit"]):
            continue
        ours = pd.to_numeric(table.loc[table["metric"] == metric, "value"], errors="coerce")
        finite = ours[ours.map(lambda v: math.isfinite(v))]
        if len(finite) and finite.abs().max() <= 1.0:
            factors[str(metric)] = 100.0
    return factors


def load_experiment(
    name: str, outputs: str | Path, scale: str, root: Path = EXPERIMENT_DIR
) -> ExperimentData:
    """Experiment ``name`` with our stored results at ``scale`` under ``outputs`` (an empty
    table where nothing finished).

    Raises:
        UserInputError: the experiment file cannot be read.
    """
    spec = read_experiment(name, root)
    try:
        block = reported(name, root)
    except UserInputError:
        block = {}
    results_dir = Path(outputs) / scale / name
    table = load_all(results_dir) if results_dir.is_dir() else pd.DataFrame()
    runs: dict[str, Run] = {}
    if len(table):
        table = table[table["metric"] != "applicable"].reset_index(drop=True)
        for run_dir in dict.fromkeys(table["run_dir"]):
            path = results_dir / run_dir
            config = _read(path / CONFIG_FILE, yaml.safe_load)
            runs[run_dir] = Run(path, config, _read(path / SUMMARY_FILE, json.loads))
        table = add_run_conditions(table, runs)
        table["value"] = pd.to_numeric(table["value"], errors="coerce")
    figure = spec.get("figure") if isinstance(spec.get("figure"), Mapping) else {}
    factors = unit_factors(table, paper_table(block), figure or {}) if len(table) else {}
    for metric, factor in factors.items():
        table.loc[table["metric"] == metric, "value"] *= factor
    return ExperimentData(name, spec, block, table, runs, factors, results_dir)


def method_param(data: ExperimentData, label: str, param: str) -> float | None:
    """The value of explainer parameter ``param`` of the method labelled ``label``: from the
    runs' resolved method specs (``config.yaml``), else from the label (``G=16``,
    ``groups=16``, ``theta: 70``)."""
    for run in data.runs.values():
        for spec in run.config.get("resolved_methods") or []:
            if not isinstance(spec, Mapping) or spec.get("label") != label:
                continue
            explainer = (spec.get("config") or {}).get("explainer") or {}
            for source in (spec.get("params") or {}, explainer):
                value = _number(source.get(param)) if isinstance(source, Mapping) else None
                if value is not None:
                    return value
    return label_param(label, param)


def label_param(label: str, param: str) -> float | None:
    """``param``'s number written in a label (``groupcam(groups=16)``, ``G=16``, ``θ: 70``)."""
    match = re.search(rf"(?<![A-Za-z]){re.escape(param)}\s*[=:]\s*(-?[\d.]+(?:e-?\d+)?)", label)
    return _number(match.group(1)) if match else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
