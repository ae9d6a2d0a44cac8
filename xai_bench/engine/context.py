"""The run context: every input a benchmark or task receives, explicit and config-free.

A :class:`RunContext` is built from a Hydra config by :func:`xai_bench.workspace.build_context`,
or directly in a notebook::

    ctx = RunContext.create(model=net, meta=meta, datamodule=dm,
                            methods=MethodSet([MethodSpec.create("gradcam", {...})]),
                            run_dir="outputs/nb")
    result = PixelPerturbation(n_images=16).run(ctx)

The model and the datamodule are built on first use, so a task that needs neither never builds
them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from xai_bench.data.base import ImageDataModule
from xai_bench.methods.base import Explainer
from xai_bench.methods.spec import MethodSet, MethodSpec
from xai_bench.models.meta import ModelMeta
from xai_bench.utils.loggers import LoggerFactory, csv_logger


class ModelTrainer(Protocol):
    """Trains the run's model into its checkpoint (``benchmark=train``)."""

    checkpoint_dir: Path

    def train(self, progress: bool = True, fresh: bool = False) -> dict[str, float]: ...

    def trained_metrics(self) -> dict[str, float] | None: ...


def _missing_trainer() -> ModelTrainer:
    raise ValueError("this run context has no model trainer (build it with a `trainer`)")


@dataclass
class RunContext:
    """What a benchmark may use; every field is explicit.

    Attributes:
        run_dir: the run's output directory.
        meta: facts about the model (:class:`ModelMeta`).
        methods: the methods to compare (:class:`MethodSet`).
        load_model: builds the evaluated model, in eval mode on ``device`` (called once).
        make_datamodule: builds a new datamodule of the run's dataset, augmentation off.
        make_net: a fresh, randomly initialised network seeded by its argument (retraining).
        make_pretrained_net: a fresh network holding the model's published ImageNet weights,
            with a new classifier head seeded by its argument (ROAR's ``init=pretrained``).
        device: the evaluation device.
        seed: the run's seed (subsets, tie-breaks, randomisation).
        identity: labels of every result row (``experiment``, ``model``, ``dataset``).
        fingerprint: what identifies the model and data (weights, data config), the base of
            every cache key (:func:`xai_bench.engine.fingerprint.fingerprint`).
        trainer_kwargs: the Lightning ``Trainer`` preset (devices, strategy) for data-parallel
            evaluation and retraining.
        num_workers: DataLoader workers for retraining.
        attribution_dir: the shared attribution cache (ROAR maps).
        trainer: trains the model into its checkpoint (the ``train`` task only).
        checkpoint_every_n_steps: training paths (ROAR retrains, fine-tuning) also write their
            resumable ``last.ckpt`` every this many optimizer steps (0: after every epoch only).
        force: recompute everything of this run (chunks, attribution maps, retrains and
            fine-tunes) instead of reusing what an earlier run stored.
        make_logger: the Lightning logger of every training (ROAR retrains, fine-tunes), opened
            in the training's folder as ``make_logger(save_dir=..., name="logs", version=0)``
            (:func:`~xai_bench.utils.loggers.open_logger`); ``None``: no logger.
    """

    run_dir: Path
    meta: ModelMeta
    methods: MethodSet
    load_model: Callable[[], nn.Module]
    make_datamodule: Callable[[], ImageDataModule]
    make_net: Callable[[int], nn.Module] | None = None
    make_pretrained_net: Callable[[int], nn.Module] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    identity: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: Mapping[str, Any] = field(default_factory=dict)
    trainer_kwargs: Mapping[str, Any] = field(default_factory=dict)
    num_workers: int = 0
    attribution_dir: Path | None = None
    trainer: ModelTrainer | None = None
    checkpoint_every_n_steps: int = 0
    force: bool = False
    make_logger: LoggerFactory | None = csv_logger

    @classmethod
    def create(
        cls,
        model: nn.Module,
        meta: ModelMeta,
        datamodule: ImageDataModule,
        methods: MethodSet,
        run_dir: str | Path,
        **kwargs: Any,
    ) -> RunContext:
        """A context around objects that already exist (notebooks, tests)."""
        device = next(iter(model.parameters()), torch.zeros(())).device
        kwargs.setdefault("device", device)
        kwargs.setdefault("identity", {"model": meta.name, "dataset": type(datamodule).__name__})
        kwargs.setdefault("fingerprint", {"model": meta.name, "id": id(model)})
        return cls(Path(run_dir), meta, methods, lambda: model, lambda: datamodule, **kwargs)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)

    @cached_property
    def model(self) -> nn.Module:
        """The evaluated model (built on first use)."""
        return self.load_model()

    @cached_property
    def datamodule(self) -> ImageDataModule:
        """The run's datamodule, shared by the evaluation loops (built on first use)."""
        return self.make_datamodule()

    def fresh_net(self, seed: int | None = None) -> nn.Module:
        """A newly initialised network of the run's architecture (seeded; default: the run's)."""
        if self.make_net is None:
            raise ValueError("this run context cannot build fresh networks (no `make_net`)")
        return self.make_net(self.seed if seed is None else int(seed))

    def pretrained_net(self, seed: int | None = None) -> nn.Module:
        """A network that starts from the model's published weights, with a new head seeded by
        ``seed`` (default: the run's).

        Raises:
            WeightsNotFoundError: the published weights are not in the local cache.
        """
        if self.make_pretrained_net is None:
            raise ValueError("this run context cannot build pretrained networks (no "
                             "`make_pretrained_net`)")  # fmt: skip
        return self.make_pretrained_net(self.seed if seed is None else int(seed))

    def model_trainer(self) -> ModelTrainer:
        return self.trainer if self.trainer is not None else _missing_trainer()

    def explainer(
        self,
        spec: MethodSpec,
        model: nn.Module | None = None,
        fit_batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> Explainer:
        """The explainer of ``spec`` for ``model`` (default: :attr:`model`), fitted when the
        method learns from data (default batches: its ``fit_split`` of :attr:`datamodule`)."""
        explainer = spec.build(self.model if model is None else model, self.meta)
        if explainer.needs_data:
            if fit_batches is None:
                loader = self.datamodule.dataloader(explainer.fit_split)
                fit_batches = (
                    (b["image"].to(self.device), b["label"].to(self.device)) for b in loader
                )
            explainer.fit(fit_batches)
        return explainer
