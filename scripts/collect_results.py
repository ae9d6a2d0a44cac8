"""Gather every finished run under an outputs folder into one tidy CSV (for figure scripts).

The CSV keeps every row of every run plus a ``run_dir`` column (the run's folder). Without
``--out`` a summary is printed instead: the mean and count of ``value`` per experiment,
benchmark, model, dataset, method (label, config and hash), metric and condition (see
``xai_bench.results.summary.condition_columns``), never averaged across any of them.

Usage: python scripts/collect_results.py [outputs] [--benchmark NAME] [--out results_all.csv]
"""

from __future__ import annotations

import argparse

import pandas as pd

from xai_bench.results.store import load_all
from xai_bench.results.summary import condition_means

KEYS = [
    "experiment", "benchmark", "model", "dataset", "method", "method_config", "method_hash",
    "metric",
]  # fmt: skip


def grouped(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ``value`` and count ``n`` per :data:`KEYS` and condition of a collected table."""
    return condition_means(table, KEYS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("outputs", nargs="?", default="outputs")
    parser.add_argument("--benchmark", default=None)
    parser.add_argument("--out", default=None, help="CSV path; prints a summary if omitted")
    args = parser.parse_args(argv)
    table = load_all(args.outputs, args.benchmark)
    if args.out:
        table.to_csv(args.out, index=False)
        print(f"{len(table)} rows -> {args.out}")
    elif table.empty:
        print(f"no finished runs under {args.outputs}")
    else:
        with pd.option_context("display.max_rows", None, "display.width", None):
            print(grouped(table).to_string(index=False))


if __name__ == "__main__":
    main()
