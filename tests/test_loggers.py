"""Loggers (issue 15): the ``logger`` group logs the trainings' curves and every run's headline
metrics and figures; neither it nor ``verbose`` changes a key or a run folder; Lightning's
banners show only with ``verbose=true``."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from xai_bench.run import run
from xai_bench.utils.configs import CONFIG_DIR
from xai_bench.utils.errors import UserInputError
from xai_bench.utils.loggers import headline_metrics, wandb_logger
from xai_bench.utils.verbosity import lightning_is_quiet, quiet_lightning
from xai_bench.workspace import Workspace

REPO = Path(__file__).resolve().parent.parent
TRAIN = (
    "benchmark=train", "model.net.widths=[4,8,8]", "dataset.datamodule.n_train=64",
    "dataset.datamodule.n_val=16", "dataset.datamodule.n_test=16", "train.max_epochs=1",
    "train.batch_size=32", "trainer=cpu", "benchmark.progress=false",
)  # fmt: skip
OVERVIEW = (
    "model.weights=random", "model.net.widths=[4,8,8]", "dataset.datamodule.n_train=32",
    "dataset.datamodule.n_val=16", "dataset.datamodule.n_test=16", "benchmark=overview",
    "benchmark.n_figure=4",
)  # fmt: skip
#: Lightning's banners and noise (issue 15, point 1)
NOISE = ("GPU available", "TPU available", "💡 Tip", "LOCAL_RANK", "HPU available",
         "LeafSpec", "weights_only", "Loading `train_dataloader`", "v_num")  # fmt: skip


def logs(folder: Path) -> Path:
    return folder / "logs" / "version_0"


def test_csv_logs_training_curves_and_the_runs_headline_metrics(make_cfg, tmp_path) -> None:
    out = run(make_cfg(*TRAIN), tmp_path / "run")  # logger=csv is the default
    curves = pd.read_csv(logs(Path(out["checkpoint"])) / "metrics.csv")
    assert {"val/acc", "test/acc", "epoch", "step"} <= set(curves.columns)
    assert curves["test/acc"].dropna().iloc[-1] == pytest.approx(out["test_acc"])
    row = pd.read_csv(logs(tmp_path / "run") / "metrics.csv")
    assert len(row) == 1 and row["step"].iloc[0] == 0
    for key in ("test_acc", "val_acc", "test_loss", "epochs"):
        assert row[key].iloc[0] == pytest.approx(out[key]), key
    assert "reused" not in row  # a boolean, not a metric


def test_headline_metrics_are_the_summarys_top_level_numbers() -> None:
    summary = {"gradcam/auc": 0.5, "n": 3, "reused": True, "nonfinite": {"a": 1}, "x": [1.0]}
    assert headline_metrics(summary) == {"gradcam/auc": 0.5, "n": 3.0}


def test_tensorboard_holds_curves_metrics_and_figures(make_cfg, tmp_path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def events(folder: Path) -> EventAccumulator:
        assert list(folder.glob("events.out.tfevents.*")), f"no event file in {folder}"
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        return acc

    out = run(make_cfg(*TRAIN, "logger=tensorboard"), tmp_path / "train")
    training = events(logs(Path(out["checkpoint"])))
    assert {"val/acc", "test/acc"} <= set(training.Tags()["scalars"])
    assert training.Scalars("test/acc")[-1].value == pytest.approx(out["test_acc"], abs=1e-6)
    headline = events(logs(tmp_path / "train"))
    assert headline.Scalars("test_acc")[0].value == pytest.approx(out["test_acc"], abs=1e-6)
    assert headline.Scalars("test_acc")[0].step == 0

    overview = run(make_cfg(*OVERVIEW, "logger=tensorboard"), tmp_path / "overview")
    acc = events(logs(tmp_path / "overview"))
    assert acc.Scalars("accuracy")[0].value == pytest.approx(overview["accuracy"], abs=1e-6)
    names = [Path(f).name for f in overview["figures"]]
    assert names and set(names) <= set(acc.Tags()["images"])
    image = acc.Images(names[0])[0]
    assert image.width > 100 and image.height > 100 and image.encoded_image_string


def test_logger_choice_changes_no_result_key_or_run_folder(make_cfg, tmp_path) -> None:
    first = run(make_cfg(*OVERVIEW), tmp_path / "r")
    folder = logs(tmp_path / "r")
    assert pd.read_csv(folder / "metrics.csv")["accuracy"].iloc[0] == first["accuracy"]
    assert "samples.png" in (folder / "hparams.yaml").read_text()  # csv: the figures' paths
    for other in (("logger=none", "verbose=true"), ("+trainer.logger=false",)):
        again = run(make_cfg(*OVERVIEW, *other), tmp_path / "r")
        assert again["cached"] is True, other  # the finished results are reused

    def folder_name(*overrides: str) -> str:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("run", overrides=["seed=3", *overrides], return_hydra_config=True)
        return cfg.hydra.job.override_dirname

    assert folder_name() == "seed=3"
    for overrides in (("logger=tensorboard",), ("logger=wandb", "verbose=true"),
                      ("logger=none", "+trainer.logger=false")):  # fmt: skip
        assert folder_name(*overrides) == "seed=3", overrides


def test_trainer_logger_false_is_honoured_and_other_values_refused(make_cfg, tmp_path) -> None:
    out = run(make_cfg(*TRAIN, "+trainer.logger=false"), tmp_path / "r")  # no crash
    assert (Path(out["checkpoint"]) / "model.pt").is_file()
    assert not (Path(out["checkpoint"]) / "logs").exists()  # no training logger
    assert (logs(tmp_path / "r") / "metrics.csv").is_file()  # the run's own logger still logs
    with pytest.raises(UserInputError, match=r"^trainer.logger must be true or false, got 'tb'"):
        run(make_cfg(*TRAIN, "+trainer.logger=tb"), tmp_path / "bad")
    with pytest.raises(UserInputError, match=r"^verbose must be true or false, got 1"):
        run(make_cfg(*TRAIN, "verbose=1"), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_wandb_without_the_package_fails_at_once_naming_the_extra(tmp_path) -> None:
    with pytest.raises(UserInputError, match=r"pip install -e '\.\[wandb\]'"):
        wandb_logger(save_dir=tmp_path)  # also outside the command line
    ranks = ("HYDRA_FULL_ERROR", "LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "SLURM_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ranks)}
    env.update(XAI_BENCH_ROOT=str(tmp_path), XAI_BENCH_DATA=str(tmp_path / "data"))
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "xai_bench", "logger=wandb", "benchmark=train"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    errors = [line for line in res.stderr.splitlines() if line.startswith("xai-bench: error:")]
    assert res.returncode == 2 and len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "logger=wandb needs the wandb package" in errors[0] and "[wandb]" in errors[0]
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in res.stderr.splitlines() if "|" in ln}
    assert "torch" not in imported  # refused before anything heavy is imported
    assert not (tmp_path / "outputs").exists()


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _training_output(make_cfg, capsys, run_dir: Path, *overrides: str) -> str:
    """Everything a tiny training (with its progress bar) prints, logs and warns."""
    handler = _Lines()
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning_fabric")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run(make_cfg(*TRAIN, "benchmark.progress=true", *overrides), run_dir)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    out = capsys.readouterr()
    return "\n".join([out.out, out.err, *handler.lines, *(str(w.message) for w in caught)])


def test_lightning_banners_show_only_with_verbose(make_cfg, capsys, tmp_path) -> None:
    was_quiet = lightning_is_quiet()
    try:
        quiet = _training_output(make_cfg, capsys, tmp_path / "quiet")
        assert "Epoch 0" in quiet  # the progress bar itself still shows
        assert [s for s in NOISE if s in quiet] == []
        again = ("verbose=true", "force=true")  # force: trains again
        verbose = _training_output(make_cfg, capsys, tmp_path / "verbose", *again)
        shown = [s for s in NOISE if s in verbose]
        assert {"GPU available", "TPU available", "💡 Tip", "weights_only", "v_num"} <= set(shown)
    finally:
        quiet_lightning(was_quiet)


@pytest.mark.parametrize("name", ["csv", "tensorboard", "wandb", "none"])
def test_logger_options_compose_into_factories(make_cfg, tmp_path, name: str) -> None:
    """Every option of the group builds its factory without its package (opened per folder)."""
    ws = Workspace(make_cfg(f"logger={name}"), tmp_path)
    if name == "none":
        assert ws.make_logger is None and ws.training_logger is None
    else:
        assert callable(ws.make_logger) and ws.training_logger is ws.make_logger
    off = Workspace(make_cfg(f"logger={name}", "+trainer.logger=false"), tmp_path)
    assert off.training_logger is None and "logger" not in off.trainer_kwargs
