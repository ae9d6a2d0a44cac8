"""Procedural shapes: seeded images with known object boxes and masks (the embedded default).

Eight classes that differ in shape or texture (disk, square, triangle, ring, cross, diamond,
striped disk, checkered square) in random colours on cluttered backgrounds (colour gradient,
noise and distractor strokes). ``objects=2`` puts two objects of different classes in each
image (``shapes_multi``) for pointing games and class sensitivity. Generation is vectorised
over images and cached on disk, keyed by every generation parameter.

The difficulty options (:data:`DIFFICULTY`: smaller objects, lower contrast, more distractor
strokes, more noise, random occluders drawn over the objects; ``shapes_hard``) default to the
original generator: at their defaults they draw no extra random numbers and are left out of the
cache key, so ``shapes`` and ``shapes_multi`` produce exactly the images they always did.
Occluders never change the label, the box or the mask: ``masks`` are the whole (amodal) shape,
occluded pixels included, and ``boxes`` are tight around them; the occluder pixels are returned
as ``occluded`` (only when ``occluders > 0``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from xai_bench.data.base import ImageDataModule
from xai_bench.utils.hashing import stable_hash
from xai_bench.utils.io import atomic_write

CLASSES = (
    "disk", "square", "triangle", "ring", "cross", "diamond", "striped_disk", "checkered_square",
)  # fmt: skip
GENERATOR_VERSION = 1
# Difficulty options of generate_shapes and their defaults (= the original generator).
DIFFICULTY: dict[str, float | int] = {
    "scale": 1.0,  # object radius factor (< 1: smaller objects)
    "contrast": 1.0,  # object opacity over the background (< 1: fainter objects)
    "strokes": 3,  # distractor strokes in the background
    "noise": 0.06,  # std of the background's pixel noise
    "noise_after": 0.0,  # std of pixel noise over the finished image (objects included)
    "occluders": 0,  # random rectangles drawn over (near) the objects, per image
    "occluder_size": 0.5,  # their mean half-side, in object radii
}


def difficulty_options(**options: float | int) -> dict[str, float | int]:
    """The difficulty options that differ from :data:`DIFFICULTY` (checked, typed): the part of
    the cache key beyond the original generator's, empty for the original images."""
    unknown = set(options) - set(DIFFICULTY)
    if unknown:
        raise ValueError(f"unknown shapes options: {sorted(unknown)}")
    out: dict[str, float | int] = {}
    for key, value in options.items():
        value = type(DIFFICULTY[key])(value)
        positive = key in ("scale", "contrast")
        if value < 0 or (positive and value == 0) or (key == "contrast" and value > 1):
            raise ValueError(f"shapes option {key}={value} is out of range")
        if value != DIFFICULTY[key]:
            out[key] = value
    return out


def _shape_masks(u: Tensor, v: Tensor) -> Tensor:
    """All class masks for object-centred coordinates ``u, v`` ``[N, H, W]`` -> ``[8, N, H, W]``."""
    rad = torch.sqrt(u * u + v * v)
    au, av = u.abs(), v.abs()
    disk = rad <= 1.0
    square = torch.maximum(au, av) <= 0.8
    triangle = (v <= 0.75) & (au <= (v + 0.95) * 0.55)
    ring = (rad <= 1.0) & (rad >= 0.55)
    cross = ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))
    diamond = au + av <= 1.05
    return torch.stack([disk, square, triangle, ring, cross, diamond, disk, square])


def _textures(u: Tensor, v: Tensor) -> Tensor:
    """Brightness factor per class ``[8, N, H, W]``: stripes and checks for the textured classes."""
    ones = torch.ones_like(u)
    stripes = torch.where(torch.floor(v * 2.5).remainder(2) == 0, 1.0, 0.3)
    checks = torch.where((torch.floor(u * 2.2) + torch.floor(v * 2.2)).remainder(2) == 0, 1.0, 0.3)
    return torch.stack([ones] * 6 + [stripes, checks])


