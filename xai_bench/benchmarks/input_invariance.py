"""Input invariance (Kindermans et al., "(Un)reliability of saliency methods").

The evaluated network ``f1`` gets a twin ``f2`` (:func:`~xai_bench.models.shift.shifted_twin`,
first-layer bias ``b2 = b1 - W m2``) with ``f2(x + m2) == f1(x)``; a method is input invariant
when its map of ``f2`` on ``x + m2`` equals its map of ``f1`` on ``x`` for the same target.
Shifts: ``constant`` (``m2 = -1``: inputs [0, 1] -> [-1, 0], UNREL §2), ``checkerboard`` (a
checkered box image, UNREL §4) and ``crafted`` (``m2 = s_hat / (df1/dx) - x`` for one sample,
clipped to [-0.3, 0.3], so that the twin's gradient x input shows a chosen image ``s_hat``).

Both networks are deep copies in the evaluation precision (``float64`` by default, where mask
flips from rounding cannot occur). Data-dependent method inputs follow the shifted data:
PatternNet/PatternAttribution patterns of ``f2`` are fitted on the shifted training batches,
IG's ``black`` baseline is the minimum of the (shifted) training data, and noise-tunnel methods
(SmoothGrad) use the same noise and, by default, the same absolute noise level for both
networks, so that any difference comes from the shift alone.

A chunk per (method, shift) holds the largest difference over all images, so this benchmark
runs its own loop over the engine's pieces (batch plan, specs, chunk store, tidy table).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from xai_bench.data.base import check_split
from xai_bench.engine.batches import BatchPlan, check_count, check_target
from xai_bench.engine.benchmark import Benchmark, Result, report_nan
from xai_bench.engine.context import RunContext
from xai_bench.engine.jobs import chunk_store, tidy_table
from xai_bench.methods.base import Explainer, MethodNotApplicableError
from xai_bench.methods.spec import MethodSpec
from xai_bench.metrics.aggregate import NONFINITE, nan_counts
from xai_bench.metrics.invariance import (
    TOLERANCE,
    Shift,
    compare_explainers,
    crafted,
    crafted_pearson,
    photo_target,
    twin_check,
)
from xai_bench.models.shift import checkerboard_shift, constant_shift, first_layer, shifted_twin
from xai_bench.utils.errors import UserInputError
from xai_bench.utils.io import atomic_write
from xai_bench.viz.invariance import invariance_figures

SHIFTS = ("constant", "checkerboard", "crafted")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
LOGIT_TOLERANCE = {"float32": 1e-4, "float64": 1e-9}
NOISE_MODES = ("absolute", "config")
CRAFTED_TARGETS = ("digit", "photo")
WRAPPER = "smoothgrad"  # the method config whose noise tunnel `smoothgrad_over` reuses

#: (row identity, spec built on each network, noise tunnel around it (smoothgrad_over) or None)
Entry = tuple[MethodSpec, MethodSpec, MethodSpec | None]
Batches = list[tuple[Tensor, Tensor, Tensor]]  # (x in the evaluation dtype, target, label)


def with_params(spec: MethodSpec, params: Mapping[str, Any]) -> MethodSpec:
    """``spec`` with explainer arguments replaced (same label; a new hash)."""
    if not params:
        return spec
    config = copy.deepcopy(dict(spec.config))
    config["explainer"] = {**config["explainer"], **params}
    return MethodSpec(spec.label, spec.config_name, {**spec.params, **params}, config)


def wrapped(wrapper: MethodSpec, base: MethodSpec) -> MethodSpec:
    """The spec of ``base`` inside ``wrapper``'s noise tunnel, labelled ``<wrapper>(<base>)``;
    its hash covers both configs."""
    explainer = {**wrapper.config["explainer"], "base": dict(base.config["explainer"])}
    return MethodSpec(
        f"{wrapper.label}({base.label})",
        wrapper.config_name,
        {**wrapper.params, "base": base.label},
        {"name": wrapper.config_name, "explainer": explainer},
    )


class InputInvariance(Benchmark):
    """``benchmark=input_invariance``: maps of a network and its mean-shifted twin (UNREL).

    Rows per (method, shift): ``max_abs_diff`` and ``rel_diff`` (largest over images of
    ``max |map1 - map2| / max |map1|``) and ``invariant`` (1 when ``rel_diff <= tolerance``);
    per shift, ``model`` rows check the twin (``logit_max_abs_diff``, accuracies on ``split``);
    the crafted shift adds ``pearson_target*`` rows (gradient x input vs ``s_hat``).

    Args:
        smoothgrad_over: labels of the run's methods to also run inside the noise tunnel of
            its ``smoothgrad`` method (UNREL Fig. 4), labelled ``smoothgrad(<label>)``.
        shifts: any of ``constant``, ``checkerboard``, ``crafted``.
        constant_value: ``m2`` of the constant shift.
        checker_cells: squares per side of the checkerboard.
        checker_values: the two values of the checkerboard.
        crafted_target: ``s_hat``: ``digit`` (the first evaluated image of another class) or
            ``photo`` (scikit-learn's ``china.jpg`` in gray), scaled to [0, 1] and then by
            ``crafted_clip * max |df1/dx|`` (its bright pixels use the whole clip range).
        crafted_clip: bound of the crafted shift (UNREL: 0.3).
        crafted_index: which evaluated image is the crafted sample ``x_hat``.
        n_images: evaluated images (seeded subset of ``split``).
        batch_size: images per explainer call.
        split: evaluated split (accuracies use all of it).
        target: ``predicted`` or ``label``.
        dtype: ``float64`` or ``float32`` evaluation precision of both networks.
        tolerance: relative difference up to which a method counts as invariant; ``None``:
            1e-4 (float64) or 1e-3 (float32, where rounding alone reaches ~1e-4).
        logit_tolerance: bound of the twin check relative to ``max(1, max |logit|)``; ``None``:
            1e-9 (float64) or 1e-4 (float32).
        noise: ``absolute`` (range-relative noise of SmoothGrad-type methods becomes ``sigma x``
            the value range of the original training data for both networks) or ``config``.
        fit_split: split for fitted patterns and the data minimum (the ``black`` baseline).
        fit_batch_size: loader batch size of ``fit_split``.
        n_figure: images shown per shift figure.
    """

    name = "input_invariance"
    headline = {"invariant": True, "rel_diff": False}

    def __init__(
        self,
        smoothgrad_over: Sequence[str] = (),
        shifts: Sequence[str] = SHIFTS,
        constant_value: float = -1.0,
        checker_cells: int = 4,
        checker_values: Sequence[float] = (-1.0, 0.0),
        crafted_target: str = "digit",
        crafted_clip: float = 0.3,
        crafted_index: int = 0,
        n_images: int = 32,
        batch_size: int = 32,
        split: str = "test",
        target: str = "predicted",
        dtype: str = "float64",
        tolerance: float | None = None,
        logit_tolerance: float | None = None,
        noise: str = "absolute",
        fit_split: str = "train",
        fit_batch_size: int = 256,
        n_figure: int = 3,
    ) -> None:
        for value, allowed, what in (
            (dtype, tuple(DTYPES), "dtype"),
            (noise, NOISE_MODES, "noise"),
            (crafted_target, CRAFTED_TARGETS, "crafted_target"),
            *((s, SHIFTS, "shift") for s in shifts),
        ):
            if value not in allowed:
                raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
        if len(checker_values) != 2:
            raise ValueError("checker_values needs two values")
        if n_images < 1 or not 0 <= crafted_index < n_images:
            raise ValueError("need n_images >= 1 and 0 <= crafted_index < n_images")
        self.plan = BatchPlan(split, int(n_images), int(batch_size), check_target(target))
        self.smoothgrad_over = list(smoothgrad_over)
        self.shifts = list(shifts)
        self.constant_value, self.checker_cells = float(constant_value), int(checker_cells)
        self.checker_values = [float(v) for v in checker_values]
        self.crafted_target, self.crafted_clip = crafted_target, float(crafted_clip)
        self.crafted_index = int(crafted_index)
        self.dtype = dtype
        self.tolerance = TOLERANCE[dtype] if tolerance is None else float(tolerance)
        self.logit_tolerance = (
            LOGIT_TOLERANCE[dtype] if logit_tolerance is None else float(logit_tolerance)
        )
        check_split(fit_split, "fit_split")
        check_count(int(fit_batch_size), "fit_batch_size")
        check_count(int(checker_cells), "checker_cells")
        check_count(int(n_figure), "n_figure", low=0)
        self.noise, self.fit_split, self.fit_batch_size = noise, fit_split, int(fit_batch_size)
        self.n_figure = int(n_figure)

    def params(self) -> dict[str, Any]:
        """What changes the numbers beyond the context's fingerprint (the method specs key the
        chunks themselves)."""
        skip = ("plan", "smoothgrad_over", "n_figure")
        return {
            "args": {k: v for k, v in vars(self).items() if k not in skip},
            "plan": vars(self.plan),
        }

    # ---------------------------------------------------------------- methods
    def entries(self, ctx: RunContext) -> list[Entry]:
        """The run's methods, then ``smoothgrad(<label>)`` per ``smoothgrad_over`` label.

        Raises:
            UserInputError: a ``smoothgrad_over`` label is not a method of the run, or the run
                has no ``smoothgrad`` method to take the noise tunnel from.
        """
        out: list[Entry] = [(spec, spec, None) for spec in ctx.methods]
        if not self.smoothgrad_over:
            return out
        tunnels = [s for s in ctx.methods if s.config_name == WRAPPER]
        if not tunnels:
            raise UserInputError(
                f"{self.name}: smoothgrad_over needs a `{WRAPPER}` entry in benchmark.methods "
                "(its noise tunnel wraps the listed methods)"
            )
        labels = ctx.methods.labels()
        for label in self.smoothgrad_over:
            if label not in labels:
                raise UserInputError(
                    f"{self.name}: smoothgrad_over lists '{label}', which is not a label of "
                    f"benchmark.methods ({', '.join(labels)})"
                )
            base = ctx.methods.by_label(label)
            out.append((wrapped(tunnels[0], base), base, tunnels[0]))
        return out

    def _fit_batches(self, ctx: RunContext, m2: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """``(x + m2, label)`` batches of the fit split, in the evaluation precision."""
        loader = ctx.datamodule.dataloader(self.fit_split, batch_size=self.fit_batch_size)
        for b in loader:
            yield b["image"].to(ctx.device, DTYPES[self.dtype]) + m2, b["label"].to(ctx.device)

    def _noise(self, spec: MethodSpec, data_range: float) -> dict[str, Any]:
        node = spec.config.get("explainer", {})
        if self.noise == "absolute" and node.get("sigma_mode") == "range":
            return {"sigma_mode": "absolute", "sigma": float(node["sigma"]) * data_range}
        return {}

    def _build(
        self, ctx: RunContext, entry: Entry, net: nn.Module, shift: Shift, data_range: float
    ) -> Explainer:
        """The method of ``entry`` for ``net``, with its data-dependent inputs from ``shift``."""
        _, base, tunnel = entry
        params = self._noise(base, data_range)
        if base.config.get("explainer", {}).get("baseline") == "black":
            params["black_value"] = shift.data_min
        fit = self._fit_batches(ctx, shift.m2)
        explainer = ctx.explainer(with_params(base, params), model=net, fit_batches=fit)
        if tunnel is None:
            return explainer
        sg = ctx.explainer(with_params(tunnel, self._noise(tunnel, data_range)), model=net)
        return type(sg)(
            model=net, meta=ctx.meta, base=lambda **_: explainer, n_samples=sg.n_samples,
            sigma=sg.sigma, sigma_mode=sg.sigma_mode,
            internal_batch_size=sg.internal_batch_size, seed=sg.seed,
        )  # fmt: skip

    # ---------------------------------------------------------------- shifts
    def _data_range(self, ctx: RunContext, shifts: list[Shift]) -> tuple[float, float]:
        """Min and max of the fit split; sets each shift's ``data_min`` (min of ``x + m2``)."""
        lo = hi = None
        for x, _ in self._fit_batches(ctx, torch.zeros((), device=ctx.device)):
            lo = x.amin(0) if lo is None else torch.minimum(lo, x.amin(0))
            hi = x.amax(0) if hi is None else torch.maximum(hi, x.amax(0))
        if lo is None or hi is None:
            raise ValueError(f"split '{self.fit_split}' is empty")
        for s in shifts:
            s.data_min = float((lo + s.m2).min())
        return float(lo.min()), float(hi.max())

    def _crafted(self, ctx: RunContext, model: nn.Module, batches: Batches) -> Shift:
        """UNREL §4: the shift that makes gradient x input of ``x_hat`` show ``s_hat``."""
        xs, ts, ys = (torch.cat(part) for part in zip(*batches))
        i = self.crafted_index
        x_hat = xs[i]
        if self.crafted_target == "digit":
            other = (ys != ys[i]).nonzero().flatten()
            if not len(other):
                raise ValueError("crafted_target=digit needs an evaluated image of another class")
            image = ctx.datamodule.denormalize(xs[other[:1]])[0]
        else:
            image = photo_target(tuple(x_hat.shape), x_hat)
        return crafted(model, x_hat, ts[i], image, self.crafted_clip)

    def _shifts(self, ctx: RunContext, model: nn.Module, batches: Batches) -> list[Shift]:
        shape = tuple(batches[0][0].shape[1:])
        make = {
            "constant": lambda: Shift("constant", constant_shift(shape, self.constant_value)),
            "checkerboard": lambda: Shift(
                "checkerboard", checkerboard_shift(shape, self.checker_cells, self.checker_values)
            ),
            "crafted": lambda: self._crafted(ctx, model, batches),
        }
        shifts = [make[name]() for name in self.shifts]
        for s in shifts:
            s.m2 = s.m2.to(ctx.device, DTYPES[self.dtype])
        return shifts

    # ---------------------------------------------------------------- chunks
    def _model_rows(
        self, ctx: RunContext, model: nn.Module, twin: nn.Module, shift: Shift
    ) -> pd.DataFrame:
        """Twin check (raises if not equivalent) and accuracies of both nets on ``split``."""
        loader = ctx.datamodule.dataloader(self.plan.split, batch_size=self.fit_batch_size)
        dev, dtype = ctx.device, DTYPES[self.dtype]
        batches = ((b["image"].to(dev, dtype), b["label"].to(dev)) for b in loader)
        accuracy = not ctx.meta.multilabel
        values = twin_check(model, twin, batches, shift.m2, self.logit_tolerance, accuracy)
        return pd.DataFrame([{"metric": k, "value": v} for k, v in values.items()])

    def _compare(
        self,
        ctx: RunContext,
        entry: Entry,
        nets: tuple[nn.Module, nn.Module],
        shifts: tuple[Shift, Shift],
        span: float,
        batches: Batches,
        originals: dict[str, Any],
        path: Path,
    ) -> pd.DataFrame:
        """One (method, shift) chunk: maps of both networks over all batches, compared.

        The maps of the first batch are saved to ``path`` for the figures; the original
        network's explainer is built once per method (``originals``).
        """
        label = entry[0].label
        try:
            if label not in originals:
                originals[label] = self._build(ctx, entry, nets[0], shifts[0], span)
            e1 = originals[label]
            if isinstance(e1, MethodNotApplicableError):
                raise e1
            e2 = self._build(ctx, entry, nets[1], shifts[1], span)
        except MethodNotApplicableError as err:
            originals[label] = err
            return pd.DataFrame([{"metric": "applicable", "value": 0.0, "note": str(err)}])
        pairs = ((x, t) for x, t, _ in batches)
        values, note, shown = compare_explainers(e1, e2, pairs, shifts[1].m2, self.tolerance)
        atomic_write(path, lambda p: torch.save(shown, p))
        return pd.DataFrame([{"metric": k, "value": v, "note": note} for k, v in values.items()])

    # ---------------------------------------------------------------- run
    def run(self, ctx: RunContext) -> Result:
        entries = self.entries(ctx)  # bad `smoothgrad_over` labels fail before any computation
        dtype = DTYPES[self.dtype]
        model = copy.deepcopy(ctx.model).to(dtype)  # f1, in the evaluation precision
        first_layer(model, tuple(ctx.meta.input_size))  # refuse models the twin cannot handle
        evaluated = (self.plan.batch(ctx, n) for n in range(self.plan.n_batches(ctx)))
        batches = [(b.x.to(dtype), b.target, b.sample["label"].to(ctx.device)) for b in evaluated]
        n_eval = sum(len(b[0]) for b in batches)
        if self.crafted_index >= n_eval or self.n_figure > len(batches[0][0]):
            raise ValueError(f"crafted_index / n_figure exceed the {n_eval} evaluated images")
        shifts = self._shifts(ctx, model, batches)
        lo, hi = self._data_range(ctx, shifts)
        zero = Shift("none", torch.zeros_like(shifts[0].m2), data_min=lo)
        store = chunk_store(ctx, self.name, self.params())
        originals: dict[str, Any] = {}
        parts, maps = [], {}
        twins = [shifted_twin(model, s.m2) for s in shifts]  # refuses unsupported first layers
        for shift, twin in zip(shifts, twins):
            compute = partial(self._model_rows, ctx, model, twin, shift)
            tab = store.cached(f"model/shift={shift.name}", compute)
            parts.append(tab.assign(method="model", shift=shift.name))
            if shift.name == "crafted":
                rows = [{"metric": k, "value": v} for k, v in crafted_pearson(model, shift).items()]
                parts.append(pd.DataFrame(rows).assign(method="input_x_gradient", shift="crafted"))
            for entry in entries:
                spec = entry[0]
                key = f"{spec.key}/shift={shift.name}"
                path = store.path(key).with_suffix(".pt")
                compute = partial(
                    self._compare, ctx, entry, (model, twin), (zero, shift), hi - lo, batches,
                    originals, path,
                )  # fmt: skip
                tab = store.cached(key, compute)
                parts.append(tab.assign(**spec.identity, shift=shift.name))
                if path.is_file():
                    maps[(spec.label, shift.name)] = torch.load(path, weights_only=True)
        rows = self._rows(pd.concat(parts, ignore_index=True))
        table = tidy_table(ctx, self.name, rows, {})
        skipped = rows[rows.metric == "applicable"]
        summary = {"n_images": n_eval, **self.summarize(rows), "data_range": [lo, hi]}
        summary["skipped"] = dict(zip(skipped.method, skipped.note))
        flagged = rows.assign(**{NONFINITE: rows.note.str.startswith("non-finite")})
        counts = nan_counts(flagged[flagged.method != "model"])
        summary["nonfinite"] = report_nan(
            self.name, counts, summary["skipped"], "undefined: constant map (Pearson)"
        )
        summary.update(chunks_loaded=len(store.loaded), chunks_computed=len(store.computed))
        summary["headline"] = dict(self.headline)
        x, labels = batches[0][0][: self.n_figure].cpu(), [e[0].label for e in entries]
        figures = invariance_figures(x, shifts, labels, maps, rows, ctx.run_dir)
        return Result(table, summary, [str(p) for p in figures])

    def _rows(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Chunk rows with the run's settings, in the results' column order."""
        rows["note"] = rows["note"].fillna("") if "note" in rows else ""
        rows = rows.assign(dtype=self.dtype, tolerance=self.tolerance, n_images=self.plan.n_images)
        first = ["method", "method_config", "method_hash", "metric", "value", "shift"]
        return rows.reindex(columns=[*first, "dtype", "tolerance", "n_images", "note"])

    def summarize(self, rows: pd.DataFrame) -> dict[str, Any]:
        """Invariant / not invariant method labels per shift, the twin checks and the crafted
        shift's Pearson values and methods not applicable (the run adds ``nonfinite``: NaN
        rows per method, e.g. all three of a (method, shift) with a non-finite map)."""
        summary: dict[str, Any] = {"dtype": self.dtype, "tolerance": self.tolerance}
        inv = rows[rows.metric == "invariant"]
        for shift, part in inv.groupby("shift", sort=False):
            summary[f"invariant/{shift}"] = list(part[part.value == 1].method)
            # NaN (a non-finite map) is in neither list: see `nonfinite`
            summary[f"not_invariant/{shift}"] = list(part[part.value == 0].method)
        for _, r in rows[rows.method == "model"].iterrows():
            summary[f"{r.metric}/{r['shift']}"] = float(r.value)
        for _, r in rows[rows.metric.str.startswith("pearson")].iterrows():
            summary[r.metric] = float(r.value)
        summary["not_applicable"] = sorted(set(rows[rows.metric == "applicable"].method))
        return summary
