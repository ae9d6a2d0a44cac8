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
from collections.abc import Callable, Sequence

import pandas as pd
import torch
from matplotlib.figure import Figure

from xai_bench.benchmarks.base import Benchmark, Result
from xai_bench.methods.base import MethodNotApplicableError, input_gradient
from xai_bench.utils.memory import peak_bytes, reset_peak
from xai_bench.viz.figures import save_figure
from xai_bench.workspace import Workspace


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
        methods: method config names; empty means the run's own ``method``.
        batch_size: images per call (OPPSD's timing used 32).
        repeats: timed calls per method (the median is reported).
        warmup: untimed calls before timing.
        inputs: ``data`` (a batch of the test split) or ``random`` (standard normal inputs).
    """

    name = "efficiency"
    higher_is_better = False

    def __init__(
        self,
        methods: Sequence[str] = (),
        batch_size: int = 32,
        repeats: int = 5,
        warmup: int = 1,
        inputs: str = "data",
    ) -> None:
        self.methods = list(methods)
        self.batch_size = int(batch_size)
        self.repeats = int(repeats)
        self.warmup = int(warmup)
        self.inputs = inputs

    def _batch(self, ws: Workspace) -> torch.Tensor:
        if self.inputs == "random":
            gen = torch.Generator().manual_seed(ws.seed)
            return torch.randn(self.batch_size, *ws.meta.input_size, generator=gen).to(ws.device)
        batch = next(iter(ws.datamodule.dataloader("test", batch_size=self.batch_size)))
        return batch["image"].to(ws.device)

    def run(self, ws: Workspace) -> Result:
        model, x = ws.model, self._batch(ws)
        with torch.no_grad():
            target = model(x).argmax(1)
        n = x.shape[0]

        def forward() -> object:
            with torch.no_grad():
                return model(x)

        timings = {
            "forward": measure(forward, ws.device, self.repeats, self.warmup),
            "forward_backward": measure(
                lambda: input_gradient(model, x, target), ws.device, self.repeats, self.warmup
            ),
        }
        skipped = {}
        for name in self.methods or [str(ws.cfg.method.name)]:
            try:
                explainer = ws.explainer_named(name)
            except MethodNotApplicableError as err:
                skipped[name] = str(err)
                continue
            timings[name] = measure(
                lambda e=explainer: e(x, target), ws.device, self.repeats, self.warmup
            )
        floor_s, floor_m = timings["forward_backward"]
        rows = []
        identity = {k: v for k, v in ws.identity.items() if k != "method"}
        for name, (sec, mem) in timings.items():
            values = {
                "seconds_per_image": sec / n,
                "peak_mb_per_image": mem / n / 2**20,
                "time_ratio_to_fwd_bwd": sec / floor_s,
                "memory_ratio_to_fwd_bwd": mem / floor_m if floor_m > 0 else float("nan"),
            }
            context = {**identity, "benchmark": self.name, "method": name, "batch_size": n}
            for metric, value in values.items():
                rows.append({**context, "device": str(ws.device), "metric": metric, "value": value})
        table = pd.DataFrame(rows)
        path = self._figure(table, ws.run_dir / "efficiency.png")
        summary = {"device": str(ws.device), "batch_size": n, "skipped": skipped}
        summary.update({f"time_ratio/{k}": v[0] / floor_s for k, v in timings.items()})
        return Result(table, summary, [str(path)])

    @staticmethod
    def _figure(table: pd.DataFrame, path) -> object:
        ratios = table[table.metric == "time_ratio_to_fwd_bwd"]
        fig = Figure(figsize=(6, 0.3 * len(ratios) + 1.2))
        ax = fig.subplots()
        ax.barh(ratios.method, ratios.value)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("time / (forward + backward)")
        ax.invert_yaxis()
        return save_figure(fig, path)