def _background(
    n: int, size: int, g: torch.Generator, strokes: int = 3, noise: float = 0.06
) -> Tensor:
    """Cluttered backgrounds ``[n, 3, size, size]``: gradient, noise and random strokes."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    c0, c1 = torch.rand(n, 3, 1, 1, generator=g), torch.rand(n, 3, 1, 1, generator=g)
    angle = torch.rand(n, 1, 1, 1, generator=g) * 6.2832
    t = (torch.cos(angle) * xx + torch.sin(angle) * yy + 1.5) / 3.0
    img = (c0 * (1 - t) + c1 * t) * 0.6 + 0.2
    img = img + noise * torch.randn(n, 3, size, size, generator=g)
    for _ in range(strokes):  # distractor strokes: thin segments of random colour
        p, q = torch.rand(n, 2, 1, 1, generator=g), torch.rand(n, 2, 1, 1, generator=g)
        d = q - p
        px, py = xx - p[:, 0], yy - p[:, 1]
        s = ((px * d[:, 0] + py * d[:, 1]) / (d.pow(2).sum(1) + 1e-6)).clamp(0, 1)
        dist = torch.sqrt((px - s * d[:, 0]) ** 2 + (py - s * d[:, 1]) ** 2) * size
        stroke = (dist < 0.8).unsqueeze(1)
        img = torch.where(stroke, torch.rand(n, 3, 1, 1, generator=g), img)
    return img.clamp(0, 1)


def _boxes(masks: Tensor) -> Tensor:
    """Tight boxes ``[N, 4]`` (x0, y0, x1, y1; end exclusive) of non-empty masks ``[N, H, W]``."""
    rows, cols = masks.any(2), masks.any(1)
    idx_r = torch.arange(masks.shape[1]).expand_as(rows)
    idx_c = torch.arange(masks.shape[2]).expand_as(cols)
    big = masks.shape[1] + masks.shape[2]
    y0 = torch.where(rows, idx_r, big).amin(1)
    y1 = torch.where(rows, idx_r, -1).amax(1) + 1
    x0 = torch.where(cols, idx_c, big).amin(1)
    x1 = torch.where(cols, idx_c, -1).amax(1) + 1
    return torch.stack([x0, y0, x1, y1], 1).float()


def _occlude(
    img: Tensor, centre: Tensor, radius: Tensor, count: int, size_factor: float,
    yy: Tensor, xx: Tensor, g: torch.Generator,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Draw ``count`` grainy rectangles (random colour plus pixel noise) over each image
    ``[m, 3, H, W]``, each centred within 0.7 radii of one of its objects (``centre [m, k, 2]``,
    ``radius [m, k]``) with half-sides of ``size_factor * radius * U[0.5, 1.5]``. Returns the
    images and the painted pixels ``[m, H, W]``."""
    m, k = radius.shape
    painted = torch.zeros(m, *img.shape[-2:], dtype=torch.bool)
    rows = torch.arange(m)
    for _ in range(count):
        j = torch.randint(k, (m,), generator=g)
        r = radius[rows, j][:, None]
        c = centre[rows, j] + (torch.rand(m, 2, generator=g) * 2 - 1) * 0.7 * r
        half = size_factor * r * (0.5 + torch.rand(m, 2, generator=g))
        rect = ((xx - c[:, 0, None, None]).abs() <= half[:, 0, None, None]) & (
            (yy - c[:, 1, None, None]).abs() <= half[:, 1, None, None]
        )
        colour = torch.rand(m, 3, 1, 1, generator=g) * 0.6 + 0.2
        grain = 0.2 * torch.randn(m, 3, *img.shape[-2:], generator=g)  # unlike any class
        img = torch.where(rect.unsqueeze(1), colour + grain, img)
        painted |= rect
    return img, painted


