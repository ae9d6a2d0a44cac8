"""Weight loading that never blocks on the network: missing files fail fast with a path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from xai_bench.utils.errors import CorruptFileError, UserInputError, WeightsNotFoundError

__all__ = [
    "WeightsNotFoundError", "load_into", "load_pretrained", "pretrained_state", "read_state_dict",
]  # fmt: skip


#: entries of a training checkpoint that hold the weights, in the order they are looked for
NESTED = ("state_dict", "model_state_dict", "model")


def torchvision_weights_file(weights_name: str) -> tuple[Path, str]:
    """Cache path and URL of torchvision weights such as ``ResNet50_Weights.IMAGENET1K_V1``."""
    from torchvision.models import get_weight

    url = get_weight(weights_name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1], url


def timm_weights_file(hf_repo: str) -> Path | None:
    """Path of a timm model's ``model.safetensors`` in the Hugging Face cache, if present."""
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        hit = try_to_load_from_cache(repo_id=hf_repo, filename=filename)
        if isinstance(hit, str):
            return Path(hit)
    return None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors``, a plain ``.pt/.pth`` or a training checkpoint.

    A checkpoint's weights are unwrapped from its first entry among :data:`NESTED` (Lightning
    ``.ckpt``: ``state_dict`` with ``net.`` keys; OPPSD's ``best.pth``: ``model_state_dict``;
    ``model``) and a ``module.`` prefix on every key (``nn.DataParallel``) is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch and safetensors raise many kinds of errors on bad bytes
        raise CorruptFileError(
            f"weights file {path} cannot be read ({_reason(err)}): it is truncated, corrupt or "
            "not a weights file. Replace it with an intact copy, or delete it if it is a "
            "checkpoint of this project (model.weights=trained trains it again)"
        ) from None
    obj = unwrap_state_dict(obj)
    if not isinstance(obj, dict):
        raise UserInputError(
            f"weights file {path} does not hold a state dict (a mapping of parameter names to "
            "tensors): save one with torch.save(model.state_dict(), path)"
        )
    return obj


def unwrap_state_dict(obj: Any) -> Any:
    """The state dict inside a loaded checkpoint ``obj`` (see :func:`read_state_dict`); other
    objects are returned as they are."""
    if not isinstance(obj, dict):
        return obj
    key = next((k for k in NESTED if isinstance(obj.get(k), dict)), None)
    if key is not None:
        obj = obj[key]
        if key == "state_dict":  # Lightning: the Classifier's network is its `net`
            obj = _strip(obj, "net.")
    return _strip(obj, "module.")


def _strip(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``state`` without ``prefix`` if every key has it."""
    if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _reason(err: BaseException) -> str:
    """The informative line of a loader's error (torch's weights-only message is long)."""
    text = str(err)
    marker = "WeightsUnpickler error: "
    if marker in text:
        text = text[text.index(marker) + len(marker) :]
    lines = [s.strip() for s in text.splitlines() if s.strip()] or [type(err).__name__]
    line = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]  # a heading and its item
    return f"{type(err).__name__}: {line[:300]}"


def load_into(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Load ``state`` strictly, with an error that names the source and the mismatching keys."""
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a parameter of another shape (e.g. another class count)
        raise UserInputError(
            f"weights from {source} do not fit {type(net).__name__}: {_reason(err)}; use "
            "weights of this model and class count (model.weights=trained trains them)"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise UserInputError(
            f"weights from {source} do not fit {type(net).__name__}: "
            f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}; use "
            "weights of this model (model.weights=trained trains them)"
        )
    return net


def load_pretrained(net: nn.Module, source: str, name: str) -> nn.Module:
    """Load published weights from the local torch/HF cache without touching the network.

    Args:
        net: the freshly built network.
        source: ``torchvision`` or ``timm``.
        name: torchvision weights enum (``ResNet50_Weights.IMAGENET1K_V1``) or timm HF repo
            (``timm/vit_base_patch16_224.augreg2_in21k_ft_in1k``).
    """
    state, path = pretrained_state(source, name)
    return load_into(net, state, str(path))


def pretrained_state(
    source: str, name: str, instead: str | None = None
) -> tuple[dict[str, torch.Tensor], Path]:
    """The state dict of published weights in the local torch/HF cache, and its file.

    Args:
        source: ``torchvision`` or ``timm``.
        name: as for :func:`load_pretrained`.
        instead: the alternative the missing-file message offers (default: passing
            ``model.weights=/path/to/file``).

    Raises:
        WeightsNotFoundError: the file is not cached; the message says which file goes where.
    """
    if source == "torchvision":
        path, url = torchvision_weights_file(name)
        if not path.is_file():
            raise WeightsNotFoundError(
                f"pretrained weights {name} are not cached and this run does not download. "
                f"Put the file {path.name} (from {url}) at {path}, "
                + (instead or "or pass model.weights=/path/to/file.pth")
            )
        return read_state_dict(path), path
    if source == "timm":
        found = timm_weights_file(name)
        if found is None:
            raise WeightsNotFoundError(
                f"pretrained weights {name} are not in the Hugging Face cache and this run does "
                f"not download. Copy the repo '{name}' (model.safetensors) into the cache "
                "(~/.cache/huggingface/hub, or $HF_HOME/hub), "
                + (instead or "or pass model.weights=/path/to/model.safetensors")
            )
        return read_state_dict(found), found
    raise UserInputError(f"unknown model.pretrained.source '{source}' (torchvision or timm)")
