"""Train the configured model on the configured dataset and keep its checkpoint."""

from __future__ import annotations

import pandas as pd

from xai_bench.benchmarks.base import Benchmark, Result
from xai_bench.workspace import Workspace


class Train(Benchmark):
    """``benchmark=train``: fit, validate and test with Lightning; reuse a finished checkpoint.

    The checkpoint lands in the model zoo folder (``paths.checkpoint_dir``), keyed by model,
    data, training recipe and seed, where ``model.weights=trained`` finds it.

    Args:
        progress: show Lightning's progress bar.
    """

    name = "train"
    higher_is_better = True

    def __init__(self, progress: bool = True) -> None:
        self.progress = bool(progress)

    def run(self, ws: Workspace) -> Result:
        metrics = ws.trained_metrics()
        reused = metrics is not None
        if metrics is None:
            metrics = ws.train(progress=self.progress)
        rows = [
            {**ws.identity, "benchmark": self.name, "metric": k, "value": float(v)}
            for k, v in metrics.items()
            if isinstance(v, int | float)
        ]
        summary = {**metrics, "checkpoint": str(ws.checkpoint_dir), "reused": reused}
        return Result(pd.DataFrame(rows), summary)
