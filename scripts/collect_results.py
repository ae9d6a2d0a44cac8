"""Gather every finished run under an outputs folder into one tidy CSV (for figure scripts).

Usage: python scripts/collect_results.py [outputs] [--benchmark NAME] [--out results_all.csv]
"""

from __future__ import annotations

import argparse

from xai_bench.results.store import load_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("outputs", nargs="?", default="outputs")
    parser.add_argument("--benchmark", default=None)
    parser.add_argument("--out", default=None, help="CSV path; prints a summary if omitted")
    args = parser.parse_args()
    table = load_all(args.outputs, args.benchmark)
    if args.out:
        table.to_csv(args.out, index=False)
        print(f"{len(table)} rows -> {args.out}")
    elif table.empty:
        print(f"no finished runs under {args.outputs}")
    else:
        keys = ["experiment", "benchmark", "model", "dataset", "method", "metric"]
        print(table.groupby(keys)["value"].mean().to_string())


if __name__ == "__main__":
    main()
