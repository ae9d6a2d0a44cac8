"""``python -m xai_bench ...`` is the same as the ``xai-bench`` console script."""

from xai_bench.cli import main

if __name__ == "__main__":
    main()
