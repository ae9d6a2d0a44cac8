"""Paper experiments at two scales, and ``make reproduce``: the scale's overrides reach the
command line, sweeps expand as Hydra's, finished results are found without a subprocess, a
changed input is recomputed, and ``scale=paper`` names every missing file in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xai_bench import reproduce
from xai_bench.experiments import (
    expand_argv,
    is_paper_experiment,
    paper_experiments,
    reported,
    scale_overrides,
)
from xai_bench.run import run
from xai_bench.utils.errors import UserInputError

FIG2A = "oppsd/fig2a_sanity"
#: a tiny, random-weight version of FIG2A's embedded job (no training)
TINY = ["model.weights=random", "benchmark.n_images=2", "benchmark.batch_size=2",
        "benchmark.methods=[gradient,random]", "dataset.datamodule.n_test=4",
        "dataset.datamodule.n_val=4", "dataset.datamodule.n_train=4", "device=cpu"]  # fmt: skip


def write(root: Path, name: str, data: dict) -> None:
    path = root / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# @package _global_\n" + yaml.safe_dump(data))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An experiment folder with one paper experiment and one plain experiment."""
    root = tmp_path / "experiment"
    write(root, "p/fig1", {
        "experiment_name": "x",
        "scales": {"paper": {"gpu_hours": 1, "overrides": []},
                   "embedded": {"overrides": ["setup=resnet8_shapes", "benchmark.n_images=4"]}},
        "reported": {"source": "Fig. 1", "scale": "ResNet-50", "unit": "AUC",
                     "values": [{"method": "gradcam", "metric": "insertion", "value": 63.06}]},
    })  # fmt: skip
    write(root, "plain", {"experiment_name": "y"})
    return root


def test_scale_overrides_come_before_the_users_and_never_replace_them(root: Path) -> None:
    argv = ["-m", "experiment=p/fig1", "seed=3"]
    assert expand_argv(argv, root) == [
        "-m", "setup=resnet8_shapes", "benchmark.n_images=4", "experiment=p/fig1", "seed=3",
    ]  # fmt: skip
    mine = expand_argv(["experiment=p/fig1", "benchmark.n_images=64"], root)
    assert mine == ["setup=resnet8_shapes", "experiment=p/fig1", "benchmark.n_images=64"]
    assert expand_argv(["experiment=p/fig1", "scale=paper"], root) == [
        "experiment=p/fig1", "scale=paper",
    ]  # fmt: skip
    assert expand_argv(["experiment=plain", "seed=1"], root) == ["experiment=plain", "seed=1"]
    assert expand_argv(["--cfg", "job", "experiment=p/fig1"], root)[:3] == [
        "--cfg", "job", "setup=resnet8_shapes",
    ]  # fmt: skip


def test_bad_scale_uses_are_refused(root: Path) -> None:
    with pytest.raises(UserInputError, match="scale must be one of"):
        expand_argv(["experiment=p/fig1", "scale=huge"], root)
    with pytest.raises(UserInputError, match="applies to paper experiments"):
        expand_argv(["experiment=plain", "scale=paper"], root)
    with pytest.raises(UserInputError, match="one at a time"):
        expand_argv(["-m", "experiment=p/fig1,plain"], root)


def test_reported_numbers_are_checked(root: Path) -> None:
    block = reported("p/fig1", root)
    assert block["values"][0] == {"method": "gradcam", "metric": "insertion", "value": 63.06}
    for broken, match in (
        ({"source": "T", "scale": "s", "unit": "u", "values": [{"method": "a", "value": 1}]},
         "needs method, metric and value"),
        ({"source": "T", "scale": "s", "unit": "u", "values": []}, "needs a note"),
        ({"source": "T", "scale": "s", "unit": "u",
          "values": [{"method": "a", "metric": "m", "value": "high"}]}, "must be a number"),
        ({"scale": "s", "unit": "u", "values": []}, "source"),
    ):  # fmt: skip
        write(root, "p/bad", {"scales": {"paper": {}}, "reported": broken})
        with pytest.raises(UserInputError, match=match):
            reported("p/bad", root)


def test_every_paper_experiment_has_both_scales_and_valid_numbers() -> None:
    names = paper_experiments()
    assert FIG2A in names
    for name in names:
        assert is_paper_experiment(name), name
        for scale in ("embedded", "paper"):
            scale_overrides(name, scale)
        reported(name)


def test_sweep_jobs_expand_the_scale_and_the_command_line() -> None:
    jobs = reproduce.sweep_jobs(FIG2A, "embedded", ["seed=0,1"])
    assert len(jobs) == 2
    assert all("setup=resnet8_shapes" in job and "benchmark.n_images=16" in job for job in jobs)
    assert {j[-1] for j in jobs} == {"seed=0", "seed=1"}
    assert reproduce.sweep_jobs(FIG2A, "paper") == [[f"experiment={FIG2A}", "scale=paper"]]


