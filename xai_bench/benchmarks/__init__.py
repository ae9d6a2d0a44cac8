"""Benchmarks: each is one module plus ``configs/benchmark/<name>.yaml``."""
