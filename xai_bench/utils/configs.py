"""Where the configs live, and lookups of config-group options by name."""

from __future__ import annotations

from pathlib import Path

from xai_bench.utils.errors import UserInputError

CONFIG_DIR = str(Path(__file__).resolve().parent.parent.parent / "configs")


def group_options(group: str) -> list[str]:
    """Names of the options of a config group (``configs/<group>/*.yaml``)."""
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def option_path(group: str, name: str) -> Path:
    """Path of one option's file; raises with the valid options when it does not exist."""
    path = Path(CONFIG_DIR) / group / f"{name}.yaml"
    if not path.is_file():
        raise UserInputError(
            f"unknown {group} '{name}' (options: {', '.join(group_options(group))})"
        )
    return path
