"""Efficiency: seconds and peak memory per image of each method beside the model's own floor.

The floor is a plain forward pass and a forward+backward pass (gradient of the target logit
w.r.t. the input) of the same model and batch. Each measurement follows ``warmup`` untimed calls
and is the median of ``repeats`` timed calls (CUDA synchronised). Memory is the peak above the
baseline at the start of the call: CUDA allocator peak on GPU, process peak RSS on CPU (Linux
``VmHWM``, reset before each measurement).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pandas as pd
import torch

from xai_bench.engine.batches import check_count
from xai_bench.engine.benchmark import Benchmark, Result, report_nan
from xai_bench.engine.context import RunContext
from xai_bench.engine.jobs import build_explainers, tidy_table
from xai_bench.methods.base import input_gradient
from xai_bench.metrics.aggregate import nan_counts
from xai_bench.utils.memory import peak_bytes, reset_peak
from xai_bench.viz.efficiency import time_ratios

INPUTS = ("data", "random")


def measure(
    fn: Callable[[], object], device: torch.device, repeats: int, warmup: int
) -> tuple[float, float]:
    """Median seconds of ``fn`` over ``repeats`` calls after ``warmup``, and peak bytes used."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *_: None)
    for _ in range(warmup):
        fn()
    times, peaks = [], []
    for _ in range(repeats):
        base = reset_peak(device)
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
        peaks.append(max(peak_bytes(device) - base, 0))
    return statistics.median(times), float(max(peaks))


class Efficiency(Benchmark):
    """``benchmark=efficiency``: runtime and memory of methods, absolute and as floor ratios.

    Args:
        batch_size: images per call (OPPSD's timing used 32).
        repeats: timed calls per method (the median is reported).
        warmup: untimed calls before timing.
        inputs: ``data`` (a batch of the test split) or ``random`` (standard normal inputs).
    """

    name = "efficiency"
    headline = {"time_ratio_to_fwd_bwd": False, "memory_ratio_to_fwd_bwd": False}

    def __init__(
        self,
        batch_size: int = 32,
        repeats: int = 5,
        warmup: int = 1,
        inputs: str = "data",
    ) -> None:
        if inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
        self.batch_size = check_count(int(batch_size), "batch_size")
        self.repeats = check_count(int(repeats), "repeats")
        self.warmup = check_count(int(warmup), "warmup", low=0)
        self.inputs = inputs

    @property
    def reads_data(self) -> bool:
        """Random inputs read no image."""
        return self.inputs != "random"

    def _batch(self, ctx: RunContext) -> torch.Tensor:
        if self.inputs == "random":
            gen = torch.Generator().manual_seed(ctx.seed)
            return torch.randn(self.batch_size, *ctx.meta.input_size, generator=gen).to(ctx.device)
        batch = next(iter(ctx.datamodule.dataloader("test", batch_size=self.batch_size)))
        return batch["image"].to(ctx.device)

    def run(self, ctx: RunContext) -> Result:
        model, x = ctx.model, self._batch(ctx)
        with torch.no_grad():
            target = model(x).argmax(1)
        n = x.shape[0]

        def forward() -> object:
            with torch.no_grad():
                return model(x)

        timings = {
            "forward": measure(forward, ctx.device, self.repeats, self.warmup),
            "forward_backward": measure(
                lambda: input_gradient(model, x, target), ctx.device, self.repeats, self.warmup
            ),
        }
        built, skipped = build_explainers(ctx)
        labels = {}
        for spec, explainer in built:
            labels[spec.label] = spec
            timings[spec.label] = measure(
                lambda e=explainer: e(x, target), ctx.device, self.repeats, self.warmup
            )
        floor_s, floor_m = timings["forward_backward"]
        rows = []
        for name, (sec, mem) in timings.items():
            values = {
                "seconds_per_image": sec / n,
                "peak_mb_per_image": mem / n / 2**20,
                "time_ratio_to_fwd_bwd": sec / floor_s,
                "memory_ratio_to_fwd_bwd": mem / floor_m if floor_m > 0 else float("nan"),
            }
            method = labels[name].identity if name in labels else {"method": name}
            for metric, value in values.items():
                rows.append({**method, "batch_size": n, "device": str(ctx.device),
                             "metric": metric, "value": value})  # fmt: skip
        table = tidy_table(ctx, self.name, pd.DataFrame(rows), skipped)
        path = time_ratios(table, ctx.run_dir / "efficiency.png", repeats=self.repeats)
        summary = {"device": str(ctx.device), "batch_size": n, "skipped": skipped,
                   "headline": dict(self.headline)}  # fmt: skip
        summary.update({f"time_ratio/{k}": v[0] / floor_s for k, v in timings.items()})
        summary["nonfinite"] = report_nan(
            self.name, nan_counts(pd.DataFrame(rows)), skipped, "undefined: zero memory floor"
        )
        return Result(table, summary, [str(path)])
