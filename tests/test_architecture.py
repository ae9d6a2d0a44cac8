"""The package's rooms: no import cycles between packages, benchmarks and tasks free of the
config, and every figure drawn in viz/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "xai_bench"
CONFIG_FREE = ("benchmarks", "tasks", "engine")
CONFIG_MODULES = ("omegaconf", "hydra", "xai_bench.workspace", "xai_bench.run",
                  "xai_bench.method_specs", "xai_bench.cli")  # fmt: skip


def imports(path: Path) -> list[str]:
    """Every module imported anywhere in a file (top level and inside functions)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


def room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "xai_bench" and len(parts) > 1 else None


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        src = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for name in imports(path):
            dst = room(name)
            if dst is not None and dst != src:
                graph.setdefault(src, set()).add(dst)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles_between_packages() -> None:
    assert find_cycle(package_graph()) is None


def test_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"viz": {"benchmarks"}, "benchmarks": {"metrics", "viz"}}) == [
        "benchmarks", "viz", "benchmarks",
    ]  # fmt: skip


@pytest.mark.parametrize("folder", CONFIG_FREE)
def test_benchmarks_tasks_and_engine_never_see_the_config(folder: str) -> None:
    for path in sorted((PACKAGE / folder).glob("*.py")):
        bad = [m for m in imports(path) if m.startswith(CONFIG_MODULES)]
        assert not bad, f"{path.name} imports {bad}"
        assert ".cfg" not in path.read_text(), f"{path.name} reads a config"


@pytest.mark.parametrize("folder", ("benchmarks", "tasks", "engine", "methods", "metrics"))
def test_figures_are_drawn_in_viz(folder: str) -> None:
    for path in sorted((PACKAGE / folder).glob("*.py")):
        bad = [m for m in imports(path) if m.startswith("matplotlib")]
        assert not bad, f"{path.name} draws ({bad}): figures belong in xai_bench/viz/"
