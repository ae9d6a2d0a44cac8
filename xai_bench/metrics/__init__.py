"""Metrics shared by the benchmarks (similarity of maps, perturbation curves, AUCs).

:mod:`xai_bench.metrics.functional` scores your own maps with them, without a config.
"""
