"""The papers' experiments: one file per figure or table, at two scales.

A paper experiment is ``xai_bench/configs/experiment/<paper>/<result>.yaml`` (e.g.
``experiment=oppsd/fig2a_sanity``). Its top level is the paper's protocol: the paper's
``setup`` (model, weights, dataset), image counts, method variants with labels and its sweep in
``hydra.sweeper.params``. Two blocks describe the rest:

``scales``
    ``paper`` and ``embedded``, each with ``overrides`` (command-line overrides added when the
    run asks for that scale, e.g. ``setup=resnet8_shapes`` and a smaller ``benchmark.n_images``)
    and, for ``paper``, ``gpu_hours`` (the expected cost of the whole sweep).
``reported``
    the paper's numbers: ``source`` (figure or table), ``scale`` (what the paper ran), ``unit``,
    and ``values``, a list of ``{method, metric, value}`` rows with optional conditions (e.g.
    ``stage``, ``fraction``, ``subset``) and their own ``unit``; ``values: []`` with a ``note``
    where the paper gives figures only.

Hydra cannot pick config-group options by a value, so the scale is applied on the command
line: :func:`expand_argv` reads ``scale=`` (default ``embedded``) and adds that scale's
overrides before the user's, leaving out every key the user gives. ``xai-bench`` calls it
before Hydra parses the arguments; :func:`scale_overrides` is the same for ``compose()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from xai_bench.utils.configs import CONFIG_DIR
from xai_bench.utils.errors import UserInputError

SCALES = ("embedded", "paper")
DEFAULT_SCALE = "embedded"
EXPERIMENT_DIR = Path(CONFIG_DIR) / "experiment"
#: keys of a row of ``reported.values`` that are not conditions
ROW_KEYS = ("method", "metric", "value", "unit")


def paper_experiments(root: Path = EXPERIMENT_DIR) -> list[str]:
    """Names of the paper experiments (``<paper>/<result>``), sorted."""
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.glob("*/*.yaml"))


def experiment_file(name: str, root: Path = EXPERIMENT_DIR) -> Path:
    """The file of experiment ``name`` (``oppsd/fig2a_sanity`` or ``embedded``)."""
    path = root / f"{name}.yaml"
    if not path.is_file():
        raise UserInputError(f"experiment={name}: no file {path}")
    return path


def read_experiment(name: str, root: Path = EXPERIMENT_DIR) -> dict[str, Any]:
    """The raw YAML of an experiment file (no composition, no interpolation)."""
    with experiment_file(name, root).open() as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise UserInputError(f"experiment={name}: the file is not a mapping")
    return data


def is_paper_experiment(name: str, root: Path = EXPERIMENT_DIR) -> bool:
    """Whether ``name`` is a paper experiment (it has a ``scales`` block)."""
    path = root / f"{name}.yaml"
    return path.is_file() and "scales" in read_experiment(name, root)


def _key(override: str) -> str:
    """The key an override sets (``+a.b=1`` -> ``a.b``; ``hydra/launcher=x`` as it is)."""
    return override.split("=", 1)[0].lstrip("+~")


def scale_overrides(
    name: str, scale: str = DEFAULT_SCALE, given: Iterable[str] = (), root: Path = EXPERIMENT_DIR
) -> list[str]:
    """The overrides that ``scale`` adds to experiment ``name``, without the keys in ``given``
    (the user's own overrides win). Empty for experiments without a ``scales`` block.

    Raises:
        UserInputError: an unknown scale, or a paper experiment without that scale.
    """
    if scale not in SCALES:
        raise UserInputError(f"scale must be one of {', '.join(SCALES)}, got '{scale}'")
    data = read_experiment(name, root)
    scales = data.get("scales")
    if not scales:
        return []
    if scale not in scales:
        raise UserInputError(f"experiment={name} has no scale '{scale}'; it has {list(scales)}")
    taken = {_key(o) for o in given}
    overrides = [str(o) for o in (scales[scale] or {}).get("overrides", []) or []]
    return [o for o in overrides if _key(o) not in taken]


def _value(argv: Sequence[str], key: str) -> str | None:
    for arg in argv:
        if not arg.startswith("-") and _key(arg) == key and "=" in arg:
            return arg.split("=", 1)[1]
    return None


def expand_argv(argv: Sequence[str], root: Path = EXPERIMENT_DIR) -> list[str]:
    """``argv`` (without the program name) with the chosen scale's overrides of a paper
    experiment put before the user's overrides; other command lines are returned unchanged.

    Raises:
        UserInputError: a sweep over several experiments when one of them is a paper
            experiment (each has its own scale overrides: run them one at a time, as
            ``make reproduce`` does), or a bad scale.
    """
    argv = list(argv)
    experiment = _value(argv, "experiment")
    scale = _value(argv, "scale") or DEFAULT_SCALE
    if experiment is None or experiment in ("null", ""):
        return argv
    names = [n.strip() for n in experiment.split(",")]
    if len(names) > 1:
        if any(is_paper_experiment(n, root) for n in names):
            raise UserInputError(
                f"experiment={experiment}: sweep paper experiments one at a time (each has its "
                "own scale overrides); `make reproduce` runs them all"
            )
        return argv
    if not (root / f"{names[0]}.yaml").is_file():
        return argv  # Hydra reports the unknown option with the list of choices
    if not is_paper_experiment(names[0], root):
        if _value(argv, "scale") is not None:
            raise UserInputError(
                f"scale={scale} applies to paper experiments (experiment=<paper>/<result>), "
                f"not to experiment={names[0]}"
            )
        return argv
    at = next(i for i, a in enumerate(argv) if not a.startswith("-") and _key(a) == "experiment")
    given = [a for a in argv if not a.startswith("-")]
    return argv[:at] + scale_overrides(names[0], scale, given, root) + argv[at:]


def reported(name: str, root: Path = EXPERIMENT_DIR) -> dict[str, Any]:
    """The ``reported`` block of a paper experiment, checked: ``source``, ``scale`` and
    ``unit`` are text, ``values`` is a list of rows with ``method``, ``metric`` and a numeric
    ``value``; an empty list needs a ``note``."""
    block = read_experiment(name, root).get("reported")
    where = f"experiment={name}: reported"
    if not isinstance(block, dict):
        raise UserInputError(f"{where} is missing or not a mapping")
    for key in ("source", "scale", "unit"):
        if not isinstance(block.get(key), str) or not block[key].strip():
            raise UserInputError(f"{where}.{key} must be a non-empty text")
    rows = block.get("values")
    if not isinstance(rows, list):
        raise UserInputError(f"{where}.values must be a list")
    if not rows and not block.get("note"):
        raise UserInputError(f"{where}: an empty values list needs a note (e.g. figures only)")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not {"method", "metric", "value"} <= set(row):
            raise UserInputError(f"{where}.values[{i}] needs method, metric and value: {row}")
        if isinstance(row["value"], bool) or not isinstance(row["value"], int | float):
            raise UserInputError(f"{where}.values[{i}].value must be a number: {row}")
    return block