def generate_shapes(
    n: int,
    size: int = 32,
    objects: int = 1,
    seed: int = 0,
    chunk: int = 2048,
    **difficulty: float | int,
) -> dict[str, Tensor]:
    """Generate ``n`` images with ``objects`` shapes each.

    Args:
        difficulty: options of :data:`DIFFICULTY` (``scale``, ``contrast``, ``strokes``,
            ``noise``, ``noise_after``, ``occluders``, ``occluder_size``); at their defaults
            the images are the original generator's, bit for bit.

    Returns:
        ``images`` float ``[n, 3, size, size]`` in [0, 1], ``labels`` long ``[n, objects]``
        (distinct classes per image), ``boxes`` ``[n, objects, 4]`` and ``masks`` bool
        ``[n, objects, size, size]`` (the whole shape, occluded pixels included); with
        ``occluders > 0`` also ``occluded`` bool ``[n, size, size]`` (the occluders' pixels).
    """
    if objects not in (1, 2):
        raise ValueError("objects must be 1 or 2")
    opt = {**DIFFICULTY, **difficulty_options(**difficulty)}
    occluders = int(opt["occluders"])
    g = torch.Generator().manual_seed(seed)
    out: dict[str, list[Tensor]] = {"images": [], "labels": [], "boxes": [], "masks": []}
    if occluders:
        out["occluded"] = []
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    k = len(CLASSES)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        img = _background(m, size, g, int(opt["strokes"]), float(opt["noise"]))
        labels = torch.rand(m, k, generator=g).argsort(1)[:, :objects]  # distinct classes
        if objects == 1:
            radius = (0.22 + 0.14 * torch.rand(m, 1, generator=g)) * size
            centre = (0.5 + (torch.rand(m, 1, 2, generator=g) - 0.5) * 0.3) * size
        else:  # one object per half; halves split left/right or top/bottom
            radius = (0.13 + 0.07 * torch.rand(m, 2, generator=g)) * size
            along = (
                torch.tensor([0.27, 0.73]).expand(m, 2)
                + (torch.rand(m, 2, generator=g) - 0.5) * 0.06
            )
            across = 0.5 + (torch.rand(m, 2, generator=g) - 0.5) * 0.3
            vertical = torch.rand(m, 1, generator=g) < 0.5
            cx = torch.where(vertical, across, along)
            cy = torch.where(vertical, along, across)
            centre = torch.stack([cx, cy], -1) * size
        if opt["scale"] != 1.0:
            radius = radius * float(opt["scale"])
        masks, boxes = [], []
        for j in range(objects):
            u = (xx - centre[:, j, 0, None, None]) / radius[:, j, None, None]
            v = (yy - centre[:, j, 1, None, None]) / radius[:, j, None, None]
            sel = labels[:, j].view(1, m, 1, 1).expand(1, m, size, size)
            mask = _shape_masks(u, v).gather(0, sel)[0]
            tex = _textures(u, v).gather(0, sel)[0]
            colour = torch.rand(m, 3, 1, 1, generator=g) * 0.8 + 0.2
            flip = torch.rand(m, 1, 1, 1, generator=g) < 0.5  # dark or bright objects
            colour = torch.where(flip, 1.0 - colour, colour)
            obj = colour * tex.unsqueeze(1)
            if opt["contrast"] != 1.0:  # a translucent object over the clutter
                obj = float(opt["contrast"]) * obj + (1 - float(opt["contrast"])) * img
            img = torch.where(mask.unsqueeze(1), obj, img)
            masks.append(mask)
            boxes.append(_boxes(mask))
        if occluders:
            centres = centre.expand(m, objects, 2)
            img, painted = _occlude(
                img, centres, radius.expand(m, objects), occluders,
                float(opt["occluder_size"]), yy, xx, g,
            )  # fmt: skip
            out["occluded"].append(painted)
        if opt["noise_after"]:
            img = img + float(opt["noise_after"]) * torch.randn(m, 3, size, size, generator=g)
        out["images"].append(img.clamp(0, 1))
        out["labels"].append(labels)
        out["boxes"].append(torch.stack(boxes, 1))
        out["masks"].append(torch.stack(masks, 1))
    return {key: torch.cat(vals) for key, vals in out.items()}