def test_finished_jobs_are_found_without_running_and_a_changed_input_reruns(
    tmp_path: Path,
) -> None:
    extra = [f"paths.root_dir={tmp_path}", *TINY]
    (job,) = reproduce.sweep_jobs(FIG2A, "embedded", extra)
    cfg, run_dir = reproduce.compose_job(job)
    assert run_dir.is_relative_to(tmp_path / "outputs" / "embedded" / "oppsd" / "fig2a_sanity")
    assert "scale=" not in run_dir.name and "setup=" not in run_dir.name
    assert len(reproduce.unfinished_jobs(FIG2A, "embedded", extra)) == 1
    run(cfg, run_dir)
    assert reproduce.unfinished_jobs(FIG2A, "embedded", extra) == []
    changed = reproduce.unfinished_jobs(FIG2A, "embedded", [*extra, "benchmark.std=0.02"])
    assert len(changed) == 1


def test_make_reproduce_skips_finished_experiments_without_a_subprocess(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    extra = [f"paths.root_dir={tmp_path}", *TINY]
    (job,) = reproduce.sweep_jobs(FIG2A, "embedded", extra)
    run(*reproduce.compose_job(job))
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: pytest.fail("ran a subprocess"))
    outputs = tmp_path / "outputs"
    assert reproduce.main(["--only", FIG2A, "--outputs", str(outputs), *extra]) == 0
    out = capsys.readouterr().out
    assert f"cached   {FIG2A}" in out and "1 of 1 experiments up to date" in out


def test_paper_scale_lists_every_missing_file_in_one_line(tmp_path: Path) -> None:
    env = {"TORCH_HOME": str(tmp_path / "hub"), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "xai_bench", f"experiment={FIG2A}", "scale=paper",
         f"paths.root_dir={tmp_path}"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("xai-bench: error")]
    assert len(lines) == 1
    assert "resnet50-0676ba61.pth" in lines[0] and "dataset 'imagenet'" in lines[0]
    assert not (tmp_path / "outputs").exists()


def test_composed_configs_are_cached_and_an_edited_config_file_changes_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import hydra
    from omegaconf import OmegaConf

    from xai_bench.utils.configs import CONFIG_DIR

    job = reproduce.sweep_jobs(FIG2A, "embedded", TINY)[0]
    fresh = reproduce.compose_config(job)
    monkeypatch.setattr(reproduce, "COMPOSE_CACHE", tmp_path / "compose")
    assert OmegaConf.to_yaml(reproduce.compose_config(job)) == OmegaConf.to_yaml(fresh)
    assert len(list((tmp_path / "compose").glob("*.pkl"))) == 1
    monkeypatch.setattr(hydra, "compose", lambda *a, **k: pytest.fail("composed again"))
    again = reproduce.compose_config(job)  # from the cache: Hydra is not called
    assert OmegaConf.to_yaml(again) == OmegaConf.to_yaml(fresh)
    # a new process has no `${hydra:...}` resolver until Hydra composes: the cache registers it
    expected_dir = Path(str(reproduce.compose_job(job)[1]))
    OmegaConf.clear_resolver("hydra")
    assert reproduce.compose_job(job)[1] == expected_dir
    # the key covers every byte of the config tree
    tree = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, tree)
    before = reproduce.configs_digest(tree)
    assert before == reproduce.configs_digest(Path(CONFIG_DIR))
    path = tree / "benchmark" / "sanity_checks.yaml"
    path.write_text(path.read_text() + "\n# edited\n")
    assert reproduce.configs_digest(tree) != before


def test_saved_configs_read_back_fast_as_omegaconf_reads_them(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from xai_bench.run import saved_config
    from xai_bench.utils.plain_yaml import as_saved, load_plain_yaml
    from xai_bench.workspace import Workspace

    extra = [f"paths.root_dir={tmp_path}", *TINY]
    cfg, run_dir = reproduce.compose_job(reproduce.sweep_jobs(FIG2A, "embedded", extra)[0])
    new = saved_config(cfg, Workspace(cfg, run_dir))
    new["odd"] = {"t": (1, 2), "p": tmp_path, "f": 1e-3, "s": "2026-12-01", "i": "${seed}"}
    expected = OmegaConf.to_container(OmegaConf.create(new), resolve=False)
    expected["odd"]["p"] = str(tmp_path)  # a Path is saved as its text
    assert as_saved(new) == expected
    del new["odd"]["p"]
    path = tmp_path / "config.yaml"
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(new)))
    assert load_plain_yaml(path) == OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    assert load_plain_yaml(path)["odd"] == {"t": [1, 2], "f": 1e-3, "s": "2026-12-01",
                                            "i": "${seed}"}  # fmt: skip


def test_paper_scale_asks_for_the_published_weights_a_fine_tune_starts_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    missing = reproduce.missing_inputs("oppsd/fig4_roar", "paper")
    vit = [m for m in missing if "vit_base_patch16_224" in m]
    assert len(vit) == 1 and "train.init=scratch, benchmark.init=scratch" in vit[0]
    assert any("data/cifar-100-python" in m for m in missing)
    # random inputs and random weights: the efficiency figure reads no file at all
    assert reproduce.missing_inputs("oppsd/fig6_efficiency", "paper") == []
