"""Up-front checks of a run config: a bad value fails in one line before anything is computed.

:func:`check_config` is the first thing :func:`xai_bench.run.run` does. The CLI also runs it
from a Hydra callback (:class:`xai_bench.cli.EarlyChecks`) before Hydra creates the run
directory; every check but the last (:func:`check_benchmark_keys`) runs without importing
torch, so that e.g. a missing pretrained weights file is reported within a second or two.
The benchmarks check their own values in their constructors (``benchmark.*``), the training
recipe in :class:`~xai_bench.training.recipe.Recipe`.

This module imports nothing heavy at module level (no torch, no Lightning).
"""

from __future__ import annotations

import inspect
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from xai_bench.utils.errors import (
    PRETRAINED_CLASSES,
    UserInputError,
    WeightsNotFoundError,
    no_pretrained_message,
    pretrained_classes_message,
    scratch_instead,
)
from xai_bench.utils.loggers import check_trainer_logger, missing_package
from xai_bench.utils.torchray_files import torchray_file, torchray_missing

WEIGHT_MODES = ("random", "pretrained", "trained", "torchray")
DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
GPU_ACCELERATORS = ("gpu", "cuda")
#: tasks that never load the evaluated model's weights (they train a fresh network)
NO_WEIGHTS_TASKS = ("xai_bench.tasks.train.Train",)
#: keys of a benchmark node that are not constructor arguments
BENCHMARK_META_KEYS = ("name", "methods", "_target_", "_partial_", "_convert_", "_recursive_")
#: datamodule counts and fractions: key -> (smallest value, None allowed)
DATA_COUNTS = {"limit": (1, True), "n_train": (1, False), "n_val": (1, False),
               "n_test": (1, False), "batch_size": (1, False), "image_size": (1, False),
               "objects": (1, False)}  # fmt: skip
DATA_FRACTIONS = ("val_fraction", "test_fraction")
OUTPUT_PATHS = ("output_dir", "cache_dir", "checkpoint_dir", "attribution_dir")


def check_config(cfg: DictConfig, run_dir: str | Path | None = None) -> None:
    """Refuse a run config whose values cannot work, before anything is written or computed.

    Args:
        cfg: the composed run config.
        run_dir: the run's output directory (checked to be writable), if known.

    Raises:
        UserInputError: a value is out of range or of the wrong type, the device or the GPUs of
            the trainer preset are not available, or an output folder is not writable.
        WeightsNotFoundError: a weights file is missing (pretrained weights not in the cache).
    """
    check_seed(cfg)
    check_runtime(cfg)
    check_logger(cfg)
    check_logger_package(cfg)
    check_device(cfg)
    check_normalisation(cfg)
    check_train(cfg)
    check_data(cfg)
    check_outputs(cfg, run_dir)
    check_weights(cfg)
    check_benchmark_init(cfg)
    check_benchmark_keys(cfg)  # last: it imports the benchmark class (and torch)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_seed(cfg: DictConfig) -> None:
    seed = cfg.get("seed")
    if not _int(seed):
        raise UserInputError(f"seed must be an integer, got {seed!r}")


def check_runtime(cfg: DictConfig) -> None:
    """``num_workers``, ``checkpoint_every_n_steps``, ``threads`` and ``force``."""
    for key in ("num_workers", "checkpoint_every_n_steps"):
        value = cfg.get(key, 0)
        if not _int(value) or value < 0:
            raise UserInputError(f"{key} must be an integer >= 0, got {value!r}")
    threads = cfg.get("threads")
    if threads is not None and (not _int(threads) or threads < 1):
        raise UserInputError(f"threads must be null or an integer >= 1, got {threads!r}")
    force = cfg.get("force", False)
    if not (isinstance(force, bool) or force == "all"):
        raise UserInputError(f"force must be true, false or all, got {force!r}")


def check_logger(cfg: DictConfig) -> None:
    """``verbose`` (a boolean), the ``logger`` group (a ``_target_`` node or null) and
    ``trainer.logger`` (true, false or null: the logger is chosen with ``logger=...``)."""
    verbose = cfg.get("verbose", False)
    if not isinstance(verbose, bool):
        raise UserInputError(f"verbose must be true or false, got {verbose!r}")
    logger = cfg.get("logger")
    if logger is not None and not (OmegaConf.is_dict(logger) and "_target_" in logger):
        raise UserInputError(
            "logger must be an option of the logger group (logger=csv|tensorboard|wandb|none), "
            f"got {logger!r}"
        )
    trainer = cfg.get("trainer")
    if trainer is not None and "logger" in trainer:
        check_trainer_logger(trainer.logger)


def check_logger_package(cfg: DictConfig) -> None:
    """The package of the chosen logger is installed (``logger=wandb`` needs ``wandb``,
    ``logger=tensorboard`` needs ``tensorboard``): checked without importing it."""
    logger = cfg.get("logger")
    problem = None if logger is None else missing_package(str(logger.get("_target_")))
    if problem is not None:
        raise UserInputError(problem)


