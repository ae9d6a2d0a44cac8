"""docs/adding_a_benchmark.md: its template benchmark runs as written, with known answers."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import torch

from xai_bench.data.shapes import ShapesDataModule
from xai_bench.engine.batches import EvalBatch
from xai_bench.engine.context import RunContext
from xai_bench.methods.spec import MethodSet, MethodSpec
from xai_bench.models.meta import ModelMeta
from xai_bench.models.small import ResNet8

DOC = Path(__file__).resolve().parent.parent / "docs" / "adding_a_benchmark.md"
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


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
    torch.manual_seed(0)
    net = ResNet8(num_classes=8, widths=(4, 8, 8)).eval()
    dm = ShapesDataModule(n_train=8, n_val=8, n_test=8, root=str(tmp_path), mean=MEAN, std=STD,
                          image_size=32)  # fmt: skip
    meta = ModelMeta.create(name="resnet8", num_classes=8, input_size=[3, 32, 32], mean=MEAN,
                            std=STD, cam_layer="layer3")  # fmt: skip
    grad = {"_target_": "xai_bench.methods.gradient.Gradient", "_partial_": True}
    rand = {"_target_": "xai_bench.methods.random.RandomAttribution", "_partial_": True}
    ctx = RunContext.create(net, meta, dm, MethodSet([MethodSpec.create("gradient", grad),
                            MethodSpec.create("random", rand)]), tmp_path)  # fmt: skip
    result = template.MapSparsity(n_images=6, batch_size=4).run(ctx)
    table: pd.DataFrame = result.table
    assert set(table.method) == {"gradient", "random"} and len(table) == 12
    assert result.summary["headline"] == {"gini": True} and result.summary["chunks_computed"] == 4
    assert Path(result.figures[0]).is_file()
    again = template.MapSparsity(n_images=6, batch_size=4).run(ctx)  # resumed from the chunks
    assert again.summary["chunks_loaded"] == 4 and again.summary["chunks_computed"] == 0
