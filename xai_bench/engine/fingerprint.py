"""One fingerprint for every cache: resumable chunks, attribution maps, fine-tuned checkpoints."""

from __future__ import annotations

from typing import Any

from xai_bench.engine.context import RunContext
from xai_bench.utils.digest import content_keyed
from xai_bench.utils.hashing import stable_hash


def fingerprint(ctx: RunContext, length: int = 10, **parts: Any) -> str:
    """Hash of the run's model/data identity (``ctx.fingerprint``), its seed and ``parts``.

    ``parts`` name what else changes the cached numbers: a benchmark's parameters, a method's
    hash, a split. A string in ``parts`` that names an existing file (a subset flag file) is
    keyed by the file's contents. Equal inputs give equal keys in every process and rerun.
    """
    parts = content_keyed(parts)
    return stable_hash({"context": dict(ctx.fingerprint), "seed": ctx.seed, **parts}, length)