def cuda_devices() -> int:
    """Number of usable CUDA GPUs (imports torch: only called when a GPU is asked for)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_device(cfg: DictConfig) -> None:
    """``device`` (auto, cpu, cuda, cuda:N) and the GPUs the ``trainer`` preset asks for."""
    device = cfg.get("device", "auto")
    if not isinstance(device, str) or not DEVICE.match(device):
        raise UserInputError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda"):
        n = cuda_devices()
        index = int(device.split(":")[1]) if ":" in device else 0
        if n == 0:
            raise UserInputError(
                f"device={device} but no CUDA GPU is available (torch.cuda.is_available() is "
                "false): use device=cpu or device=auto"
            )
        if index >= n:
            raise UserInputError(
                f"device={device} but this machine has {n} GPU(s) (cuda:0 to cuda:{n - 1})"
            )
    trainer = cfg.get("trainer")
    accelerator = str(trainer.get("accelerator", "auto")) if trainer is not None else "auto"
    if accelerator in GPU_ACCELERATORS:
        n, devices = cuda_devices(), trainer.get("devices", 1)
        if n == 0:
            raise UserInputError(
                f"the trainer preset asks for GPUs (trainer.accelerator={accelerator}) but no "
                "CUDA GPU is available: use trainer=cpu, trainer=auto or trainer=ddp_cpu"
            )
        if _int(devices) and devices > n:
            raise UserInputError(
                f"trainer.devices={devices} but this machine has {n} GPU(s): use "
                f"trainer.devices={n} (or -1 for all)"
            )


def _numbers(node: Any) -> list[Any]:
    if isinstance(node, ListConfig | list | tuple):
        return list(node)
    return [node]


def check_normalisation(cfg: DictConfig) -> None:
    """``mean`` and ``std`` of the dataset and the model: finite numbers, ``std`` > 0."""
    for group in ("dataset", "model"):
        node = cfg.get(group)
        if node is None:
            continue
        for key in ("mean", "std"):
            if key not in node or node[key] is None:
                continue
            values = _numbers(node[key])
            ok = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            ok = ok and bool(values) and all(math.isfinite(v) for v in values)
            if key == "std":
                ok = ok and all(v > 0 for v in values)
            if not ok:
                what = "finite numbers > 0" if key == "std" else "finite numbers"
                shown = node[key]
                shown = OmegaConf.to_container(shown) if OmegaConf.is_config(shown) else shown
                raise UserInputError(
                    f"{group}.{key} must be a list of {what} (one per channel), got {shown}"
                )


def check_data(cfg: DictConfig) -> None:
    """Counts, sizes and fractions of ``dataset.datamodule``."""
    dm = OmegaConf.select(cfg, "dataset.datamodule")
    if dm is None:
        return
    for key, (low, nullable) in DATA_COUNTS.items():
        if key not in dm:
            continue
        value = dm[key]
        if value is None and nullable:
            continue
        if not _int(value) or value < low:
            allowed = f"an integer >= {low}" + (" or null" if nullable else "")
            source = " (from train.batch_size)" if key == "batch_size" else ""
            raise UserInputError(
                f"dataset.datamodule.{key}{source} must be {allowed}, got {value!r}"
            )
    for key in DATA_FRACTIONS:
        if key in dm:
            value = dm[key]
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1:
                raise UserInputError(
                    f"dataset.datamodule.{key} must be a fraction in [0, 1), got {value!r}"
                )


def check_train(cfg: DictConfig) -> None:
    """The ``train:`` recipe (:class:`~xai_bench.training.recipe.Recipe` checks its values);
    ``benchmark=train train.init=pretrained``: the model has published weights in the cache."""
    if cfg.get("train") is not None:
        from xai_bench.training.recipe import Recipe

        recipe = Recipe.from_mapping(cfg.train, name="train")
        if recipe.init == "pretrained" and not loads_weights(cfg):
            check_published(cfg, "train.init")


def check_benchmark_init(cfg: DictConfig) -> None:
    """``benchmark.init=pretrained`` (ROAR's retrains from the published weights, as OPPSD's
    ViT-B/16): the model has published weights in the local cache."""
    if OmegaConf.select(cfg, "benchmark.init") == "pretrained":
        check_published(cfg, "benchmark.init")


def check_published(cfg: DictConfig, key: str) -> None:
    """The model has published weights and they are in the local cache, for a training that
    starts from them as ``key=pretrained`` says (named in the messages)."""
    model = cfg.get("model")
    if model is None:
        return
    if not model.get("pretrained"):
        raise UserInputError(no_pretrained_message(str(model.get("name")), key))
    missing = missing_pretrained(model.pretrained, scratch_instead(key))
    if missing is not None:
        raise WeightsNotFoundError(missing)


def check_outputs(cfg: DictConfig, run_dir: str | Path | None = None) -> None:
    """The run directory and the output folders of ``paths`` can be created and written."""
    folders = [(f"paths.{k}", OmegaConf.select(cfg, f"paths.{k}")) for k in OUTPUT_PATHS]
    if run_dir is not None:
        folders.insert(0, ("the run directory", run_dir))
    for key, folder in folders:
        if folder is not None:
            check_writable(Path(str(folder)), key)


def check_writable(folder: Path, key: str) -> None:
    """``folder`` exists as a writable folder, or its nearest existing parent is one."""
    folder = folder.expanduser().absolute()
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    hint = "point paths.root_dir (XAI_BENCH_ROOT) at a writable folder"
    if not existing.is_dir():
        raise UserInputError(
            f"cannot create the outputs folder {folder} ({key}): {existing} is a file, not a "
            f"folder; remove it or {hint}"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserInputError(
            f"the outputs folder {existing} is not writable ({key}): make it writable or {hint}"
        )


def loads_weights(cfg: DictConfig) -> bool:
    """Whether the run loads the evaluated model's weights (not ``benchmark=train``)."""
    return OmegaConf.select(cfg, "benchmark._target_") not in NO_WEIGHTS_TASKS


