"""Maps of the papers for ``make figures``, from stored arrays and pictures only: the sanity
check's strip of one image's maps per randomisation stage (Adebayo et al. Fig. 2, OPPSD Fig. 2b,
from ``sanity_maps.npz``), and the figures that a benchmark draws into its run folder (UNREL's
input-invariance figures, the gallery's map grids for POSAGG Fig. 1 and Group-CAM Fig. 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from xai_bench.viz.paper_data import ExperimentData
from xai_bench.viz.style import display_name

#: the sanity benchmark's first-image maps per method and stage, in its run folder
MAPS_FILE = "sanity_maps.npz"


def _fit(tile: np.ndarray, h: int, w: int) -> np.ndarray:
    """``tile`` ``[H', W', 3]`` resized to ``[h, w, 3]`` by nearest neighbour."""
    rows = np.arange(h) * tile.shape[0] // h
    cols = np.arange(w) * tile.shape[1] // w
    return tile[rows][:, cols]


def strip_figure(
    maps: np.ndarray, methods: list[str], stages: list[str], image: np.ndarray | None
) -> Figure:
    """Rows: methods; columns: the image, then the method's map at each stage (abs view in
    [0, 1], gray; a map not kept: light gray, ``n/a``). One mosaic in one axes, so that a
    17 x 18 strip draws in a fraction of a second."""
    h, w = maps.shape[-2:]
    pad = max(1, h // 12)
    offset = int(image is not None)
    n_rows, n_cols = len(methods), len(stages) + offset
    canvas = np.ones((n_rows * (h + pad) - pad, n_cols * (w + pad) - pad, 3), dtype=np.float32)
    missing = []
    for i in range(n_rows):
        tiles = [] if image is None else [_image_tile(image)]
        for j in range(len(stages)):
            m = maps[i, j].astype(np.float32)
            if not np.isfinite(m).all():
                missing.append((i, j + offset))
                m = np.full_like(m, 0.85)
            tiles.append(np.repeat(np.clip(m, 0, 1)[..., None], 3, axis=-1))
        for j, tile in enumerate(tiles):
            y, x = i * (h + pad), j * (w + pad)
            canvas[y : y + h, x : x + w] = _fit(tile, h, w)
    fig = Figure(figsize=(1.0 * n_cols + 1.6, 1.0 * n_rows + 0.8), layout="constrained")
    ax = fig.subplots()
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    for i, method in enumerate(methods):
        ax.text(
            -pad, i * (h + pad) + h / 2, display_name(method), ha="right", va="center", fontsize=7
        )
    for j, title in enumerate((["image"] if image is not None else []) + list(stages)):
        x = j * (w + pad) + w / 2
        ax.text(x, -pad, title, ha="left", va="bottom", fontsize=7, rotation=30)
    for i, j in missing:
        ax.text(j * (w + pad) + w / 2, i * (h + pad) + h / 2, "n/a", ha="center", fontsize=6)
    fig.suptitle("one image's maps (abs view) after randomising up to each stage", fontsize=8)
    return fig


def _image_tile(image: np.ndarray) -> np.ndarray:
    """An image ``[C, H, W]`` in [0, 1] as an RGB tile ``[H, W, 3]``."""
    img = np.clip(np.moveaxis(image.astype(np.float32), 0, -1), 0, 1)
    return np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img[..., :3]


def stage_strips(data: ExperimentData) -> list[tuple[str, Figure]]:
    """A :func:`strip_figure` per run with a ``sanity_maps.npz`` (suffix ``_maps``, then
    ``_maps2`` ...)."""
    out = []
    for run in data.runs.values():
        path = run.path / MAPS_FILE
        if not path.is_file():
            continue
        with np.load(path) as stored:
            image = stored["image"] if "image" in stored.files else None
            fig = strip_figure(stored["maps"], [str(m) for m in stored["methods"]],
                               [str(s) for s in stored["stages"]], image)  # fmt: skip
        out.append((f"_maps{len(out) + 1 if out else ''}", fig))
    return out


def run_pictures(data: ExperimentData, pattern: str = "*.png") -> list[tuple[str, Path]]:
    """The pictures that the runs drew into their folders, as ``(suffix, path)``: ``_<name>``
    (and the run's number where several runs drew a picture of that name)."""
    found = [(p.stem, p) for run in data.runs.values() for p in sorted(run.path.glob(pattern))]
    stems = [s for s, _ in found]
    out, seen = [], dict.fromkeys(stems, 0)
    for stem, path in found:
        seen[stem] += 1
        number = f"_{seen[stem]}" if stems.count(stem) > 1 else ""
        out.append((f"_{stem}{number}", path))
    return out
