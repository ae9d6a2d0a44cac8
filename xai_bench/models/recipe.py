"""The optimisation recipe: one frozen dataclass shared by every training path.

``benchmark=train`` (the ``train:`` block of ``configs/run.yaml``), ROAR's retrains and Group-CAM
fine-tuning (their ``benchmark.recipe:`` blocks) all train a
:class:`~xai_bench.models.lit.Classifier` under a :class:`Recipe`, so its fields, defaults and
checks are written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from xai_bench.utils.errors import UserInputError

OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass(frozen=True)
class Recipe:
    """How a classifier is trained. Values are coerced to the field types on construction
    (``lr: 1`` in a YAML file becomes ``1.0``), so equal recipes hash equally.

    Attributes:
        optimizer: ``adam``, ``adamw`` or ``sgd`` (momentum 0.9, Nesterov).
        lr: learning rate.
        weight_decay: L2 weight decay, not applied to biases and norm parameters (1-d tensors).
        batch_size: training batch size. The caller's datamodule applies it.
        max_epochs: training epochs (0: no optimiser step; the network stays as it starts).
        step_size: epochs between learning-rate decays (StepLR), or 0 for a constant rate.
        gamma: learning-rate decay factor of StepLR.
        label_smoothing: cross-entropy label smoothing (ignored for multi-label data).
        augment: random augmentation of the training images. The caller's datamodule applies
            it (the dataset's own augmentation; ROAR's crop and flip after removal).
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 128
    max_epochs: int = 10
    step_size: int = 0
    gamma: float = 0.5
    label_smoothing: float = 0.0
    augment: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            cast, value = type(f.default), getattr(self, f.name)
            if cast is bool and not isinstance(value, bool | int):  # bool("false") is True
                raise UserInputError(f"{f.name} must be true or false, got {value!r}")
            object.__setattr__(self, f.name, cast(value))
        if self.optimizer not in OPTIMIZERS:
            raise UserInputError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got '{self.optimizer}'"
            )
        if self.batch_size < 1:
            raise UserInputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_epochs < 0:
            raise UserInputError(f"max_epochs must be >= 0, got {self.max_epochs}")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The field names, in declaration order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_mapping(
        cls,
        values: Mapping[str, Any] | Recipe | None = None,
        base: Recipe | None = None,
        name: str = "recipe",
    ) -> Recipe:
        """A recipe from a mapping (a dict or an OmegaConf ``DictConfig``, e.g. ``cfg.train``).

        Args:
            values: field values; missing fields keep ``base``'s. A :class:`Recipe` is returned
                as it is, ``None`` gives ``base``.
            base: the defaults (default: ``Recipe()``).
            name: where the values come from, for error messages (``train``,
                ``benchmark.recipe``).

        Raises:
            UserInputError: an unknown key (the message lists the valid ones) or a bad value.
        """
        if isinstance(values, Recipe):
            return values
        base = base if base is not None else cls()
        given = {str(k): values[k] for k in values} if values is not None else {}
        unknown = sorted(set(given) - set(cls.keys()))
        if unknown:
            raise UserInputError(
                f"{name}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(cls.keys())}"
            )
        try:
            return replace(base, **given)
        except (TypeError, ValueError) as err:
            raise UserInputError(f"{name}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{field: value}`` (for hashing, JSON and Lightning hyper-parameters)."""
        return asdict(self)