def check_weights(cfg: DictConfig) -> None:
    """``model.weights``: a mode or an existing file; published weights exist for the model,
    fit the dataset's class count and are in the local cache (found without importing torch);
    ``torchray``: the model and dataset have a TorchRay file and it is in the torch hub cache."""
    model = cfg.get("model")
    if model is None or "weights" not in model or not loads_weights(cfg):
        return
    weights = str(model.weights)
    name = model.get("name", "the model")
    if weights not in WEIGHT_MODES:
        if not Path(weights).expanduser().is_file():
            raise WeightsNotFoundError(
                f"model.weights='{weights}' is neither one of {WEIGHT_MODES} nor an existing file"
            )
        return
    if weights == "torchray":
        dataset = str(OmegaConf.select(cfg, "dataset.name"))
        path = torchray_file(name, model.get("torchray"), dataset, torch_hub_dir())
        if not path.is_file():
            raise WeightsNotFoundError(torchray_missing(path))
        return
    if weights != "pretrained":
        return
    pretrained = model.get("pretrained")
    if not pretrained:
        raise UserInputError(
            f"model {name} has no published weights (model.pretrained is null): use "
            "model.weights=trained, random or a path to a weights file"
        )
    classes = model.get("num_classes")
    if classes != PRETRAINED_CLASSES:
        raise UserInputError(pretrained_classes_message(name, classes))
    missing = missing_pretrained(pretrained)
    if missing is not None:
        raise WeightsNotFoundError(missing)


def torch_hub_dir() -> Path:
    """``torch.hub.get_dir()``, computed without importing torch when it is not loaded yet
    (``$TORCH_HOME/hub``, ``$TORCH_HOME`` defaulting to ``$XDG_CACHE_HOME/torch``)."""
    hub = sys.modules.get("torch.hub")
    if hub is not None:  # also honours torch.hub.set_dir
        return Path(hub.get_dir())
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"


def missing_pretrained(pretrained: Any, instead: str | None = None) -> str | None:
    """The message for published weights that are not in the local cache, else ``None``
    (``instead``: the alternative it offers; default: passing ``model.weights=<file>``).

    torchvision weights are found by the file name of the config's ``pretrained.file`` (the
    name torchvision publishes, e.g. ``resnet50-0676ba61.pth``); a config without it is not
    checked here (:func:`~xai_bench.models.weights.load_pretrained` checks it when loading).
    """
    source, name = pretrained.get("source"), pretrained.get("name")
    if source == "torchvision":
        file = pretrained.get("file")
        if not file:
            return None
        path = torch_hub_dir() / "checkpoints" / str(file)
        if path.is_file():
            return None
        return (
            f"pretrained weights {name} are not cached and this run does not download. "
            f"Put the file {file} (from https://download.pytorch.org/models/{file}) at {path}, "
            + (instead or "or pass model.weights=/path/to/file.pth")
        )
    if source == "timm":
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            if isinstance(try_to_load_from_cache(repo_id=str(name), filename=filename), str):
                return None
        return (
            f"pretrained weights {name} are not in the Hugging Face cache and this run does "
            f"not download. Copy the repo '{name}' (model.safetensors) into the cache "
            "(~/.cache/huggingface/hub, or $HF_HOME/hub), "
            + (instead or "or pass model.weights=/path/to/model.safetensors")
        )
    return None


def check_benchmark_keys(cfg: DictConfig) -> None:
    """Every key of ``benchmark`` is an argument of its class (imports the class)."""
    node = cfg.get("benchmark")
    target = node.get("_target_") if node is not None else None
    if not target:
        return
    from hydra.utils import get_object

    try:
        obj = get_object(str(target))
        params = inspect.signature(obj).parameters.values()
    except Exception:  # an unimportable target fails in instantiate, with its own error
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    names = [p.name for p in params]
    unknown = [str(k) for k in node if k not in names and k not in BENCHMARK_META_KEYS]
    if unknown:
        raise UserInputError(
            f"benchmark={node.get('name')} has no key {', '.join(unknown)}; its keys: "
            f"{', '.join(names)}"
        )