def load_or_generate(
    cache_dir: Path, n: int, size: int, objects: int, seed: int, **difficulty: float | int
) -> dict[str, Tensor]:
    """Generated data from the cache, or generate and cache it (atomically). The key holds
    only the difficulty options that differ from the defaults (the original images keep
    their original file)."""
    changed = difficulty_options(**difficulty)
    params: dict = {"v": GENERATOR_VERSION, "n": n, "size": size, "objects": objects, "seed": seed}
    if changed:
        params["difficulty"] = changed
    key = stable_hash(params)
    hard = "-hard" if changed else ""
    name = f"shapes{hard}-{objects}obj-{size}px-{n}-s{seed}-{key}.pt"
    path = Path(cache_dir) / "shapes" / name
    if path.is_file():
        return torch.load(path, weights_only=True)
    data = generate_shapes(n, size=size, objects=objects, seed=seed, **changed)
    atomic_write(path, lambda p: torch.save(data, p))
    return data


class ShapesDataset(Dataset):
    """Normalised sample dicts over generated shapes (multi-hot labels when ``objects=2``)."""

    def __init__(
        self, data: dict[str, Tensor], mean: Tensor, std: Tensor, multilabel: bool
    ) -> None:
        self.data, self.mean, self.std, self.multilabel = data, mean, std, multilabel

    def __len__(self) -> int:
        return self.data["images"].shape[0]

    def __getitem__(self, i: int) -> dict:
        labels = self.data["labels"][i]
        if self.multilabel:
            label = torch.zeros(len(CLASSES)).index_fill_(0, labels, 1.0)
        else:
            label = labels[0]
        size = self.data["images"].shape[-1]
        return {
            "image": (self.data["images"][i] - self.mean) / self.std,
            "label": label,
            "index": i,
            "boxes": self.data["boxes"][i],
            "box_labels": labels,
            "difficult": torch.zeros(len(labels), dtype=torch.bool),
            "masks": self.data["masks"][i],
            "orig_size": (size, size),
        }


class ShapesDataModule(ImageDataModule):
    """Procedural shapes (``objects=1``) or two-object shapes (``objects=2``) DataModule.

    Args:
        n_train: training images (the validation and test sets are generated separately).
        n_val: validation images.
        n_test: test images.
        objects: objects per image, 1 or 2.
        scale, contrast, strokes, noise, noise_after, occluders, occluder_size: the difficulty
            options of :func:`generate_shapes` (:data:`DIFFICULTY`; defaults: the original
            images; ``shapes_hard`` sets them).
        **kwargs: :class:`ImageDataModule` arguments; ``root`` is the cache folder.
    """

    def __init__(
        self,
        n_train: int = 6000,
        n_val: int = 1000,
        n_test: int = 2000,
        objects: int = 1,
        scale: float = 1.0,
        contrast: float = 1.0,
        strokes: int = 3,
        noise: float = 0.06,
        noise_after: float = 0.0,
        occluders: int = 0,
        occluder_size: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.sizes = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
        self.objects = int(objects)
        self.difficulty = difficulty_options(
            scale=scale, contrast=contrast, strokes=strokes, noise=noise,
            noise_after=noise_after, occluders=occluders, occluder_size=occluder_size,
        )  # fmt: skip

    @property
    def class_names(self) -> list[str]:
        return list(CLASSES)

    def build_split(self, split: str) -> Dataset:
        offset = {"train": 0, "val": 1, "test": 2}[split]
        data = load_or_generate(
            self.root, self.sizes[split], self.image_size, self.objects, self.seed * 3 + offset,
            **self.difficulty,
        )  # fmt: skip
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return ShapesDataset(data, mean, std, multilabel=self.objects > 1)
