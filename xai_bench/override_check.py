"""Key typos on the command line, reported in one line with the valid keys at that level.

Hydra refuses ``benchmark.n_figur=3`` with ``Key 'n_figur' is not in struct`` and no list of
what exists. :func:`unknown_key` composes the run's config from the command line's group choices
(the first value of a sweep) and walks each dotted key, so that the CLI can name the level and
its keys before Hydra composes (``xai-bench: error: unknown key ...``, exit 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

#: command-line flags after which the config search path is the user's: not checked here
USER_PATH_FLAGS = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn")


def _first_value(override: Any) -> str:
    """``key=value`` of an override, with the first value of a sweep."""
    key = override.get_key_element()
    if override.is_sweep_override():
        value = next(iter(override.sweep_string_iterator()))
    else:
        value = override.get_value_element_as_str()
    return f"{key}={value}"


def _is_value_key(override: Any) -> bool:
    """A plain ``key=value`` or ``a.b=value`` that must name an existing key (not ``+``,
    ``++``, ``~``, a config group's choice or a ``hydra`` setting)."""
    from xai_bench.utils.configs import CONFIG_DIR

    key = str(override.key_or_group)
    group = "." not in key and (key == "hydra" or (Path(CONFIG_DIR) / key).is_dir())
    return (
        not group
        and "/" not in key
        and override.package is None
        and not (override.is_add() or override.is_force_add() or override.is_delete())
        and not key.startswith("hydra.")
    )


def missing_level(cfg: DictConfig, key: str) -> str | None:
    """Why the dotted ``key`` is not in ``cfg``, as one line, or ``None`` when it is there (or
    when a level cannot be judged: a null, a scalar or an interpolation that does not resolve
    here)."""
    node: Any = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        prefix = ".".join(parts[:i]) or "the root config"
        try:
            if isinstance(node, DictConfig):
                if part not in node:
                    keys = ", ".join(sorted(str(k) for k in node))
                    return (
                        f"unknown key '{key}': {prefix} has no key '{part}' (its keys: {keys}); "
                        f"write +{key}=... to add a new key"
                    )
                node = node[part]
            elif isinstance(node, ListConfig):
                if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
                    return f"unknown key '{key}': {prefix} is a list of {len(node)} items"
                node = node[int(part)]
            else:
                return None
        except Exception:  # an interpolation that only resolves in the run: Hydra decides
            return None
    return None


def unknown_key(argv: Sequence[str]) -> str | None:
    """The first dotted key of the command line that the composed config lacks, as one error
    line, or ``None``. The config is composed from the command line's other overrides (group
    choices, the first value of a sweep); user config folders are not checked."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if any(a.split("=", 1)[0] in USER_PATH_FLAGS for a in argv):
        return None
    lines = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except HydraException:
        return None  # a syntax error: Hydra's own message says where
    keys = [o for o in parsed if _is_value_key(o)]
    if not keys or any("searchpath" in str(o.key_or_group) for o in parsed):
        return None
    others = [
        _first_value(o)
        for o in parsed
        if not _is_value_key(o) and not str(o.key_or_group).startswith("hydra")
    ]
    try:
        cfg = _compose(others)
    except (HydraException, OmegaConfBaseException):
        return None  # a bad group choice: Hydra's message lists the options
    for override in keys:
        message = missing_level(cfg, str(override.key_or_group))
        if message is not None:
            return message
    return None


def _compose(overrides: list[str]) -> DictConfig:
    from hydra import compose

    from xai_bench.reproduce import hydra_configs

    with hydra_configs():
        return compose("run", overrides=overrides)
