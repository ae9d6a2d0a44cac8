"""Metrics shared by the benchmarks (similarity of maps, perturbation curves, AUCs)."""
