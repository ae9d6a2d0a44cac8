"""Where the configs live, and lookups of config-group options by name.

The configs are shipped inside the package (``xai_bench/configs``), so they are found the same
way from a checkout, an editable install and an installed wheel. User folders added to a run
with ``--config-dir DIR`` or ``hydra.searchpath=[file://DIR]`` are searched after them, as Hydra
does, so that e.g. ``benchmark.methods=[mymethod]`` finds ``DIR/method/mymethod.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig

import xai_bench
from xai_bench.utils.errors import UserInputError

CONFIG_MODULE = "xai_bench.configs"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"  # for ``hydra.main(config_path=...)``
CONFIG_DIR = str(Path(xai_bench.__file__).resolve().parent / "configs")


def config_dirs() -> list[Path]:
    """The package's config folder, then the ``file://`` folders on the running Hydra job's
    search path (none outside a Hydra job)."""
    dirs = [Path(CONFIG_DIR)]
    if HydraConfig.initialized():
        for source in HydraConfig.get().runtime.config_sources:
            if source.schema == "file" and source.path:
                dirs.append(Path(source.path).resolve())
    return list(dict.fromkeys(dirs))


def group_options(group: str) -> list[str]:
    """Names of the options of a config group (``xai_bench/configs/<group>/*.yaml`` and the
    same group in user config folders)."""
    return sorted({p.stem for d in config_dirs() for p in (d / group).glob("*.yaml")})


def option_path(group: str, name: str) -> Path:
    """Path of one option's file; raises with the valid options when it does not exist."""
    for folder in config_dirs():
        path = folder / group / f"{name}.yaml"
        if path.is_file():
            return path
    raise UserInputError(f"unknown {group} '{name}' (options: {', '.join(group_options(group))})")
