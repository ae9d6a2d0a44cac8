"""Every paper experiment (found by globbing ``experiment/<paper>/*.yaml``) runs end to end at
embedded scale, every job of its sweep, on a tiny image count and a random-weight model: the
config composes as ``xai-bench -m experiment=<paper>/<result>`` composes it, the benchmark runs
and writes its results where ``make figures`` and ``make report`` read them."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from xai_bench import reproduce
from xai_bench.experiments import paper_experiments
from xai_bench.results.store import RunStore
from xai_bench.run import run

#: benchmark keys set to tiny values where a benchmark has them
TINY_BENCHMARK = {
    "n_images": 2, "batch_size": 2, "attribution_batch_size": 4, "train_limit": 8,
    "repeats": 1, "warmup": 0, "fractions": "[0.5]", "seeds": "[0]", "n_inputs": 4,
    "n_figure": 2, "crafted_index": 0,
}  # fmt: skip
TINY_RECIPE = {"max_epochs": 1, "batch_size": 4}
TINY_DATA = {"n_train": 16, "n_val": 8, "n_test": 8}


def tiny_overrides(cfg: DictConfig) -> list[str]:
    """Overrides that shrink one composed job: random weights, a few images, one epoch."""
    out = ["model.weights=random", "device=cpu", "threads=1"]
    bench = cfg.benchmark
    for key, value in TINY_BENCHMARK.items():
        if key in bench and bench[key] is not None:
            out.append(f"benchmark.{key}={value}")
    for node in ("recipe",):
        if OmegaConf.select(bench, node) is not None:
            out += [f"benchmark.{node}.{k}={v}" for k, v in TINY_RECIPE.items()]
    dm = OmegaConf.select(cfg, "dataset.datamodule") or {}
    out += [f"dataset.datamodule.{k}={v}" for k, v in TINY_DATA.items() if k in dm]
    return out


@pytest.mark.parametrize("name", paper_experiments())
def test_embedded_experiment_runs_end_to_end(name: str, tmp_path: Path) -> None:
    base = [f"paths.root_dir={tmp_path}"]
    jobs = reproduce.sweep_jobs(name, "embedded", base)
    assert jobs, name
    for job in jobs:
        cfg, _ = reproduce.compose_job(job)
        cfg, run_dir = reproduce.compose_job([*job, *tiny_overrides(cfg)])
        assert run_dir.is_relative_to(tmp_path / "outputs" / "embedded" / name)
        summary = run(cfg, run_dir)
        assert summary["cached"] is False
        store = RunStore(run_dir)
        assert store.done, (name, job, store.problem())
        assert len(store.table()) > 0
