"""summary.csv / summary.md: means per benchmark, method and condition over finished runs."""

from __future__ import annotations

import json
import math

import pandas as pd

from xai_bench.results.summary import long_summary, write_summary


def _run(root, name, rows, figures=(), headline=None) -> None:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(run_dir / "results.csv", index=False)
    for f in figures:
        (run_dir / f).write_bytes(b"\x89PNG")
    summary = {"figures": [str(run_dir / f) for f in figures]}  # absolute, as older runs wrote
    if headline is not None:
        summary["headline"] = headline
    (run_dir / "summary.json").write_text(json.dumps(summary))


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
    # directions from the benchmark (no headline in summary.json), mean ± std (n) per cell
    assert "| output_change ↓ fraction=0.1 | 2 ± 1.4 (n=2) |" in text and "| auc ↓ | 0.25 |" in text
    assert "![curve](a/curve.png)" in text and "| x" not in text


# Two variants of one method config: distinct labels and hashes. The hashes look like numbers
# to a CSV reader (leading zero, exponent) and must come back as written.
B2 = {"method": "gradcampp(layer=B2)", "method_config": "gradcampp", "method_hash": "0123456789"}
B3 = {"method": "gradcampp(layer=B3)", "method_config": "gradcampp", "method_hash": "1e23456789"}
BASE = {"experiment": "e", "benchmark": "pixel_perturbation", "model": "m", "dataset": "d"}


def _auc_rows(variant, values, **extra) -> list[dict]:
    return [
        {**BASE, **variant, "metric": "auc", "image": i, "target": 3, "value": v, **extra}
        for i, v in enumerate(values)
    ]


def _rows(long: pd.DataFrame, metric: str = "auc") -> dict:
    """(label, hash) -> (value, n) of one metric; fails on a duplicate key."""
    part = long[long.metric == metric]
    got = {(r.method, r.method_hash): (r.value, r.n) for r in part.itertuples()}
    assert len(got) == len(part)
    return got


def test_summary_keeps_two_variants_of_one_run_apart(tmp_path) -> None:
    _run(tmp_path, "run", _auc_rows(B2, [1.0, 3.0]) + _auc_rows(B3, [10.0, 30.0]))
    write_summary(tmp_path)
    long = pd.read_csv(tmp_path / "summary.csv", dtype=str, keep_default_na=False)
    assert len(long) == 2
    assert list(long.method_config) == ["gradcampp", "gradcampp"]
    assert list(long.method_hash) == ["0123456789", "1e23456789"]
    assert list(zip(long.method, long.value.astype(float), long.n.astype(int))) == [
        ("gradcampp(layer=B2)", 2.0, 2),
        ("gradcampp(layer=B3)", 20.0, 2),
    ]
    text = (tmp_path / "summary.md").read_text()
    assert "| metric | gradcampp(layer=B2) | gradcampp(layer=B3) |" in text
    assert "| auc ↓ | 2 ± 1.4 (n=2) | 20 ± 14 (n=2) |" in text


def test_summary_keeps_variants_of_two_runs_apart(tmp_path) -> None:
    _run(tmp_path, "b2", _auc_rows(B2, [1.0, 3.0]))
    _run(tmp_path, "b3", _auc_rows(B3, [10.0, 30.0]))
    _run(tmp_path, "b2_again", _auc_rows(B2, [5.0]))  # the same variant: averaged with "b2"
    long, _ = long_summary(tmp_path)
    assert _rows(long) == {
        ("gradcampp(layer=B2)", "0123456789"): (3.0, 3),
        ("gradcampp(layer=B3)", "1e23456789"): (20.0, 2),
    }


def test_summary_keeps_one_label_with_two_hashes_apart(tmp_path) -> None:
    label = "GradCAM++ B2"
    _run(tmp_path, "a", _auc_rows({**B2, "method": label}, [1.0]))
    _run(tmp_path, "b", _auc_rows({**B3, "method": label}, [7.0]))
    _run(tmp_path, "c", _auc_rows({"method": "gradient"}, [4.0]))  # an old run: no hash columns
    long, _ = long_summary(tmp_path)
    assert _rows(long) == {
        (label, "0123456789"): (1.0, 1),
        (label, "1e23456789"): (7.0, 1),
        ("gradient", ""): (4.0, 1),
    }
    text = write_summary(tmp_path)[1].read_text()
    assert "| metric | GradCAM++ B2#012345 | GradCAM++ B2#1e2345 | gradient |" in text
    assert "| auc ↓ | 1 | 7 | 4 |" in text


def test_summary_keeps_conditions_and_new_condition_columns_apart(tmp_path) -> None:
    base = {**BASE, "benchmark": "sanity_checks", **B2, "metric": "ssim", "seed": 0}
    rows = [
        {**base, "stage": "logits", "fraction": 0.1, "image": 0, "value": 1.0},
        {**base, "stage": "logits", "fraction": 0.1, "image": 1, "value": 3.0},  # averaged
        {**base, "stage": "conv", "fraction": 0.1, "image": 0, "value": 5.0},
        {**base, "stage": "logits", "fraction": 0.5, "image": 0, "value": 7.0},
    ]
    _run(tmp_path, "a", rows)
    # A later run adds a condition column nobody knew about: its values stay apart too.
    _run(tmp_path, "b", [{**r, "tolerance": t} for r, t in zip(rows[:2], (15, 0.5))])
    long, _ = long_summary(tmp_path)
    got = {(r.stage, r.fraction, r.tolerance): (r.value, r.n) for r in long.itertuples()}
    assert got == {
        ("logits", "0.1", ""): (2.0, 2),
        ("conv", "0.1", ""): (5.0, 1),
        ("logits", "0.5", ""): (7.0, 1),
        ("logits", "0.1", "15"): (1.0, 1),
        ("logits", "0.1", "0.5"): (3.0, 1),
    }
    assert "image" not in long and set(long.seed) == {"0"}
    text = write_summary(tmp_path)[1].read_text()
    assert "Same for all rows: seed=0." in text
    assert "| ssim ↓ stage=logits fraction=0.1 | 2 ± 1.4 (n=2) |" in text
    assert "| ssim ↓ stage=logits fraction=0.1 tolerance=15 | 1 |" in text


def test_summary_headline_and_arrows_from_summary_json(tmp_path) -> None:
    base = {**BASE, "benchmark": "pointing_game"}
    rows = [
        {**base, "method": meth, "metric": metric, "value": value}
        for meth in ("zeta", "alpha")
        for metric, value in (("accuracy", 0.5), ("hit_rate", 0.25), ("degenerate_rate", 0.0))
    ]
    _run(tmp_path, "a", rows, headline={"accuracy": True, "hit_rate": None, "auc": False})
    _run(tmp_path, "b", _auc_rows(B2, [1.0]), headline={"auc": False})
    text = write_summary(tmp_path)[1].read_text()
    assert "| metric | zeta | alpha |" in text  # methods in their order of appearance
    assert "| accuracy ↑ | 0.5 | 0.5 |" in text and "| hit_rate | 0.25 | 0.25 |" in text
    assert "degenerate_rate" not in text  # not a headline metric of this run
    assert "| auc ↓ | 1 |" in text
    long = pd.read_csv(tmp_path / "summary.csv")
    assert long.groupby("metric").headline.first().to_dict() == {
        "accuracy": True, "auc": True, "degenerate_rate": False, "hit_rate": True,
    }  # fmt: skip
