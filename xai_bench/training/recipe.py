"""The optimisation recipe: one frozen dataclass shared by every training path.

``benchmark=train`` (the ``train:`` block of ``xai_bench/configs/run.yaml``), ROAR's retrains
and Group-CAM fine-tuning (their ``benchmark.recipe:`` blocks) all train a
:class:`~xai_bench.training.lit.Classifier` under a :class:`Recipe`, so its fields, defaults and
checks are written once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from xai_bench.utils.errors import UserInputError

OPTIMIZERS = ("adam", "adamw", "sgd")
INITS = ("scratch", "pretrained")
#: Lightning precisions, and the short forms they stand for
PRECISIONS = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")
PRECISION_ALIASES = {"64": "64-true", "32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}
#: fields that hold ``None`` by default, and the type of their other values
OPTIONAL = {"head_lr": float, "backbone_lr": float, "precision": str}
#: fields added after the first checkpoints were keyed: left out of :meth:`Recipe.key_dict` at
#: their defaults, so the keys of recipes that do not use them stay as they were
ADDED = ("init", "head_epochs", "head_lr", "backbone_lr", "accumulate_grad_batches", "precision",
         "val_every")  # fmt: skip


@dataclass(frozen=True)
class Recipe:
    """How a classifier is trained. Values are coerced to the field types on construction
    (``lr: 1`` in a YAML file becomes ``1.0``), so equal recipes hash equally.

    Attributes:
        optimizer: ``adam``, ``adamw`` or ``sgd``.
        lr: learning rate.
        weight_decay: L2 weight decay, not applied to biases and norm parameters (1-d tensors).
        batch_size: training batch size. The caller's datamodule applies it.
        max_epochs: training epochs (0: no optimiser step; the network stays as it starts).
        step_size: epochs between learning-rate decays (StepLR), or 0 for a constant rate.
        gamma: learning-rate decay factor (StepLR or milestones).
        milestones: epochs at which the rate is multiplied by ``gamma`` (MultiStepLR; OPPSD
            60/120/160, Hooker et al. 30/60/80); replaces ``step_size``.
        warmup_epochs: linear warm-up of the rate over this many epochs, per step (OPPSD 1,
            Hooker et al. 5); 0 for none.
        momentum: SGD momentum.
        nesterov: Nesterov momentum for SGD (Hooker et al.; plain momentum in OPPSD and
            Group-CAM).
        label_smoothing: cross-entropy label smoothing (ignored for multi-label data).
        augment: random augmentation of the training images. The caller's datamodule applies
            it (the dataset's own augmentation; ROAR's crop and flip after removal).
        init: how ``benchmark=train`` starts the network: ``scratch`` (random) or
            ``pretrained`` (the model's published ImageNet weights with a new, seeded
            classifier head for the dataset's classes). ROAR and Group-CAM fine-tuning have
            their own start and refuse ``pretrained`` here.
        head_epochs: the first this many epochs train only the classifier head (the backbone
            frozen and in eval mode), the rest the whole network (0: none).
        head_lr: learning rate of the classifier head (``None``: ``lr``).
        backbone_lr: learning rate of everything but the head (``None``: ``lr``; 0 keeps the
            backbone's weights fixed).
        accumulate_grad_batches: batches whose gradients are summed per optimiser step
            (OPPSD's ViT: 64 x 8 = 512 images per step).
        precision: Lightning precision of training (``32-true``, ``16-mixed``, ``bf16-mixed``,
            ...; ``None``: the ``trainer`` preset's). ``16-mixed`` needs a CUDA GPU.
        val_every: validate every this many epochs during training (the per-epoch curve);
            0: only once, after the last epoch (ROAR reports final accuracies only).
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
    milestones: tuple[int, ...] = ()
    warmup_epochs: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    init: str = "scratch"
    head_epochs: int = 0
    head_lr: float | None = None
    backbone_lr: float | None = None
    accumulate_grad_batches: int = 1
    precision: str | None = None
    val_every: int = 1

    def __post_init__(self) -> None:
        for f in fields(self):
            cast, value = OPTIONAL.get(f.name, type(f.default)), getattr(self, f.name)
            if f.name in OPTIONAL and value is None:
                continue
            if cast is bool and not isinstance(value, bool | int):  # bool("false") is True
                raise UserInputError(f"{f.name} must be true or false, got {value!r}")
            try:
                value = tuple(int(v) for v in value) if cast is tuple else cast(value)
            except (TypeError, ValueError):
                kind = "a list of integers" if cast is tuple else f"a {cast.__name__}"
                raise UserInputError(f"{f.name} must be {kind}, got {value!r}") from None
            object.__setattr__(self, f.name, value)
        if self.optimizer not in OPTIMIZERS:
            raise UserInputError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got '{self.optimizer}'"
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserInputError(f"lr must be a number > 0, got {self.lr}")
        for key, low in (("weight_decay", 0.0), ("step_size", 0), ("warmup_epochs", 0.0)):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= low):
                raise UserInputError(f"{key} must be >= {low}, got {value}")
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise UserInputError(f"gamma must be a number > 0, got {self.gamma}")
        if not 0 <= self.label_smoothing < 1:
            raise UserInputError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.momentum <= 1:
            raise UserInputError(f"momentum must lie in [0, 1], got {self.momentum}")
        if any(m < 0 for m in self.milestones):
            raise UserInputError(f"milestones must be epochs >= 0, got {list(self.milestones)}")
        if self.batch_size < 1:
            raise UserInputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_epochs < 0:
            raise UserInputError(f"max_epochs must be >= 0, got {self.max_epochs}")
        if self.milestones and self.step_size > 0:
            raise UserInputError("give either milestones or step_size, not both")
        if list(self.milestones) != sorted(set(self.milestones)) or self.warmup_epochs < 0:
            raise UserInputError(
                f"milestones must increase and warmup_epochs be >= 0, got {list(self.milestones)}"
                f" and {self.warmup_epochs}"
            )
        self._check_finetuning()

    def _check_finetuning(self) -> None:
        """The fine-tuning fields (``init`` .. ``precision``)."""
        if self.init not in INITS:
            raise UserInputError(f"init must be one of {', '.join(INITS)}, got '{self.init}'")
        if not 0 <= self.head_epochs <= self.max_epochs:
            raise UserInputError(
                f"head_epochs must lie in [0, max_epochs={self.max_epochs}], got {self.head_epochs}"
            )
        for key in ("head_lr", "backbone_lr"):
            value = getattr(self, key)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise UserInputError(f"{key} must be null or a number >= 0, got {value}")
        if self.accumulate_grad_batches < 1:
            raise UserInputError(
                f"accumulate_grad_batches must be >= 1, got {self.accumulate_grad_batches}"
            )
        if self.val_every < 0:
            raise UserInputError(f"val_every must be >= 0, got {self.val_every}")
        if self.precision is not None:
            value = PRECISION_ALIASES.get(self.precision, self.precision)
            if value not in PRECISIONS:
                raise UserInputError(
                    f"precision must be null or one of {', '.join(PRECISIONS)}, got "
                    f"'{self.precision}'"
                )
            object.__setattr__(self, "precision", value)

    def refuse_init(self, name: str, start: str) -> Recipe:
        """This recipe, if its ``init`` is the default: for trainings that start elsewhere.

        Args:
            name: where the recipe comes from (``benchmark.recipe``).
            start: how those trainings start instead, for the message.
        """
        if self.init != "scratch":
            raise UserInputError(
                f"{name}.init={self.init} is only read by benchmark=train (train.init); {start}"
            )
        return self

    @property
    def splits_head(self) -> bool:
        """Whether the head is trained differently from the backbone (own rate or phase)."""
        return self.head_epochs > 0 or self.head_lr is not None or self.backbone_lr is not None

    def lr_factor(self, step: int, steps_per_epoch: int) -> float:
        """Multiplier of ``lr`` at optimiser step ``step`` (0-based): the decay of the step's
        epoch (StepLR or milestones) times the linear warm-up."""
        epoch = step // max(1, steps_per_epoch)
        if self.milestones:
            decays = sum(epoch >= m for m in self.milestones)
        else:
            decays = epoch // self.step_size if self.step_size > 0 else 0
        factor = self.gamma**decays
        warmup_steps = self.warmup_epochs * steps_per_epoch
        if warmup_steps > 0:
            factor *= min(1.0, (step + 1) / warmup_steps)
        return factor

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
        """Plain ``{field: value}`` of every field (for JSON and Lightning hyper-parameters)."""
        out = asdict(self)
        out["milestones"] = list(self.milestones)
        return out

    def key_dict(self, raw: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """What keys checkpoints trained under this recipe: :meth:`to_dict` (or ``raw``, the
        mapping the recipe was read from, as given) without the :data:`ADDED` fields that hold
        their defaults, so keys computed before those fields existed stay valid."""
        out = dict(raw) if raw is not None else self.to_dict()
        default = Recipe()
        for key in ADDED:
            value = getattr(self, key)
            if value == getattr(default, key):
                out.pop(key, None)
            else:
                out[key] = value
        return out
