"""The package installed from a wheel: configs inside it, outputs in the current folder.

A wheel is built from a copy of the sources and installed without dependencies into a fresh
venv, which sees the dependencies of the running interpreter through a ``.pth`` file that lists
its site-packages. Paths listed in a ``.pth`` file are appended to ``sys.path`` without
processing their own ``.pth`` files, so the editable install of this checkout stays invisible
and ``import xai_bench`` resolves to the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# The smallest overview run that still trains (and caches) a checkpoint and builds the data.
RUN_ARGS = (
    "benchmark=overview", "device=cpu", "trainer=cpu", "train.max_epochs=1",
    "model.net.widths=[4,8,8]", "dataset.datamodule.n_train=256",
    "dataset.datamodule.n_val=64", "dataset.datamodule.n_test=64",
)  # fmt: skip


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XAI_BENCH_", "PYTHON"))}
    env.pop("HYDRA_FULL_ERROR", None)
    return {**env, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", **extra}


def _check(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    assert res.returncode == 0, f"{cmd}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built once from a copy of the sources (so that no build/ folder or stale
    build/lib files of the shared checkout end up in it)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(REPO / "xai_bench", src / "xai_bench", ignore=ignore)
    dist = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)]
    _check([*cmd, str(src)], cwd=src, env=_env())
    (whl,) = dist.glob("xai_bench-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> dict:
    """A fresh venv with the wheel installed; the venv's listing right after pip."""
    root = tmp_path_factory.mktemp("venv")
    _check([sys.executable, "-m", "venv", "--without-pip", str(root)], env=_env())
    python = root / "bin" / "python"
    site = Path(
        _check(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            env=_env(),
        ).stdout.strip()
    )
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "_xai_bench_test_deps.pth").write_text("".join(f"{p}\n" for p in ours))
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
    _check([*pip, "--no-index", str(wheel)], env=_env())
    return {"root": root, "python": python, "site": site, "installed": _tree(root)}


def test_wheel_installs_package_with_configs(venv, tmp_path) -> None:
    code = (
        "import json, xai_bench, xai_bench.utils.configs as c; "
        "print(json.dumps([xai_bench.__file__, c.CONFIG_DIR]))"
    )
    res = _check([str(venv["python"]), "-c", code], cwd=tmp_path, env=_env())
    module, config_dir = (Path(p) for p in json.loads(res.stdout))
    assert module.is_relative_to(venv["site"]) and not module.is_relative_to(REPO)
    assert Path(config_dir) == venv["site"] / "xai_bench" / "configs"
    shipped = {p.relative_to(config_dir) for p in Path(config_dir).rglob("*.yaml")}
    source = {p.relative_to(REPO / "xai_bench" / "configs")
              for p in (REPO / "xai_bench" / "configs").rglob("*.yaml")}  # fmt: skip
    source = {p for p in source if p.parts[0] != "local"}  # machine-local, not shipped
    assert shipped == source and Path("run.yaml") in shipped


@pytest.mark.parametrize("root_env", [False, True], ids=["cwd", "XAI_BENCH_ROOT"])
def test_installed_cli_writes_outputs_to_cwd_or_root(venv, tmp_path, root_env: bool) -> None:
    cwd, other = tmp_path / "cwd", tmp_path / "root"
    cwd.mkdir()
    other.mkdir()
    extra = {"XAI_BENCH_ROOT": str(other)} if root_env else {}
    script = venv["root"] / "bin" / "xai-bench"
    _check([str(script), *RUN_ARGS], cwd=cwd, env=_env(**extra))
    target = other if root_env else cwd
    results = list((target / "outputs" / "default" / "overview").rglob("results.csv"))
    assert len(results) == 1
    assert json.loads((results[0].parent / "summary.json").read_text())["n"] == 64
    if root_env:
        assert not any(cwd.iterdir())
    else:
        assert not any(other.iterdir())
    assert not (venv["site"] / "outputs").exists() and not (venv["site"] / "data").exists()
    assert _tree(venv["root"]) == venv["installed"]  # nothing written into the venv
