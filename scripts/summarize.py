"""Write summary.csv and summary.md (headline metrics per benchmark, methods as columns, mean ±
std (n) per cell, and each run's figures embedded with paths relative to summary.md) for every
finished run under an outputs folder, and print the markdown.

Numbers are means per experiment, benchmark, model, dataset, metric, method variant (label,
config, hash) and condition (stage, fraction, seed...; see
``xai_bench.results.summary.condition_columns``), never across them.

Usage: python scripts/summarize.py [outputs/embedded]
"""

from __future__ import annotations

import argparse

from xai_bench.results.summary import write_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("outputs", nargs="?", default="outputs/embedded")
    args = parser.parse_args()
    csv_path, md_path = write_summary(args.outputs)
    print(md_path.read_text())
    print(f"summary table: {csv_path}\nsummary with figures: {md_path}")


if __name__ == "__main__":
    main()
