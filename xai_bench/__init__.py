"""xai-bench: saliency methods, benchmarks, models and datasets of five saliency papers."""

__version__ = "0.1.0"
