"""What the runs of an experiment actually used: setup, model, weights, dataset, image count and
device, read from each finished run's ``config.yaml`` (and Hydra's ``overrides.yaml``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from xai_bench.report.model import RunSetup
from xai_bench.results.store import CONFIG_FILE, SUMMARY_FILE

#: benchmark keys that count the images a run evaluates, the first one present wins
IMAGE_KEYS = ("n_images", "n_samples", "max_images", "n_pairs", "limit")


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return None


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, Mapping):
            return None
        tree = tree.get(key)
    return tree


def _setup_of(overrides: Sequence[Any]) -> str | None:
    for item in overrides:
        text = str(item)
        if text.lstrip("+~").startswith("setup="):
            return text.split("=", 1)[1]
    return None


def default_setup(spec: Mapping[str, Any], scale: str) -> str:
    """The setup an experiment file asks for at ``scale``: its scale's ``setup=`` override,
    else its ``override /setup`` default ("" when neither)."""
    chosen = _setup_of(_get(spec, "scales", scale, "overrides") or [])
    if chosen:
        return chosen
    for item in spec.get("defaults") or []:
        if isinstance(item, Mapping):
            for key, value in item.items():
                if str(key).split()[-1].strip("/") == "setup":
                    return str(value)
    return ""


def run_setup(run_dir: Path, fallback_setup: str = "") -> RunSetup:
    """The :class:`RunSetup` of one run folder ("?" where its config does not say)."""
    config = _load(run_dir / CONFIG_FILE) or {}
    hydra_overrides = _load(run_dir / ".hydra" / "overrides.yaml") or []
    summary = _load(run_dir / SUMMARY_FILE) or {}  # JSON is YAML
    images = next((v for k in IMAGE_KEYS if (v := _get(config, "benchmark", k)) is not None), None)
    device = summary.get("device") if isinstance(summary, Mapping) else None
    return RunSetup(
        setup=_setup_of(hydra_overrides) or fallback_setup or "?",
        model=str(_get(config, "model", "name") or "?"),
        weights=str(_get(config, "model", "weights") or "?"),
        dataset=str(_get(config, "dataset", "name") or "?"),
        images="?" if images is None else str(images),
        device=str(device or config.get("device") or "?"),
    )


def run_setups(run_dirs: Sequence[Path], fallback_setup: str = "") -> list[RunSetup]:
    """The distinct setups of ``run_dirs`` with how many runs used each, in order of first use."""
    counts = Counter(run_setup(d, fallback_setup) for d in run_dirs)
    return [
        RunSetup(s.setup, s.model, s.weights, s.dataset, s.images, s.device, runs=n)
        for s, n in counts.items()
    ]
