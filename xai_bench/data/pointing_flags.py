"""Subset flag files of the pointing game (TorchRay's EBP "difficult" sets).

TorchRay's ``PointingGameBenchmark`` reads ``pointing_game_ebp_voc07_difficult.txt`` and
``pointing_game_ebp_coco_difficult.txt`` line by line as ``row.split('\\t')``: the first field
is the image name, the others ``bool(int(x))``, one flag per class. :func:`load_flags` reads
the same format (stricter: flags ``0``/``1`` only), and :func:`image_names` gives the names
of a VOC or COCO split's images to look them up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from xai_bench.data.base import MappedDataset
from xai_bench.utils.errors import UserInputError

FLAGS_FORMAT = (
    "expected one line per image: `<image file name without extension><TAB><one 0/1 flag per "
    "class, tab-separated, in the dataset's class order>` (TorchRay's "
    "pointing_game_ebp_voc07_difficult.txt format)"
)


def load_flags(path: str | Path) -> dict[str, Tensor]:
    """TorchRay's subset flag file -> ``{image name: bool [K]}``.

    The EBP "difficult" files (``pointing_game_ebp_voc07_difficult.txt``: 4952 lines x 20
    flags; ``pointing_game_ebp_coco_difficult.txt``: 80 flags) hold one line per image,
    ``<name>\\t<flag of class 0>\\t...\\t<flag of class K-1>\\n``, with ``name`` the image file
    name without extension (``000001``, ``COCO_val2014_000000000042``) and flags ``0``/``1``
    in the dataset's class order, as ``PointingGameBenchmark`` reads them. Blank lines are
    ignored. A missing or malformed file (no tab, a flag other than 0/1, rows of different
    lengths, a repeated image) raises :class:`UserInputError` naming the file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserInputError(
            f"subset_flags file {path} does not exist: put TorchRay's flag file there or set "
            "benchmark.subset_flags to its path (null: no subset)"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserInputError(
            f"subset_flags file {path} cannot be read as text ({type(err).__name__}); "
            f"{FLAGS_FORMAT}"
        ) from None
    names: list[str] = []
    seen: set[str] = set()
    rows: list[list[bool]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, *values = line.rstrip().split("\t")
        problem = None
        if not name or not values:
            problem = "no tab-separated flags"
        elif any(v not in ("0", "1") for v in values):
            problem = f"a flag is not 0 or 1 ({next(v for v in values if v not in ('0', '1'))!r})"
        elif rows and len(values) != len(rows[0]):
            problem = f"{len(values)} flags where the first line has {len(rows[0])}"
        elif name in seen:
            problem = f"image {name!r} is listed twice"
        if problem is not None:
            raise UserInputError(
                f"subset_flags file {path}, line {number}: {problem}; {FLAGS_FORMAT}"
            )
        seen.add(name)
        names.append(name)
        rows.append([v == "1" for v in values])
    if not rows:
        raise UserInputError(f"subset_flags file {path} has no line; {FLAGS_FORMAT}")
    table = torch.tensor(rows, dtype=torch.bool)
    return dict(zip(names, table, strict=True))


def image_names(ds: Dataset, indices: Sequence[int]) -> list[str]:
    """File stems of the images behind sample ``index`` values of a VOC or COCO split."""
    while isinstance(ds, Subset):  # limit subsets: sample indices refer to the inner dataset
        ds = ds.dataset
    base = ds.base if isinstance(ds, MappedDataset) else ds
    idx = [int(i) for i in indices]
    while isinstance(base, Subset):
        idx = [int(base.indices[i]) for i in idx]
        base = base.dataset
    if hasattr(base, "images"):  # torchvision VOCDetection
        return [Path(base.images[i]).stem for i in idx]
    if hasattr(base, "coco") and hasattr(base, "ids"):  # torchvision CocoDetection
        return [Path(base.coco.loadImgs(base.ids[i])[0]["file_name"]).stem for i in idx]
    raise UserInputError(
        "benchmark.subset_flags needs image file names, which only the voc07, coco2014 and "
        "coco2017 datasets have: use one of them or set benchmark.subset_flags=null"
    )


def subset_mask(
    flags: Mapping[str, torch.Tensor], ds: Any, indices: Sequence[int], num_classes: int
) -> torch.Tensor:
    """``[len(indices), num_classes]`` bool: the flags of each image of ``ds`` at ``indices``
    (by file name); an image absent from the file keeps every class (as in TorchRay)."""
    names = image_names(ds, list(indices))
    keep = torch.ones(len(names), num_classes, dtype=torch.bool)
    for i, name in enumerate(names):  # metadata lookup, one dict access per image
        if name in flags:
            keep[i] = flags[name]
    return keep
