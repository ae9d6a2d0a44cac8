"""Nothing lost, nothing stale: force recomputes, inputs are keyed by their contents, corrupt
files are detected and recomputed, results and config are written together, strays are swept.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from xai_bench.results.partial import PARTIAL_DIR
from xai_bench.results.store import RunStore
from xai_bench.run import run
from xai_bench.utils.integrity import read_checked_csv, write_checked_csv
from xai_bench.workspace import Workspace

TINY = (
    "model.weights=random", "model.net.widths=[4,8,8]", "dataset.datamodule.n_test=16",
    "benchmark=pixel_perturbation", "benchmark.n_images=4", "benchmark.batch_size=2",
    "benchmark.methods=[gradient]",
)  # fmt: skip


def chunks(run_dir: Path) -> list[Path]:
    return sorted((run_dir / PARTIAL_DIR).rglob("*.chunk"))


def auc(run_dir: Path) -> pd.Series:
    table = pd.read_csv(run_dir / "results.csv")
    return table[table.metric == "auc"].value.reset_index(drop=True)


def test_force_recomputes_every_chunk_instead_of_loading_it(make_cfg, tmp_path) -> None:
    first = run(make_cfg(*TINY), tmp_path / "r")
    assert first["chunks_computed"] == 2 and first["chunks_loaded"] == 0
    original = auc(tmp_path / "r")
    chunk = chunks(tmp_path / "r")[0]
    edited = read_checked_csv(chunk)
    edited.loc[edited.metric == "auc", "value"] = 12345.0
    write_checked_csv(chunk, edited)  # a valid chunk with a wrong number

    (tmp_path / "r" / "summary.json").unlink()  # an unfinished run loads its chunks ...
    resumed = run(make_cfg(*TINY), tmp_path / "r")
    assert resumed["chunks_loaded"] == 2 and (auc(tmp_path / "r") == 12345.0).any()
    forced = run(make_cfg(*TINY, "force=true"), tmp_path / "r")  # ... a forced one does not
    assert forced["cached"] is False and forced["chunks_computed"] == 2
    assert forced["chunks_loaded"] == 0
    pd.testing.assert_series_equal(auc(tmp_path / "r"), original)


def test_a_truncated_chunk_is_reported_and_recomputed(make_cfg, tmp_path, caplog) -> None:
    run(make_cfg(*TINY), tmp_path / "r")
    original = pd.read_csv(tmp_path / "r" / "results.csv")
    chunk = chunks(tmp_path / "r")[1]
    chunk.write_bytes(chunk.read_bytes()[:-40])  # cut short, as by a full disk
    (tmp_path / "r" / "summary.json").unlink()
    with caplog.at_level(logging.WARNING):
        again = run(make_cfg(*TINY), tmp_path / "r")
    assert "corrupt chunk" in caplog.text and chunk.name in caplog.text
    assert (again["chunks_computed"], again["chunks_loaded"]) == (1, 1)
    assert again["n_images"] == 4
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "r" / "results.csv"), original)


def test_edited_results_are_detected_and_recomputed(make_cfg, tmp_path, caplog) -> None:
    first = run(make_cfg(*TINY), tmp_path / "r")
    results = tmp_path / "r" / "results.csv"
    original = results.read_text()
    results.write_text(original.replace("pixel_perturbation", "edited", 1))
    with caplog.at_level(logging.WARNING, logger="xai_bench.run"):
        again = run(make_cfg(*TINY), tmp_path / "r")
    assert "does not match the checksum" in caplog.text
    assert again["cached"] is False and again["chunks_loaded"] == first["chunks_computed"]
    assert results.read_text() == original


def test_config_is_written_only_with_its_results(make_cfg, tmp_path, monkeypatch) -> None:
    """A forced run that fails leaves the earlier results and their config together; a later
    plain run with the new config recomputes instead of returning the old numbers."""
    from xai_bench.benchmarks import pixel_perturbation as pp

    run(make_cfg(*TINY), tmp_path / "r")
    files = {n: (tmp_path / "r" / n).read_bytes() for n in ("config.yaml", "results.csv")}

    def fail(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(pp.PixelPerturbation, "score", fail)
    changed = (*TINY, "benchmark.n_images=2", "force=true")
    with pytest.raises(RuntimeError, match="killed"):
        run(make_cfg(*changed), tmp_path / "r")
    assert {n: (tmp_path / "r" / n).read_bytes() for n in files} == files
    assert RunStore(tmp_path / "r").done
    monkeypatch.undo()
    later = run(make_cfg(*TINY, "benchmark.n_images=2"), tmp_path / "r")
    assert later["cached"] is False and later["n_images"] == 2
    assert "n_images: 2" in (tmp_path / "r" / "config.yaml").read_text()


def test_summary_is_strict_json_with_checksums(tmp_path) -> None:
    store = RunStore(tmp_path)
    store.save(pd.DataFrame({"value": [1.0]}), {"x": math.nan, "y": [math.inf, 1.0]}, "a: 1\n")

    def refuse(token: str) -> None:
        raise ValueError(f"bare {token} in summary.json")

    summary = json.loads((tmp_path / "summary.json").read_text(), parse_constant=refuse)
    assert summary["x"] is None and summary["y"] == [None, 1.0]
    assert set(summary["files"]) == {"results.csv", "config.yaml"} and store.done
    (tmp_path / "summary.json").write_text(json.dumps({**summary, "x": 0.5}))
    assert "checksum mismatch" in str(store.problem())
    (tmp_path / "summary.json").write_text(json.dumps(summary)[:-5])
    assert "not valid JSON" in str(store.problem()) and not store.done


def test_replaced_weights_file_is_never_reused(make_cfg, tmp_path) -> None:
    """Same path, new contents: the results and every chunk are recomputed."""
    from xai_bench.models.small import ResNet8

    weights = tmp_path / "net.pt"
    torch.manual_seed(1)
    torch.save(ResNet8(num_classes=8, widths=(4, 8, 8)).state_dict(), weights)
    args = (*TINY[1:], f"model.weights={weights}")
    first = run(make_cfg(*args), tmp_path / "r")
    again = run(make_cfg(*args), tmp_path / "r")
    assert again["cached"] is True
    torch.manual_seed(2)
    torch.save(ResNet8(num_classes=8, widths=(4, 8, 8)).state_dict(), weights)
    (tmp_path / "r" / "summary.json").unlink()  # even an unfinished run does not reuse chunks
    replaced = run(make_cfg(*args), tmp_path / "r")
    assert replaced["chunks_computed"] == 2 and replaced["chunks_loaded"] == 0
    assert replaced["gradient/auc"] != first["gradient/auc"]
    assert run(make_cfg(*args), tmp_path / "r")["cached"] is True


def test_dataset_folder_and_flag_files_are_keyed_by_contents(make_cfg, tmp_path) -> None:
    """A real dataset's folder is keyed by its file list, sizes and mtimes; a file named by the
    benchmark (a subset flag file) by its bytes."""
    for i, rgb in enumerate([(255, 0, 0), (0, 0, 255)]):
        folder = tmp_path / "data" / "imagenet" / "val" / f"n0000000{i}"
        folder.mkdir(parents=True)
        Image.new("RGB", (40, 30), rgb).save(folder / "a.JPEG")
    flags = tmp_path / "flags.txt"
    flags.write_text("a.JPEG\t1\n")
    cfg = make_cfg(
        "dataset=imagenet", f"paths.data_dir={tmp_path / 'data'}",
        "benchmark=pointing_game", f"benchmark.subset_flags={flags}",
    )  # fmt: skip
    inputs = Workspace(cfg, tmp_path / "r").inputs()
    assert list(inputs["data"]) == [str(tmp_path / "data" / "imagenet")]
    assert list(inputs["benchmark"]) == [str(flags)] and len(inputs["benchmark"][str(flags)]) == 64
    same = Workspace(cfg, tmp_path / "r").inputs()
    assert same == inputs
    Image.new("RGB", (40, 30), (0, 255, 0)).save(
        tmp_path / "data" / "imagenet" / "val" / "n00000001" / "b.JPEG"
    )
    flags.write_text("a.JPEG\t0\n")
    changed = Workspace(cfg, tmp_path / "r").inputs()
    assert changed["data"] != inputs["data"] and changed["benchmark"] != inputs["benchmark"]


def test_stray_temporary_files_of_dead_writers_are_removed(make_cfg, tmp_path) -> None:
    import socket
    import subprocess

    gone = subprocess.Popen(["true"])  # a writer that has exited
    gone.wait()
    run_dir = tmp_path / "r"
    (run_dir / PARTIAL_DIR).mkdir(parents=True)
    stray = run_dir / PARTIAL_DIR / f".x.chunk.{gone.pid}@{socket.gethostname()}.abc123.tmp"
    live = run_dir / f".results.csv.{os.getpid()}@{socket.gethostname()}.q.tmp"  # running
    stray.write_text("half")
    live.write_text("being written")
    run(make_cfg(*TINY), run_dir)
    assert not stray.exists() and live.exists()


def test_force_keeps_the_base_checkpoint_and_force_all_retrains_it(make_cfg, tmp_path) -> None:
    args = (
        *TINY[1:], "model.weights=trained", "dataset.datamodule.n_train=64",
        "dataset.datamodule.n_val=16", "train.max_epochs=1", "train.batch_size=32",
    )  # fmt: skip
    run(make_cfg(*args), tmp_path / "r")
    ckpt = Workspace(make_cfg(*args), tmp_path / "r").checkpoint_dir / "model.pt"
    stamp = ckpt.stat().st_mtime_ns
    forced = run(make_cfg(*args, "force=true"), tmp_path / "r")
    assert forced["chunks_computed"] == 2 and ckpt.stat().st_mtime_ns == stamp
    everything = run(make_cfg(*args, "force=all"), tmp_path / "r")
    assert everything["chunks_computed"] == 2 and ckpt.stat().st_mtime_ns != stamp
    assert json.loads((ckpt.parent / "metrics.json").read_text())["resumed_from"] == 0
    assert everything["gradient/auc"] == forced["gradient/auc"]  # same seed, same weights
