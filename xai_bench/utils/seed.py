"""Seeding of every random generator a run touches."""

from __future__ import annotations

import pytorch_lightning as pl


def seed_everything(seed: int) -> int:
    """Seed Python, NumPy and torch (all devices) and return the seed."""
    return pl.seed_everything(seed, workers=True, verbose=False)
