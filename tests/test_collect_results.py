"""scripts/collect_results.py and load_all: every row, a run_dir, grouped per variant/condition."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd

from xai_bench.results.store import load_all

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "collect_results.py"
BASE = {"experiment": "e", "benchmark": "pixel_perturbation", "model": "m", "dataset": "d"}
B2 = {"method": "gradcampp(layer=B2)", "method_config": "gradcampp", "method_hash": "0123456789"}
B3 = {"method": "gradcampp(layer=B3)", "method_config": "gradcampp", "method_hash": "1e23456789"}


def _script():
    spec = importlib.util.spec_from_file_location("collect_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(root: Path, name: str, rows: list[dict], finished: bool = True) -> None:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(run_dir / "results.csv", index=False)
    if finished:
        (run_dir / "summary.json").write_text(json.dumps({"figures": []}))


def _auc_rows(variant: dict, values: list[float], **extra) -> list[dict]:
    return [
        {**BASE, **variant, "metric": "auc", "index": i, "value": v, **extra}
        for i, v in enumerate(values)
    ]


def _printed(root: Path, monkeypatch, capsys, *args: str) -> list[str]:
    """The lines ``collect_results.py root *args`` prints (run as a script, via sys.argv)."""
    monkeypatch.setattr("sys.argv", ["collect_results.py", str(root), *args])
    _script().main()
    return capsys.readouterr().out.splitlines()


def _grouped(root: Path) -> dict:
    out = _script().grouped(load_all(root))
    got = {(r.method, r.method_hash): (r.value, r.n) for r in out.itertuples()}
    assert len(got) == len(out)
    return got


def test_collect_keeps_every_row_with_its_run_dir(tmp_path, monkeypatch, capsys) -> None:
    _run(tmp_path, "x/one", _auc_rows(B2, [1.0, 3.0]) + _auc_rows(B3, [10.0, 30.0]))
    _run(tmp_path, "x/two", _auc_rows(B2, [5.0]))
    _run(tmp_path, "x/killed", _auc_rows(B3, [99.0]), finished=False)
    out = tmp_path / "all.csv"
    assert _printed(tmp_path, monkeypatch, capsys, "--out", str(out)) == [f"5 rows -> {out}"]
    table = pd.read_csv(out, dtype=str)
    assert len(table) == 5
    assert list(table.run_dir) == ["x/one"] * 4 + ["x/two"]
    assert set(table.method_hash) == {"0123456789", "1e23456789"}


def test_collect_groups_two_variants_of_one_run_apart(tmp_path, monkeypatch, capsys) -> None:
    _run(tmp_path, "one", _auc_rows(B2, [1.0, 3.0]) + _auc_rows(B3, [10.0, 30.0]))
    lines = _printed(tmp_path, monkeypatch, capsys)
    assert len(lines) == 3 and "method_hash" in lines[0]
    assert "gradcampp(layer=B2)" in lines[1] and "1e23456789" in lines[2]
    assert _grouped(tmp_path) == {
        ("gradcampp(layer=B2)", "0123456789"): (2.0, 2),
        ("gradcampp(layer=B3)", "1e23456789"): (20.0, 2),
    }


def test_collect_groups_variants_and_hashes_of_two_runs_apart(
    tmp_path, monkeypatch, capsys
) -> None:
    _run(tmp_path, "b2", _auc_rows(B2, [1.0, 3.0]))
    _run(tmp_path, "b3", _auc_rows(B3, [10.0, 30.0]))
    _run(tmp_path, "b3_relabelled", _auc_rows({**B3, "method": B2["method"]}, [7.0]))
    _run(tmp_path, "old", _auc_rows({"method": "gradient"}, [4.0]))  # no hash columns
    lines = _printed(tmp_path, monkeypatch, capsys)
    assert sum("gradcampp(layer=B2)" in line for line in lines) == 2
    assert _grouped(tmp_path) == {
        ("gradcampp(layer=B2)", "0123456789"): (2.0, 2),
        ("gradcampp(layer=B3)", "1e23456789"): (20.0, 2),
        ("gradcampp(layer=B2)", "1e23456789"): (7.0, 1),
        ("gradient", ""): (4.0, 1),
    }


def test_collect_groups_conditions_and_experiments_apart(tmp_path) -> None:
    _run(tmp_path, "a", _auc_rows(B2, [1.0, 3.0], stage="s1", fraction=0.1)
         + _auc_rows(B2, [5.0], stage="s2", fraction=0.1)
         + _auc_rows(B2, [7.0], stage="s1", fraction=0.5))  # fmt: skip
    _run(tmp_path, "b", _auc_rows(B2, [2.0], stage="s1", fraction=0.1, tolerance=15))
    _run(tmp_path, "c", [{**r, "experiment": "other"} for r in _auc_rows(B2, [9.0])])
    out = _script().grouped(load_all(tmp_path))
    got = {
        (r.experiment, r.stage, r.fraction, r.tolerance): (r.value, r.n) for r in out.itertuples()
    }
    assert got == {
        ("e", "s1", "0.1", ""): (2.0, 2),
        ("e", "s2", "0.1", ""): (5.0, 1),
        ("e", "s1", "0.5", ""): (7.0, 1),
        ("e", "s1", "0.1", "15"): (2.0, 1),
        ("other", "", "", ""): (9.0, 1),
    }
    assert "index" not in out and "run_dir" not in out
