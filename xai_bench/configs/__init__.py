"""The Hydra configs of xai-bench, shipped inside the package (``pkg://xai_bench.configs``)."""
