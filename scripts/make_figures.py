"""Draw the figure of every paper experiment (``xai_bench/configs/experiment/<paper>/<result>``)
from its stored results, with the paper's numbers beside ours; nothing is computed.

Writes <out>/<scale>/<paper>/<result>.png (+ .md: our numbers beside the paper's) and
<out>/<scale>/index.md, which lists every experiment: drawn, or MISSING with the command that
computes it. Exit status 1 only when a figure failed to draw.

Usage: python scripts/make_figures.py [--scale embedded|paper] [--outputs outputs]
                                      [--out outputs/figures] [--experiment <paper>/<result> ...]
                                      [--formats png,pdf]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xai_bench.experiments import SCALES
from xai_bench.viz.formats import figure_formats
from xai_bench.viz.paper_figures import make_figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="embedded", choices=SCALES)
    parser.add_argument("--outputs", default="outputs", help="the runs' outputs folder")
    parser.add_argument("--out", default="outputs/figures", help="where the figures go")
    parser.add_argument(
        "--experiment", action="append", help="only these (repeatable; index.md is not rewritten)"
    )
    parser.add_argument(
        "--formats", default="png", help="comma-separated files per figure: png,pdf,svg (png first)"
    )
    args = parser.parse_args()
    with figure_formats(args.formats.split(",")):
        entries = make_figures(args.outputs, args.scale, args.out, names=args.experiment)
    for e in entries:
        what = ", ".join(str(f) for f in e.files) if e.status == "drawn" else e.command
        print(f"{e.status.upper():8} {e.name}: {what}" + (f" ({e.note})" if e.note else ""))
    index = Path(args.out) / args.scale / "index.md"
    drawn = sum(e.status == "drawn" for e in entries)
    where = f"index: {index}" if not args.experiment else "index.md left as it is (--experiment)"
    print(f"{drawn} of {len(entries)} experiments drawn; {where}")
    return 1 if any(e.status == "failed" for e in entries) else 0


if __name__ == "__main__":
    sys.exit(main())
