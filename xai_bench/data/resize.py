"""``dataset.resize``: the square resize of the datamodules, or TorchRay's aspect-kept resize.

``square`` (default) resizes every image to ``image_size x image_size`` (no crop). ``torchray``
is TorchRay's pointing-game preprocessing (``get_transform(size=224)``): shorter side
``image_size``, longer side ``int(image_size * long / short)``
(:func:`~xai_bench.data.transforms.torchray_transform`), so images differ in size. The
evaluation batches (:class:`~xai_bench.engine.batches.BatchPlan`) then hold images of one size
each, found through :meth:`AspectResize.input_sizes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torchvision import transforms as T

from xai_bench.data.base import unwrap
from xai_bench.data.transforms import TensorResize, eval_transform, torchray_transform
from xai_bench.utils.errors import UserInputError

RESIZES = ("square", "torchray")


def check_resize(resize: str) -> str:
    """``resize`` if it is one of :data:`RESIZES`, else a one-line :class:`UserInputError`."""
    if resize not in RESIZES:
        raise UserInputError(
            f"dataset.resize must be one of {', '.join(RESIZES)}, got {resize!r}: use square "
            "(image_size x image_size) or torchray (shorter side image_size, aspect kept)"
        )
    return resize


class AspectResize:
    """Mixin of the VOC and COCO datamodules (before :class:`~xai_bench.data.base.
    ImageDataModule` in the bases): the ``resize`` option and the input size of each image.

    Args:
        resize: ``square`` or ``torchray`` (see the module docstring); the other arguments are
            :class:`~xai_bench.data.base.ImageDataModule`'s.
    """

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __init__(self, *args: Any, resize: str = "square", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resize = check_resize(str(resize))
        self._input_sizes: dict[tuple[str, int], tuple[int, int]] = {}

    def eval_transform(self) -> T.Compose:
        """The evaluation transform of ``resize`` (the model's ``mean`` / ``std``)."""
        if self.resize == "torchray":
            return torchray_transform(self.image_size, self.mean, self.std)
        return eval_transform(self.image_size, self.mean, self.std, crop=False)

    def input_sizes(self, split: str, indices: Sequence[int]) -> list[tuple[int, int]] | None:
        """The model-input ``(H, W)`` of the samples ``indices`` of ``split``, or ``None`` when
        every image has the same size (``resize=square``). Reads the original sizes from the
        annotations or image headers (no pixels), once per image."""
        if self.resize == "square":
            return None
        resize = TensorResize(self.image_size)
        base, idx = unwrap(self.dataset(split), indices)  # type: ignore[attr-defined]
        out = []
        for i in idx:
            if (split, i) not in self._input_sizes:
                self._input_sizes[split, i] = resize.output_size(*base.orig_size(i))
            out.append(self._input_sizes[split, i])
        return out
