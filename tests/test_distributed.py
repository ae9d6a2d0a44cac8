"""Data-parallel evaluation: Lightning DDP over 2 CPU processes (gloo) equals one process.

The end-to-end tests go through the CLI in a subprocess, because Lightning's launcher starts
rank 1 by re-running the command line. Each run has 9 images in batches of 2: 5 batches (the
last with one image) over 2 ranks, so rank 0 computes batches 0, 2, 4 and rank 1 batches 1, 3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from xai_bench.run import run
from xai_bench.utils import distributed
from xai_bench.utils.configs import CONFIG_DIR
from xai_bench.utils.distributed import distributed_map, global_rank, is_distributed

REPO = Path(__file__).resolve().parent.parent
N_IMAGES, BATCH = 9, 2  # 5 batches: 3 on rank 0, 2 on rank 1
TINY = (
    "model.weights=random", "model.net.widths=[4,8,8]", "device=cpu",
    "dataset.datamodule.n_test=48", f"benchmark.n_images={N_IMAGES}",
    f"benchmark.batch_size={BATCH}", "benchmark.methods=[gradient,random]",
)  # fmt: skip
CASES = {  # benchmark -> extra overrides
    "pixel_perturbation": (),
    "pointing_game": ("dataset=shapes_multi", "benchmark.tolerance=4"),
    "sanity_checks": ("benchmark.hog_cell=8",),
}
# (method, stage) jobs per batch: sanity_checks 2 methods x 6 stages (original + 5 ResNet-8
# blocks); pointing_game 2 methods + the centre baseline
JOBS = {"sanity_checks": 12, "pointing_game": 3}


def xai_bench(*args: str, root: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    ranks = ("HYDRA_FULL_ERROR", "LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "SLURM_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ranks)}  # a local launch
    env.update(XAI_BENCH_ROOT=str(root), XAI_BENCH_DATA=str(root / "data"))
    return subprocess.run(
        [sys.executable, "-m", "xai_bench", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def run_dir(root: Path) -> Path:
    (results,) = (root / "outputs").rglob("results.csv")
    return results.parent


# ---------------------------------------------------------------------------- single process


def test_distributed_map_single_process_skips_done_items_in_order() -> None:
    calls: list[int] = []
    distributed_map([4, 0, 3, 1, 2], calls.append, done=lambda i: i in (0, 1))
    assert calls == [4, 3, 2]
    for preset in (None, {}, {"accelerator": "cpu", "devices": 1, "strategy": "auto"}):
        calls.clear()
        distributed_map(range(3), calls.append, preset)
        assert calls == [0, 1, 2]


@pytest.mark.parametrize(
    ("preset", "expected"),
    [("auto", False), ("cpu", False), ("gpu", False), ("ddp", True), ("ddp_cpu", True)],
)
def test_is_distributed_on_the_trainer_presets(preset: str, expected: bool) -> None:
    node = OmegaConf.load(Path(CONFIG_DIR) / "trainer" / f"{preset}.yaml")
    assert is_distributed(OmegaConf.to_container(node)) is expected  # type: ignore[arg-type]


def test_is_distributed_edge_cases_and_rank_from_the_environment(monkeypatch) -> None:
    assert not is_distributed(None) and not is_distributed({})
    assert not is_distributed({"strategy": "ddp", "devices": 1})
    assert is_distributed({"strategy": "ddp", "devices": 1, "num_nodes": 2})
    assert is_distributed({"strategy": "ddp_find_unused_parameters_true", "devices": [0, 1]})
    assert not is_distributed({"strategy": "auto", "devices": 4})
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert global_rank() == 0 and distributed.is_global_zero()
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert global_rank() == 3 and not distributed.is_global_zero()


# ---------------------------------------------------------------------------- 2 processes


@pytest.mark.parametrize("name", list(CASES))
def test_ddp_on_two_cpu_processes_equals_one_process(name, make_cfg, tmp_path, monkeypatch):
    args = (f"benchmark={name}", *TINY, *CASES[name])
    res = xai_bench(*args, "trainer=ddp_cpu", root=tmp_path / "ddp")
    assert res.returncode == 0, res.stderr[-3000:]
    ddp = run_dir(tmp_path / "ddp")
    rank1 = (ddp / "train_ddp_process_1.log").read_text()  # rank 1's Hydra log: 2 processes
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in rank1

    single = run(make_cfg(*args, "trainer=cpu"), tmp_path / "single")  # the reference
    a, b = pd.read_csv(ddp / "results.csv"), pd.read_csv(tmp_path / "single" / "results.csv")
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=0, atol=1e-6)
    summary = json.loads((ddp / "summary.json").read_text())
    assert summary["n_images"] == single["n_images"] == N_IMAGES
    if name in JOBS:  # rank 0 computed batches 0, 2, 4 and read 1, 3 back from rank 1
        n = JOBS[name]
        assert (summary["chunks_computed"], summary["chunks_loaded"]) == (3 * n, 2 * n)
        assert (single["chunks_computed"], single["chunks_loaded"]) == (5 * n, 0)

    if name == "pixel_perturbation":  # one AUC row per image and method: nothing twice, none lost
        auc = a[a.metric == "auc"]
        assert sorted(auc.groupby("method").size()) == [N_IMAGES, N_IMAGES]
        assert not auc.duplicated(["method", "index"]).any()
    elif name == "sanity_checks":  # one row per (method, stage, metric, image)
        assert (a.groupby(["method", "stage", "metric"]).image.nunique() == N_IMAGES).all()
        assert len(a) == 2 * 6 * 4 * N_IMAGES

        # resumption: an unfinished DDP run (no summary) finds every chunk and starts no process
        def no_trainer(*_, **__):
            raise AssertionError("a finished run must not start Lightning")

        monkeypatch.setattr(distributed.pl, "Trainer", no_trainer)
        same = (*args, "trainer=ddp_cpu", f"paths.root_dir={tmp_path / 'ddp'}")
        (ddp / "summary.json").unlink()
        again = run(make_cfg(*same), ddp)
        assert again["chunks_computed"] == 0 and again["chunks_loaded"] == 5 * JOBS[name]
        pd.testing.assert_frame_equal(pd.read_csv(ddp / "results.csv"), a)
    else:  # pointing_game: every (image, class) pair once per method
        pairs = a[(a.metric == "hit_rate")].set_index("method").n
        assert pairs["random"] == pairs["gradient"] == pairs["center"] == single["n_pairs"]


def test_local_multirun_with_ddp_is_refused(tmp_path) -> None:
    args = ("benchmark=pixel_perturbation", *TINY)
    res = xai_bench("-m", "trainer=ddp_cpu", "seed=0,1", *args, root=tmp_path)
    assert res.returncode == 2
    errors = [line for line in res.stderr.splitlines() if line.startswith("xai-bench: error:")]
    assert len(errors) == 1 and "trainer=ddp_cpu" in errors[0] and "-m" in errors[0]
    assert "Traceback" not in res.stderr
    assert not list((tmp_path / "outputs").rglob("results.csv"))
