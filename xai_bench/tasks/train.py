"""Train the configured model on the configured dataset and keep its checkpoint."""

from __future__ import annotations

import pandas as pd

from xai_bench.engine.benchmark import Result, Task
from xai_bench.engine.context import RunContext


class Train(Task):
    """``benchmark=train``: fit, validate and test with Lightning; reuse a finished checkpoint.

    The checkpoint lands in the model zoo folder (``paths.checkpoint_dir``), keyed by model,
    data, training recipe and seed, where ``model.weights=trained`` finds it. ``force=true``
    trains it anew.

    Args:
        progress: show Lightning's progress bar.
    """

    name = "train"
    headline = {"test_acc": True, "val_acc": True}

    def __init__(self, progress: bool = True) -> None:
        self.progress = bool(progress)

    def run(self, ctx: RunContext) -> Result:
        trainer = ctx.model_trainer()
        metrics = None if ctx.force else trainer.trained_metrics()
        reused = metrics is not None
        if metrics is None:  # a forced run trains anew instead of resuming
            metrics = dict(trainer.train(progress=self.progress, fresh=ctx.force))
            reused = bool(metrics.pop("reused", False))  # trained meanwhile by another run
        identity = {**ctx.identity, "seed": ctx.seed}
        rows = [
            {**identity, "benchmark": self.name, "metric": k, "value": float(v)}
            for k, v in metrics.items()
            if isinstance(v, int | float)
        ]
        summary = {**metrics, "checkpoint": str(trainer.checkpoint_dir), "reused": reused,
                   "headline": dict(self.headline)}  # fmt: skip
        return Result(pd.DataFrame(rows), summary)
