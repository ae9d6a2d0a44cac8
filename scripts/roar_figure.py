"""Draw the ROAR curves (one line per method) of every finished ROAR run under an outputs folder,
e.g. a SLURM sweep with one job per (method, fraction, seed).

Usage: python scripts/roar_figure.py outputs/<experiment> [--out roar_all.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from xai_bench.results.store import load_all
from xai_bench.viz.roar import roar_curves


def distinct_labels(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows whose method label names several configs across runs (another ``method_hash``)
    get ``label [hash]`` labels, so that different variants are never averaged together."""
    if "method_hash" not in rows:
        return rows
    hashes = rows.groupby("method")["method_hash"].nunique()
    clash = rows["method"].isin(hashes[hashes > 1].index)
    rows = rows.copy()
    short = rows.loc[clash, "method_hash"].astype(str).str[:6]
    rows.loc[clash, "method"] = rows.loc[clash, "method"] + " [" + short + "]"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("outputs")
    parser.add_argument("--out", default=None, help="figure path (default: <outputs>/roar.png)")
    args = parser.parse_args()
    table = load_all(args.outputs, benchmark="roar")
    if table.empty:
        raise SystemExit(f"no finished ROAR run under {args.outputs}")
    for (model, data), rows in table.groupby(["model", "dataset"]):
        rows = distinct_labels(rows)
        out = Path(args.out or Path(args.outputs) / f"roar_{model}_{data}.png")
        path = roar_curves(rows, out, identity={"model": model, "dataset": data})
        acc = rows[rows.metric == "test_acc"].pivot_table(
            index="fraction", columns="method", values="value", aggfunc="mean"
        )
        print(f"{model} on {data}: test accuracy after retraining\n{acc.round(4)}\n-> {path}")


if __name__ == "__main__":
    main()
