"""The config/code boundary: builds a run's model, data, methods and trainer from its config.

Benchmarks and tasks never see the config: they receive the :class:`RunContext` that
:meth:`Workspace.context` builds. Everything here is lazy, so a task that needs no explainer or
model never builds one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from xai_bench.data.base import ImageDataModule
from xai_bench.engine.context import RunContext
from xai_bench.method_specs import own_method, resolve_entry, resolve_methods
from xai_bench.methods.base import Explainer
from xai_bench.methods.spec import MethodSet
from xai_bench.models.factory import build_model
from xai_bench.models.finetune import find_head, load_pretrained_backbone
from xai_bench.models.meta import ModelMeta
from xai_bench.models.weights import timm_weights_file, torchvision_weights_file
from xai_bench.training.fit import METRICS_FILE, MODEL_FILE, train_classifier
from xai_bench.training.recipe import Recipe
from xai_bench.utils.digest import content_keyed, path_digest
from xai_bench.utils.distributed import is_distributed, local_rank, remove_tree
from xai_bench.utils.hashing import stable_hash
from xai_bench.utils.loggers import LoggerFactory, csv_logger, log_run, trainer_logger
from xai_bench.utils.torchray_files import torchray_file

log = logging.getLogger(__name__)

# Datamodule arguments that do not change what a model learns from the data.
_RUNTIME_DATA_KEYS = ("root", "num_workers", "batch_size", "mean", "std", "download", "_target_")


def _drop_square_resize(data: dict[str, Any]) -> None:
    """Leave the default ``dataset.resize`` (``square``) out of a resolved dataset config, so the
    result caches and checkpoints keyed before the option existed keep their keys."""
    if data.get("resize") == "square":
        data.pop("resize")
        data["datamodule"].pop("resize", None)


class LazyMapping(Mapping[str, Any]):
    """A mapping computed on first read (a fingerprint that needs the trained model)."""

    def __init__(self, make: Callable[[], Mapping[str, Any]]) -> None:
        self._make = make

    @cached_property
    def _data(self) -> Mapping[str, Any]:
        return self._make()

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _digests(obj: Any) -> Any:
    """The ``{"path", "sha256"}`` entries of a :func:`content_keyed` structure, by path."""
    found: dict[str, str] = {}

    def visit(node: Any) -> None:
        if isinstance(node, dict) and set(node) == {"path", "sha256"}:
            found[str(node["path"])] = str(node["sha256"])
        elif isinstance(node, dict):
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(obj)
    return found


def resolve_device(name: str, distributed: bool = False) -> torch.device:
    """``auto`` -> a CUDA device if there is one, else the CPU.

    In a data-parallel run (``distributed``) each process takes the GPU of its local rank.
    """
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", local_rank() if distributed else 0)
    return torch.device(name)


class Workspace:
    """Everything a benchmark may need for one run, built on first use.

    Args:
        cfg: the composed run config (read only here, never passed on).
        run_dir: the run's output directory.
    """

    def __init__(self, cfg: DictConfig, run_dir: str | Path) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        # the `logger` group (a partial Lightning logger, opened per folder; null: none)
        self.make_logger: LoggerFactory | None = csv_logger
        if "logger" in cfg:
            node = cfg.logger
            self.make_logger = None if node is None else instantiate(node, _partial_=True)
        trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
        # `trainer.logger=false` turns the trainings' logger off
        self.trainer_kwargs, self.training_logger = trainer_logger(
            trainer,  # type: ignore[arg-type]
            self.make_logger,
        )
        self.device = resolve_device(str(cfg.device), is_distributed(self.trainer_kwargs))
        self.seed = int(cfg.seed)
        # the trained checkpoint's seed (its init, data order and generated data); ``seed``
        # by default, so that a sweep over evaluation seeds can share one model
        self.train_seed = int(cfg.get("train_seed", cfg.seed))
        force = cfg.get("force", False)
        self.force = bool(force)  # recompute this run's results, maps, retrains and fine-tunes
        self.force_all = force == "all"  # ... and retrain the base checkpoint (weights=trained)

    @cached_property
    def meta(self) -> ModelMeta:
        m = self.cfg.model
        return ModelMeta.create(
            name=m.name,
            num_classes=m.num_classes,
            input_size=list(m.input_size),
            mean=list(m.mean),
            std=list(m.std),
            cam_layer=m.cam_layer,
            blocks=list(m.blocks),
            block_layers=dict(m.block_layers),
            convolutional=m.convolutional,
            relu_only=m.relu_only,
            reshape=m.reshape,
            num_prefix_tokens=m.num_prefix_tokens,
            multilabel=self.cfg.dataset.multilabel,
        )

    @property
    def identity(self) -> dict[str, Any]:
        """Names that label every result row of this run (the method columns come from specs)."""
        return {
            "experiment": self.cfg.experiment_name,
            "model": self.cfg.model.name,
            "dataset": self.cfg.dataset.name,
        }

    @cached_property
    def methods(self) -> MethodSet:
        """The run's method specs (``benchmark.methods``, else ``method``), resolved once."""
        return resolve_methods(self.cfg)

    @cached_property
    def fingerprint(self) -> dict[str, Any]:
        """What identifies the evaluated model and data, the base of every cache key: their
        configs and the contents of their files (:meth:`inputs`). Read once the model is
        there (a trained checkpoint is trained first)."""
        model = OmegaConf.to_container(self.cfg.model, resolve=True)
        data = OmegaConf.to_container(self.cfg.dataset, resolve=True)
        data["datamodule"] = {  # type: ignore[index]
            k: v
            for k, v in data["datamodule"].items()  # type: ignore[index]
            if k not in ("root", "num_workers", "batch_size", "download")
        }
        _drop_square_resize(data)  # type: ignore[arg-type]
        out = {"model": model, "dataset": data}
        if self.cfg.model.weights == "trained":  # the checkpoint key covers the training recipe
            out["checkpoint"] = self.checkpoint_dir.name
            self.model  # noqa: B018 - trains the checkpoint if it is missing
        out["inputs"] = self.inputs()
        return out

    def weights_file(self) -> Path | None:
        """The file the model's weights are read from (``None``: random weights, or published
        weights that are not in the local cache)."""
        m = self.cfg.model
        weights = str(m.weights)
        if weights == "random":
            return None
        if weights == "trained":
            return self.checkpoint_dir / MODEL_FILE
        if weights == "pretrained":
            if m.pretrained is None:
                return None
            if m.pretrained.source == "torchvision":
                return torchvision_weights_file(str(m.pretrained.name))[0]
            return timm_weights_file(str(m.pretrained.name))
        if weights == "torchray":  # the model's file for this dataset in TorchRay's cache
            hub = Path(torch.hub.get_dir())
            return torchray_file(m.name, m.get("torchray"), self.cfg.dataset.name, hub)
        return Path(weights).expanduser()

    def inputs(self) -> dict[str, Any]:
        """Content keys of the files the numbers come from: the weights file (SHA-256), the
        dataset's folders (file list, sizes, mtimes) and files named by the benchmark (flag
        files). A replaced file changes them, so no cached result of the old one is reused."""
        weights = self.weights_file()
        data = [str(p) for p in self.build_datamodule().sources()]
        bench = OmegaConf.to_container(self.cfg.benchmark, resolve=True)
        return {
            "weights": None if weights is None else path_digest(weights),
            "data": {p: path_digest(p) for p in data},
            "benchmark": _digests(content_keyed(bench)),
        }

    def context(self) -> RunContext:
        """The config-free :class:`RunContext` that benchmarks and tasks receive."""
        return RunContext(
            run_dir=self.run_dir,
            meta=self.meta,
            methods=self.methods,
            load_model=lambda: self.model,
            make_datamodule=self.build_datamodule,
            make_net=self.fresh_net,
            make_pretrained_net=partial(self.pretrained_net, key="benchmark.init"),
            device=self.device,
            seed=self.seed,
            identity=self.identity,
            fingerprint=LazyMapping(lambda: self.fingerprint),
            trainer_kwargs=self.trainer_kwargs,
            num_workers=int(self.cfg.num_workers),
            attribution_dir=Path(self.cfg.paths.attribution_dir),
            trainer=self,
            checkpoint_every_n_steps=int(self.cfg.checkpoint_every_n_steps),
            force=self.force,
            make_logger=self.training_logger,
        )

    def log_results(self, summary: dict[str, Any]) -> None:
        """Log a computed run's headline metrics and figures (``summary``) into the `logger`
        group's logger of the run directory (``<run_dir>/logs/version_0/``)."""
        log_run(self.make_logger, self.run_dir, summary)

    def fresh_net(self, seed: int | None = None, training: bool = False) -> nn.Module:
        """A newly built, randomly initialised network (seeded by ``seed``, default the run's).
        ``training``: with the ``model.train_net`` arguments, if any, for the network that
        ``benchmark=train`` trains (e.g. ``batch_norm: true`` for the small VGG, whose norms
        are folded into its convs when the checkpoint is loaded into ``model.net``)."""
        torch.manual_seed(self.seed if seed is None else int(seed))
        extra = self.cfg.model.get("train_net") if training else None
        return instantiate(self.cfg.model.net, **(extra or {}))

    def build_datamodule(self) -> ImageDataModule:
        """A new datamodule of the run's dataset (not :attr:`datamodule`), augmentation off."""
        dm = instantiate(self.cfg.dataset.datamodule)
        dm.augment = False
        return dm

    @cached_property
    def checkpoint_dir(self) -> Path:
        """Where ``benchmark=train`` keeps this (model, data, recipe, ``train_seed``)'s
        checkpoint."""
        c = self.cfg
        model = OmegaConf.to_container(c.model, resolve=True)
        for key in ("weights", "pretrained"):
            model.pop(key, None)
        data = OmegaConf.to_container(c.dataset, resolve=True)
        data["datamodule"] = {
            k: v for k, v in data["datamodule"].items() if k not in _RUNTIME_DATA_KEYS
        }
        _drop_square_resize(data)  # type: ignore[arg-type]
        raw = OmegaConf.to_container(c.train, resolve=True)
        # the fine-tuning fields join the key only when they differ from their defaults, so
        # recipes that do not use them keep their earlier keys (and checkpoints)
        train = Recipe.from_mapping(c.train, name="train").key_dict(raw)  # type: ignore[arg-type]
        key = stable_hash({"model": model, "data": data, "train": train, "seed": self.train_seed})
        return Path(c.paths.checkpoint_dir) / f"{c.model.name}-{c.dataset.name}-{key}"

    @cached_property
    def datamodule(self) -> ImageDataModule:
        return instantiate(self.cfg.dataset.datamodule)

    def train(self, progress: bool = True, fresh: bool = False) -> dict[str, float]:
        """Train a fresh network into :attr:`checkpoint_dir` (resuming an interrupted run, or
        from scratch if ``fresh``) under the ``train:`` :class:`~xai_bench.training.recipe.
        Recipe` (the dataset configs read its ``batch_size`` as ``${train.batch_size}``).
        The starting network (:meth:`start_net`) is built first: missing published weights
        fail before anything is written or removed."""
        recipe = Recipe.from_mapping(self.cfg.train, name="train")
        net = self.start_net(recipe)
        if fresh and remove_tree(self.checkpoint_dir):
            log.info("force: removed the checkpoint %s; training it anew", self.checkpoint_dir)
        dm = self.datamodule
        dm.augment = recipe.augment
        try:
            return train_classifier(
                net,
                dm,
                self.checkpoint_dir,
                trainer_kwargs=self.trainer_kwargs,
                recipe=recipe,
                multilabel=bool(self.cfg.dataset.multilabel),
                seed=self.train_seed,
                progress=progress,
                checkpoint_every_n_steps=int(self.cfg.checkpoint_every_n_steps),
                head=self.cfg.model.get("head"),
                make_logger=self.training_logger,
            )
        finally:
            dm.augment = False

    def start_net(self, recipe: Recipe | None = None) -> nn.Module:
        """The network ``benchmark=train`` starts from (default recipe: ``train:``): a
        :meth:`fresh_net` for training, seeded, with the dataset's class count. With
        ``init=pretrained`` its backbone holds the model's published ImageNet weights
        (``model.pretrained``, from the local cache) and its classifier head (``model.head``,
        else found in the network) stays freshly initialised, unless the dataset has the
        published head's classes (ImageNet), which keeps it
        (:func:`~xai_bench.models.finetune.load_backbone`)."""
        recipe = recipe if recipe is not None else Recipe.from_mapping(self.cfg.train, name="train")
        if recipe.init == "pretrained":
            return self.pretrained_net(self.train_seed, training=True)
        return self.fresh_net(self.train_seed, training=True)

    def pretrained_net(
        self, seed: int | None = None, training: bool = False, key: str = "train.init"
    ) -> nn.Module:
        """A :meth:`fresh_net` (seeded by ``seed``, default the run's) whose backbone holds the
        model's published ImageNet weights (``model.pretrained``, from the local cache) and
        whose classifier head (``model.head``, else found in the network) keeps its seeded
        initialisation: ``train.init=pretrained``, and ROAR's ``benchmark.init=pretrained``
        (OPPSD's ViT-B/16 retrains) with ``key`` naming that setting in error messages."""
        net = self.fresh_net(seed, training=training)
        m = self.cfg.model
        pretrained = None if m.pretrained is None else dict(m.pretrained)
        head = find_head(net, m.get("head"))
        return load_pretrained_backbone(net, pretrained, str(m.name), head, key)

    def trained_metrics(self) -> dict[str, float] | None:
        """Metrics saved beside a finished checkpoint, or ``None`` if it is not trained."""
        path = self.checkpoint_dir / METRICS_FILE
        if not (self.checkpoint_dir / MODEL_FILE).is_file() or not path.is_file():
            return None
        return json.loads(path.read_text())

    @cached_property
    def model(self) -> nn.Module:
        """The evaluated model, in eval mode on :attr:`device` (trained first if needed)."""
        m = self.cfg.model
        retrain = m.weights == "trained" and self.force_all
        missing = m.weights == "trained" and self.trained_metrics() is None
        if retrain or (missing and self.cfg.train_if_missing):
            log.info(
                "training %s on %s into %s", m.name, self.cfg.dataset.name, self.checkpoint_dir
            )
            self.train(fresh=retrain)
        net, _ = build_model(
            self.fresh_net(),
            self.meta,
            weights=str(m.weights),
            pretrained=None if m.pretrained is None else dict(m.pretrained),
            trained_checkpoint=self.checkpoint_dir / MODEL_FILE,
            torchray_file=self.weights_file() if m.weights == "torchray" else None,
        )
        return net.to(self.device)

    def explainer(self, model: nn.Module | None = None, entry: Any = None) -> Explainer:
        """An explainer bound to ``model`` (default: :attr:`model`): of a ``methods`` entry
        (a config name or a mapping with ``name``, ``label`` and overrides), by default the
        run's own ``method`` with its overrides."""
        spec = own_method(self.cfg) if entry is None else resolve_entry(self.cfg, entry)
        return self.context().explainer(spec, self.model if model is None else model)
