"""Model zoo: builders, metadata and weight loading."""

from xai_bench.models.factory import build_model
from xai_bench.models.meta import ModelMeta

__all__ = ["ModelMeta", "build_model"]
