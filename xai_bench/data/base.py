"""DataModule base: seeded splits, subsets, dict samples and a collate for boxes and masks.

A sample is a dict with ``image`` (normalised float ``[C, H, W]``), ``label`` (int64 class or
float multi-hot ``[K]``), ``index`` (int) and, where the dataset has them, ``boxes``
(float ``[n, 4]`` as x0, y0, x1, y1 in original-image pixels, x1/y1 exclusive), ``box_labels``
(int64 ``[n]``), ``difficult`` (bool ``[n]``), ``masks`` (bool ``[n, H0, W0]``) and
``orig_size`` (``(H0, W0)``).
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from xai_bench.utils.errors import CorruptFileError, UserInputError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
STACKED = ("image", "label", "index")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk; the message names the expected path and layout."""


def check_split(split: str, key: str = "split") -> str:
    """``split`` if it is one of :data:`SPLITS`, else a ``ValueError`` naming ``key``."""
    if split not in SPLITS:
        raise ValueError(f"{key} must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


def require(path: Path, dataset: str, layout: str) -> Path:
    """Return ``path`` if it exists, else raise with the expected layout and how to fix it."""
    if not path.exists():
        raise DatasetNotFoundError(
            f"dataset '{dataset}' not found: {path} does not exist.\n"
            f"Expected layout:\n{layout}\n"
            "Put the files there, point paths.data_dir (or dataset.datamodule.root) at them, "
            "or set dataset.datamodule.download=true where the dataset can be downloaded."
        )
    return path


def open_image(path: str | Path) -> Any:
    """An image file as an RGB PIL image; a truncated or corrupt file raises
    :class:`~xai_bench.utils.errors.CorruptFileError` naming it (PIL's own error does not)."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:  # PIL: OSError, UnidentifiedImageError
        raise CorruptFileError(
            f"image file {path} cannot be read ({type(err).__name__}: {err}): it is truncated "
            "or corrupt; replace it with an intact copy (or remove it and its annotation)"
        ) from None


def box_problem(box: Sequence[float], height: int, width: int) -> str | None:
    """Why a ground-truth box ``x0, y0, x1, y1`` (x1/y1 exclusive, original pixels) cannot be
    scored, or ``None``: an inverted or empty box, or one entirely outside the image, would be
    a pointing-game pair that always misses. A box that overlaps the image is kept (the hit
    test clips it)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        return "non-finite coordinates"
    if x1 <= x0 or y1 <= y0:
        return "inverted or zero-area box"
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        return f"box outside the {width}x{height} image"
    return None


_WARNED: set[tuple[str, str]] = set()


def warn_skipped(source: str, what: str, problem: str) -> None:
    """Log once per process that an annotation of ``source`` is skipped, and why."""
    if (source, what) not in _WARNED:
        _WARNED.add((source, what))
        log.warning("skipped %s of %s: %s", what, source, problem)


def unwrap(ds: Dataset, indices: Sequence[int]) -> tuple[Dataset, list[int]]:
    """The innermost dataset behind ``Subset`` and :class:`MappedDataset` layers, and the
    indices in it of the samples ``indices`` of ``ds``."""
    idx = [int(i) for i in indices]
    while True:
        if isinstance(ds, Subset):
            idx = [int(ds.indices[i]) for i in idx]
            ds = ds.dataset
        elif isinstance(ds, MappedDataset):
            ds = ds.base
        else:
            return ds, idx


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack ``image``, ``label`` and ``index``; keep variable-size entries as lists."""
    out: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key in STACKED:
            tensors = [torch.as_tensor(v) for v in values]
            if key == "image" and len({tuple(t.shape) for t in tensors}) > 1:
                sizes = sorted({tuple(t.shape[-2:]) for t in tensors})
                raise UserInputError(
                    f"images of different sizes {sizes} in one batch (dataset.resize=torchray "
                    "keeps each image's aspect ratio): the benchmarks' evaluation batches group "
                    "images by size, other loaders need dataset.resize=square or batch size 1"
                )
            out[key] = torch.stack(tensors)
        else:
            out[key] = values
    return out


class MappedDataset(Dataset):
    """Apply ``fn(item, index) -> sample`` to each item of a base dataset."""

    def __init__(self, base: Dataset, fn: Callable[[Any, int], dict[str, Any]]) -> None:
        self.base = base
        self.fn = fn

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.fn(self.base[i], i)


def classification_sample(transform: Any, item: tuple[Any, int], index: int) -> dict[str, Any]:
    """``(PIL image, class)`` -> sample dict with the transformed image."""
    image, target = item
    return {
        "image": transform(image),
        "label": torch.tensor(target, dtype=torch.long),
        "index": index,
    }


def seeded_split(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` into (train, val) index lists with a fixed seed."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = round(n * val_fraction)
    return sorted(perm[n_val:]), sorted(perm[:n_val])


class EpochShuffle(Sampler[int]):
    """A random order of ``range(n)`` that depends only on ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every epoch, so a resumed training run draws the
    same batches as an uninterrupted one, whatever happened to the global random state. In a
    data-parallel run (a process group is running) rank ``r`` of ``W`` takes positions
    ``r, r + W, ...`` of the order, padded to a multiple of ``W`` as ``DistributedSampler``
    does; the trainer must then not add its own sampler (``use_distributed_sampler=False``).
    A :class:`ResumePoint` skips the samples this rank already trained on.
    """

    def __init__(self, n: int, seed: int = 0, resume: ResumePoint | None = None) -> None:
        self.n = int(n)
        self.seed = int(seed)
        self.epoch = 0
        self.resume = resume

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @staticmethod
    def _world() -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def __len__(self) -> int:
        return -(-self.n // self._world()[1])

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        rank, world = self._world()
        if world > 1:
            padded = order + order[: len(self) * world - self.n]
            order = padded[rank::world]
        skip = self.resume.take(self.epoch) if self.resume is not None else 0
        return iter(order[skip:])


class ResumePoint:
    """Where an interrupted epoch stopped: the first ``samples`` indices of ``epoch`` were
    trained on. :class:`EpochShuffle` skips them once, so a run resumed from a mid-epoch
    checkpoint sees exactly the batches an uninterrupted run would have seen next."""

    def __init__(self, epoch: int = -1, samples: int = 0) -> None:
        self.epoch, self.samples = int(epoch), int(samples)

    def take(self, epoch: int) -> int:
        """The samples to skip in ``epoch`` (once; 0 for any other epoch)."""
        if epoch != self.epoch:
            return 0
        skip, self.epoch, self.samples = self.samples, -1, 0
        return skip


class ImageDataModule(pl.LightningDataModule, ABC):
    """Base DataModule: subclasses implement :meth:`build_split`; everything else is shared.

    Args:
        root: folder that holds the dataset files.
        mean: normalisation mean (the model's, so inputs match its training).
        std: normalisation std.
        image_size: side of the square model input.
        batch_size: loader batch size.
        num_workers: loader worker processes.
        seed: seed of the train/val split and of ``limit`` subsets.
        val_fraction: share of the training set held out when there is no official val split.
        limit: keep at most this many samples per split (seeded random subset), or ``None``.
        augment: use the training augmentation on the train split.
        download: allow torchvision to download the dataset (never the default).
    """

    def __init__(
        self,
        root: str,
        mean: Sequence[float],
        std: Sequence[float],
        image_size: int,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.1,
        limit: int | None = None,
        augment: bool = False,
        download: bool = False,
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.val_fraction = float(val_fraction)
        self.limit = None if limit is None else int(limit)
        self.augment = bool(augment)
        self.resume = ResumePoint()  # set by the fit loop when it resumes mid-epoch
        self.download = bool(download)
        self._cache: dict[str, Dataset] = {}

    #: the dataset's folder under ``root`` (real datasets); its file list keys cached results
    source_dir: ClassVar[str | None] = None

    def sources(self) -> list[Path]:
        """The files and folders the data is read from: their file lists, sizes and mtimes key
        every cached result (none for data made in the process)."""
        return [] if self.source_dir is None else [self.root / self.source_dir]

    @property
    def class_names(self) -> list[str] | None:
        """Human-readable class names in label order, where the dataset defines them."""
        return None

    @abstractmethod
    def build_split(self, split: str) -> Dataset:
        """Return the dataset of sample dicts for ``split`` in ``SPLITS``."""

    def dataset(self, split: str) -> Dataset:
        """The (cached, optionally limited) dataset of one split."""
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}' (one of {SPLITS})")
        if split not in self._cache:
            ds = self.build_split(split)
            if self.limit is not None and len(ds) > self.limit:  # type: ignore[arg-type]
                g = torch.Generator().manual_seed(self.seed + SPLITS.index(split))
                idx = torch.randperm(len(ds), generator=g)[: self.limit]  # type: ignore[arg-type]
                ds = Subset(ds, sorted(idx.tolist()))
            self._cache[split] = ds
        return self._cache[split]

    def setup(self, stage: str | None = None) -> None:
        """Build the splits a Lightning stage needs (fails early if files are missing, or if
        training would have no train or no val image)."""
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for split in needed.get(stage or "", SPLITS):
            self.dataset(split)
        if stage == "fit":
            self.check_fit_splits()

    def check_fit_splits(self) -> None:
        """Training needs at least one train and one val image."""
        counts = {s: len(self.dataset(s)) for s in ("train", "val")}  # type: ignore[arg-type]
        if min(counts.values()) < 1:
            source = getattr(self, "source_dir", None)
            where = self.root / source if source else self.root
            raise UserInputError(
                f"{type(self).__name__} at {where}: training needs at least 1 train and 1 val "
                f"image, the data gives {counts['train']} train and {counts['val']} val "
                f"(val_fraction={self.val_fraction}, limit={self.limit}); add images or "
                "change val_fraction (a seeded split holds out round(n x val_fraction) for val)"
            )

    def dataloader(
        self, split: str, shuffle: bool = False, batch_size: int | None = None
    ) -> DataLoader:
        """A loader over one split with :func:`collate_samples`."""
        return DataLoader(
            self.dataset(split),
            batch_size=batch_size or self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate_samples,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset("train")
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=EpochShuffle(len(ds), self.seed, self.resume),  # type: ignore[arg-type]
            num_workers=self.num_workers,
            collate_fn=collate_samples,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test")

    def skipped_annotations(self, split: str, indices: Sequence[int]) -> int:
        """Ground-truth boxes or masks of the samples ``indices`` of ``split`` that the samples
        leave out (inverted, outside the image or of zero area; see :func:`box_problem`), as
        counted by the underlying dataset's ``skipped_annotations(index)`` (0 without one)."""
        base, idx = unwrap(self.dataset(split), indices)
        count = getattr(base, "skipped_annotations", None)
        return 0 if count is None else sum(int(count(i)) for i in idx)

    def normalize(self, x: Tensor) -> Tensor:
        """[0, 1] images ``[B, C, H, W]`` -> model inputs."""
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std

    def denormalize(self, x: Tensor) -> Tensor:
        """Model inputs ``[B, C, H, W]`` -> images in [0, 1] (for figures)."""
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return x * std + mean
