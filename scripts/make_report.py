"""Write outputs/report/report.md and a self-contained outputs/report/report.html: for every
paper experiment at one scale, our numbers beside the paper's, the figure of `make figures`,
the scale it ran at and a verdict per claim. Reads stored results only; exits 0 when nothing ran.

Usage: python scripts/make_report.py [--scale embedded|paper] [--outputs outputs] [--out DIR]
"""

from __future__ import annotations

import argparse

from xai_bench.experiments import DEFAULT_SCALE, SCALES
from xai_bench.report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default=DEFAULT_SCALE, choices=SCALES)
    parser.add_argument("--outputs", default="outputs", help="the outputs folder")
    parser.add_argument("--out", default=None, help="the report folder (<outputs>/report)")
    args = parser.parse_args()
    md, page = write_report(args.scale, args.outputs, args.out)
    print(f"report: {md}\nreport (one file, figures inside): {page}")


if __name__ == "__main__":
    main()
