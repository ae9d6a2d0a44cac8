"""``make reproduce``: every paper experiment (``experiment=<paper>/<result>``) at one scale.

Usage: python scripts/reproduce.py [--scale embedded|paper] [--only TEXT] [--jobs 2]
       [--launcher slurm] [--outputs outputs] [override ...]
"""

import sys

from xai_bench.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
