"""docs/adding_a_benchmark.md: its template benchmark runs as written, with known answers."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import GRADIENT, RANDOM, tiny_context
from xai_bench.engine.batches import EvalBatch
from xai_bench.methods.spec import MethodSpec

DOC = Path(__file__).resolve().parent.parent / "docs" / "adding_a_benchmark.md"


@pytest.fixture(scope="module")
def template() -> types.ModuleType:
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)[0]
    module = types.ModuleType("map_sparsity_doc")
    sys.modules[module.__name__] = module
    exec(compile(code, str(DOC), "exec"), module.__dict__)
    return module


def scores(template, maps: torch.Tensor) -> list[float]:
    bench = template.MapSparsity()
    x = torch.zeros(len(maps), 3, *maps.shape[-2:])
    batch = EvalBatch(
        0, x, torch.zeros(len(maps), dtype=torch.long), x, {"index": torch.arange(len(maps))}
    )
    return bench.score(None, lambda xx, t: maps, batch).value.tolist()


def test_known_answers(template) -> None:
    n = 16
    one = torch.zeros(1, 1, 4, 4)
    one[..., 2, 1] = 3.0
    const = torch.full((1, 1, 4, 4), 0.7)
    ramp = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    got = scores(template, torch.cat([one, const, ramp.sum(1, keepdim=True)]))
    assert got[0] == pytest.approx(1 - 1 / n) and got[1] == pytest.approx(0.0, abs=1e-6)
    assert scores(template, 5 * ramp)[0] == pytest.approx(scores(template, ramp)[0], rel=1e-6)


def test_runs_through_the_engine(template, tmp_path) -> None:
    specs = [MethodSpec.create("gradient", GRADIENT), MethodSpec.create("random", RANDOM)]
    ctx = tiny_context(tmp_path, specs)
    result = template.MapSparsity(n_images=6, batch_size=4).run(ctx)
    table: pd.DataFrame = result.table
    assert set(table.method) == {"gradient", "random"} and len(table) == 12
    assert result.summary["headline"] == {"gini": True} and result.summary["chunks_computed"] == 4
    assert Path(result.figures[0]).is_file()
    again = template.MapSparsity(n_images=6, batch_size=4).run(ctx)  # resumed from the chunks
    assert again.summary["chunks_loaded"] == 4 and again.summary["chunks_computed"] == 0
