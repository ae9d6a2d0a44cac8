"""run(): finished results are reused; a changed config is reported and recomputed, never mixed."""

from __future__ import annotations

import logging

from xai_bench.run import run

TINY = (
    "model.weights=random", "model.net.widths=[4,8,8]", "dataset.datamodule.n_train=32",
    "dataset.datamodule.n_val=16", "dataset.datamodule.n_test=16", "benchmark=overview",
    "benchmark.n_figure=4",
)  # fmt: skip


def test_rerun_reuses_and_recomputes_on_changed_config(make_cfg, tmp_path, caplog) -> None:
    first = run(make_cfg(*TINY), tmp_path / "r")
    assert first["cached"] is False
    with caplog.at_level(logging.WARNING, logger="xai_bench.run"):
        again = run(make_cfg(*TINY), tmp_path / "r")
    assert again["cached"] is True and again["accuracy"] == first["accuracy"]
    assert "different config" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="xai_bench.run"):
        changed = run(make_cfg(*TINY, "benchmark.n_figure=8"), tmp_path / "r")
    assert changed["cached"] is False  # never a stale number
    assert "different config or input files (benchmark differ)" in caplog.text
    again = run(make_cfg(*TINY, "benchmark.n_figure=8"), tmp_path / "r")
    assert again["cached"] is True
    forced = run(make_cfg(*TINY, "benchmark.n_figure=8", "force=true"), tmp_path / "r")
    assert forced["cached"] is False
