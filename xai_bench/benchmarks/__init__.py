"""Benchmarks: each is one module plus ``xai_bench/configs/benchmark/<name>.yaml``."""
