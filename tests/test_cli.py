"""The command line: help, clear errors for typos and missing data, and a submitit sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def xai_bench(*args: str, root: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "XAI_BENCH_ROOT": str(root), "XAI_BENCH_DATA": str(root / "data")}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "xai_bench", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_help_lists_groups(tmp_path) -> None:
    res = xai_bench("--help", root=tmp_path)
    assert res.returncode == 0
    for line in ("model: ", "dataset: ", "method: ", "benchmark: ", "trainer: ", "experiment: "):
        assert line in res.stdout
    assert "vit_b16" in res.stdout and "shapes_multi" in res.stdout


def test_unknown_group_option_is_reported(tmp_path) -> None:
    res = xai_bench("model=resnet9", root=tmp_path)
    assert res.returncode != 0
    assert "Could not find 'model/resnet9'" in res.stderr
    assert "resnet8" in res.stderr  # the available options are listed
    assert "Traceback" not in res.stderr


def test_typo_in_key_is_reported(tmp_path) -> None:
    res = xai_bench("model.net.widht=3", root=tmp_path)
    assert res.returncode == 2
    assert "unknown key 'model.net.widht': model.net has no key 'widht'" in res.stderr
    assert "widths" in res.stderr  # the valid keys at that level
    assert "Traceback" not in res.stderr


def test_missing_dataset_names_path(tmp_path) -> None:
    res = xai_bench("dataset=cifar10", "model.weights=random", root=tmp_path)
    assert res.returncode == 2
    assert "dataset 'cifar10' not found" in res.stderr
    assert str(tmp_path / "data") in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_method_list_and_unfit_dataset_are_one_line_errors(tmp_path) -> None:
    res = xai_bench("benchmark=gallery", "benchmark.methods=[gradient,gradcam_typo]",
                    "model.weights=random", root=tmp_path)  # fmt: skip
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "unknown method 'gradcam_typo'" in res.stderr and "gradcampp" in res.stderr
    res = xai_bench("model=mlp", "dataset=digits", "model.weights=random",
                    "benchmark=pointing_game", root=tmp_path)  # fmt: skip
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "dataset 'digits' has none" in res.stderr and "has_boxes" in res.stderr


def test_submitit_local_sweep_of_two_jobs_resumes(tmp_path) -> None:
    args = (
        "-m", "hydra/launcher=submitit_local", "model.weights=random", "model.net.widths=[4,8,8]",
        "dataset.datamodule.n_test=32", "seed=0,1",
    )  # fmt: skip
    res = xai_bench(*args, root=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    base = tmp_path / "outputs" / "default" / "overview" / "resnet8" / "shapes"  # no method folder
    runs = sorted(p.name for p in base.iterdir())
    assert len(runs) == 2 and runs[0].endswith("seed=0") and runs[1].endswith("seed=1")
    stamps = {}
    for name in runs:
        summary = json.loads((base / name / "summary.json").read_text())
        assert summary["n"] == 32
        stamps[name] = (base / name / "results.csv").stat().st_mtime_ns
    again = xai_bench(*args, root=tmp_path, timeout=600)
    assert again.returncode == 0
    for name in runs:  # the second submission recomputes nothing that finished
        assert (base / name / "results.csv").stat().st_mtime_ns == stamps[name]


def test_joblib_sweep_runs_one_folder_per_method_list(tmp_path) -> None:
    """``make roar``'s layout: Hydra's joblib launcher runs a sweep over method lists two at a
    time, one run folder (and one result table) per list."""
    args = (
        "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model.weights=random",
        "model.net.widths=[4,8,8]", "dataset.datamodule.n_test=32", "benchmark=pixel_perturbation",
        "benchmark.n_images=8", "benchmark.methods=[gradient],[random]",
    )  # fmt: skip
    res = xai_bench(*args, root=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    base = tmp_path / "outputs" / "default" / "pixel_perturbation" / "resnet8" / "shapes"
    assert sorted(p.name for p in base.iterdir()) == ["gradient", "random"]
    for method in ("gradient", "random"):
        (table,) = (base / method).glob("*/results.csv")  # one run folder per method list
        rows = table.read_text().splitlines()
        methods = {line.split(",")[5] for line in rows[1:]}
        assert methods == {method}, methods


@pytest.mark.parametrize("entry", [["-m", "xai_bench"]])
def test_module_entry_point_matches_console_script(tmp_path, entry) -> None:
    script = Path(sys.executable).parent / "xai-bench"
    res = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    mod = subprocess.run(
        [sys.executable, *entry, "--help"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == mod.returncode == 0
    assert res.stdout == mod.stdout


def test_submitit_local_roar_sweep_shares_maps_and_resumes(tmp_path) -> None:
    """A ROAR sweep (one job per fraction, as on SLURM) whose two concurrent jobs share one
    attribution cache; the resubmitted sweep recomputes nothing; the sweep figure script."""
    args = (
        "-m", "hydra/launcher=submitit_local", "benchmark=roar", "method=gradient",
        "benchmark.methods=[]", "benchmark.fractions=[0.2],[0.6]", "model.weights=random",
        "model.net.widths=[4,8,8]", "dataset.datamodule.n_train=96",
        "dataset.datamodule.n_val=32", "dataset.datamodule.n_test=32",
        "benchmark.recipe.max_epochs=1", "benchmark.train_limit=null",
        "benchmark.attribution_batch_size=16",
    )  # fmt: skip
    res = xai_bench(*args, root=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    outputs = tmp_path / "outputs"
    results = sorted(outputs.glob("default/roar/resnet8/shapes/gradient/*/results.csv"))
    assert len(results) == 2
    maps = sorted((outputs / "cache" / "attributions").rglob("saliency.npy"))
    assert len(maps) == 3  # train, val, test: shared by both jobs
    assert not list((outputs / "cache" / "attributions").rglob("shards"))
    stamps = [p.stat().st_mtime_ns for p in results + maps]
    again = xai_bench(*args, root=tmp_path, timeout=600)
    assert again.returncode == 0
    assert [p.stat().st_mtime_ns for p in results + maps] == stamps
    fig = subprocess.run(
        [sys.executable, "scripts/roar_figure.py", str(outputs / "default")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert fig.returncode == 0, fig.stderr
    assert "0.2" in fig.stdout and "0.6" in fig.stdout
    assert (outputs / "default" / "roar_resnet8_shapes.png").stat().st_size > 5_000
