"""summary.csv / summary.md: means per benchmark, method and condition over finished runs."""

from __future__ import annotations

import json
import math

import pandas as pd

from xai_bench.results.summary import long_summary, write_summary


def _run(root, name, rows, figures=()) -> None:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(run_dir / "results.csv", index=False)
    (run_dir / "summary.json").write_text(
        json.dumps({"figures": [str(run_dir / f) for f in figures]})
    )


def test_summary_means_conditions_and_skips_unfinished(tmp_path) -> None:
    base = {"benchmark": "pixel_perturbation", "model": "m", "dataset": "d"}
    _run(tmp_path, "a", [
        {**base, "method": "gradient", "metric": "output_change", "fraction": 0.1, "value": 1.0},
        {**base, "method": "gradient", "metric": "output_change", "fraction": 0.1, "value": 3.0},
        {**base, "method": "gradient", "metric": "output_change", "fraction": 0.5, "value": 5.0},
        {**base, "method": "gradient", "metric": "auc", "fraction": math.nan, "value": 0.25},
    ], figures=["curve.png"])  # fmt: skip
    (tmp_path / "unfinished").mkdir()
    pd.DataFrame([{**base, "method": "x", "metric": "auc", "value": 9.0}]).to_csv(
        tmp_path / "unfinished" / "results.csv", index=False
    )
    long, figures = long_summary(tmp_path)
    got = {(r.metric, r.fraction): (r.value, r.n) for r in long.itertuples()}
    assert got == {
        ("output_change", "0.1"): (2.0, 2),
        ("output_change", "0.5"): (5.0, 1),
        ("auc", ""): (0.25, 1),
    }
    assert figures == [str(tmp_path / "a" / "curve.png")]
    _, md = write_summary(tmp_path)
    text = md.read_text()
    assert "| output_change fraction=0.1 | 2 |" in text and "| auc | 0.25 |" in text
    assert "a/curve.png" in text and "| x" not in text
