"""The first image's map per method and randomisation stage of a sanity-check run.

Adebayo et al. (2018, Fig. 2) and OPPSD (Fig. 2b) show one image's maps per randomisation stage
beside the curves. :class:`~xai_bench.benchmarks.sanity_checks.SanityChecks` keeps the abs view
of the first image of its first batch per (method, stage) when it computes that chunk (so a
resumed run keeps those computed before), and joins them into ``sanity_maps.npz`` in the run
folder, which ``make figures`` draws (no figure is computed here). This module imports neither
torch nor Lightning, so that drawing stays free of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xai_bench.utils.io import atomic_write
from xai_bench.viz.paper_maps import MAPS_FILE  # noqa: F401 - re-exported: the file it writes


def map_file(maps_dir: Path, key: str, stage: str) -> Path:
    """The kept map of the method with spec key ``key`` at ``stage``."""
    return maps_dir / f"{hashlib.sha1(f'{stage}/{key}'.encode()).hexdigest()[:16]}.npy"


def keep_array(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as float16 ``.npy`` atomically."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:  # a handle: np.save would add ".npy" to the name
            np.save(handle, array.astype(np.float16))

    atomic_write(path, write)


def write_stage_maps(
    maps_dir: Path, path: Path, methods: Sequence[tuple[str, str]], stages: Sequence[str]
) -> Path | None:
    """Join the kept first-image maps into ``path`` (``.npz``): ``maps`` ``[methods, stages,
    H, W]`` float16 (NaN where a map was not kept, e.g. chunks of an older run), ``methods``
    (labels), ``stages`` and ``image`` ``[C, H, W]`` in [0, 1]. ``None`` when none was kept.

    Args:
        maps_dir: the folder of the kept maps.
        path: the file written.
        methods: ``(label, spec key)`` per method, in the run's order.
        stages: the stages in the order they ran.
    """
    found = {
        (i, j): np.load(f)
        for i, (_, key) in enumerate(methods)
        for j, stage in enumerate(stages)
        if (f := map_file(maps_dir, key, stage)).is_file()
    }
    if not found:
        return None
    shape = next(iter(found.values())).shape
    maps = np.full((len(methods), len(stages), *shape), np.nan, dtype=np.float16)
    for (i, j), m in found.items():
        maps[i, j] = m if m.shape == shape else np.nan
    arrays = {
        "maps": maps,
        "methods": np.array([label for label, _ in methods], dtype=str),
        "stages": np.array(list(stages), dtype=str),
    }
    if (maps_dir / "image.npy").is_file():
        arrays["image"] = np.load(maps_dir / "image.npy")

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.savez_compressed(handle, **arrays)

    return atomic_write(path, write)
