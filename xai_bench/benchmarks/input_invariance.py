"""Input invariance (Kindermans et al., "(Un)reliability of saliency methods"; spec §1.7).

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
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xai_bench.benchmarks.base import Benchmark, Result
from xai_bench.benchmarks.common import (
    check_target,
    eval_batches,
    method_config,
    method_names,
    partial_store,
)
from xai_bench.methods.base import Explainer, MethodNotApplicableError, input_gradient
from xai_bench.models.shift import (
    assert_same_logits,
    checkerboard_shift,
    constant_shift,
    crafted_shift,
    first_layer,
    shifted_twin,
)
from xai_bench.utils.hashing import stable_hash
from xai_bench.utils.io import atomic_write
from xai_bench.viz.invariance import crafted_figure, shift_figure
from xai_bench.workspace import Workspace

DEFAULT_METHODS = (
    "gradient", "guided_backprop", "pattern_net", "pattern_attribution", "input_x_gradient",
    "integrated_gradients", "integrated_gradients_black", "lrp_0", "smoothgrad",
)  # fmt: skip
SHIFTS = ("constant", "checkerboard", "crafted")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
LOGIT_TOLERANCE = {"float32": 1e-4, "float64": 1e-9}
TOLERANCE = {"float32": 1e-3, "float64": 1e-4}
NOISE_MODES = ("absolute", "config")
CRAFTED_TARGETS = ("digit", "photo")


@dataclass
class Shift:
    """One input shift ``m2`` ``[C, H, W]`` and the minimum of the shifted training data."""

    name: str
    m2: Tensor
    data_min: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


def compare_maps(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Per image ``[B]``: ``max |a - b|`` and that over ``max |a|`` (``a``: the original's map).

    A zero original map gives a relative difference of 0 if ``b`` is zero too, else ``inf``;
    an image with a non-finite value in either map gives NaN for both.
    """
    a, b = a.double().flatten(1), b.double().flatten(1)
    diff = (a - b).abs().amax(1)
    scale = a.abs().amax(1)
    rel = torch.where(scale > 0, diff / scale.clamp_min(1e-300), diff * math.inf)
    rel = torch.where(diff == 0, 0.0, rel)
    finite = torch.isfinite(a).all(1) & torch.isfinite(b).all(1)
    return diff.where(finite, math.nan), rel.where(finite, math.nan)


def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two maps over all their values (NaN if one is constant)."""
    a, b = a.double().flatten(), b.double().flatten()
    a, b = a - a.mean(), b - b.mean()
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else math.nan


class InputInvariance(Benchmark):
    """``benchmark=input_invariance``: maps of a network and its mean-shifted twin (UNREL).

    Rows per (method, shift): ``max_abs_diff`` and ``rel_diff`` (largest over images of
    ``max |map1 - map2| / max |map1|``) and ``invariant`` (1 when ``rel_diff <= tolerance``);
    per shift, ``model`` rows check the twin (``logit_max_abs_diff``, accuracies on ``split``);
    the crafted shift adds ``pearson_target*`` rows (gradient x input vs ``s_hat``).

    Args:
        methods: method config names (empty: the run's own method).
        smoothgrad_over: methods to also run inside the ``smoothgrad`` config's wrapper (UNREL
            Fig. 4), labelled ``smoothgrad(<name>)``.
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
    higher_is_better = True

    def __init__(
        self,
        methods: Sequence[str] = DEFAULT_METHODS,
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
        self.methods, self.smoothgrad_over = list(methods), list(smoothgrad_over)
        self.shifts = list(shifts)
        self.constant_value, self.checker_cells = float(constant_value), int(checker_cells)
        self.checker_values = [float(v) for v in checker_values]
        self.crafted_target, self.crafted_clip = crafted_target, float(crafted_clip)
        self.crafted_index, self.n_images = int(crafted_index), int(n_images)
        self.batch_size, self.split, self.target = int(batch_size), split, check_target(target)
        self.dtype = dtype
        self.tolerance = TOLERANCE[dtype] if tolerance is None else float(tolerance)
        self.logit_tolerance = (
            LOGIT_TOLERANCE[dtype] if logit_tolerance is None else float(logit_tolerance)
        )
        self.noise, self.fit_split, self.fit_batch_size = noise, fit_split, int(fit_batch_size)
        self.n_figure = int(n_figure)

    # ---------------------------------------------------------------- inputs and explainers
    def _fit_batches(self, ws: Workspace, m2: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """``(x + m2, label)`` batches of the fit split, in the evaluation precision."""
        loader = ws.datamodule.dataloader(self.fit_split, batch_size=self.fit_batch_size)
        for b in loader:
            yield b["image"].to(ws.device, DTYPES[self.dtype]) + m2, b["label"].to(ws.device)

    def _data_range(self, ws: Workspace, shifts: list[Shift]) -> tuple[float, float]:
        """Min and max of the fit split; sets each shift's ``data_min`` (min of ``x + m2``)."""
        lo = hi = None
        for x, _ in self._fit_batches(ws, torch.zeros((), device=ws.device)):
            lo = x.amin(0) if lo is None else torch.minimum(lo, x.amin(0))
            hi = x.amax(0) if hi is None else torch.maximum(hi, x.amax(0))
        if lo is None or hi is None:
            raise ValueError(f"split '{self.fit_split}' is empty")
        for s in shifts:
            s.data_min = float((lo + s.m2).min())
        return float(lo.min()), float(hi.max())

    def _noise(self, node: dict[str, Any], data_range: float) -> dict[str, Any]:
        if self.noise == "absolute" and node.get("sigma_mode") == "range":
            return {"sigma_mode": "absolute", "sigma": float(node["sigma"]) * data_range}
        return {}

    def _build(
        self, ws: Workspace, label: str, net: nn.Module, shift: Shift, data_range: float
    ) -> Explainer:
        """The method ``label`` for ``net``, with its data-dependent inputs from ``shift``."""
        smooth = label.startswith("smoothgrad(")
        name = label[11:-1] if smooth else label  # smoothgrad(<name>)
        node = method_config(ws, name).get("explainer", {})
        params = self._noise(node, data_range)
        if node.get("baseline") == "black":
            params["black_value"] = shift.data_min
        base = ws.explainer_named(
            name, model=net, fit_batches=self._fit_batches(ws, shift.m2), **params
        )
        if not smooth:
            return base
        sg_node = method_config(ws, "smoothgrad")["explainer"]
        sg = ws.explainer_named("smoothgrad", model=net, **self._noise(sg_node, data_range))
        return type(sg)(
            model=net, meta=ws.meta, base=lambda **_: base, n_samples=sg.n_samples,
            sigma=sg.sigma, sigma_mode=sg.sigma_mode,
            internal_batch_size=sg.internal_batch_size, seed=sg.seed,
        )  # fmt: skip

    # ---------------------------------------------------------------- shifts
    def _crafted(self, ws: Workspace, model: nn.Module, batches: list) -> Shift:
        """UNREL §4: the shift that makes gradient x input of ``x_hat`` show ``s_hat``."""
        xs, ts, ys = (torch.cat(part) for part in zip(*batches))
        i = self.crafted_index
        x_hat, t_hat = xs[i], ts[i]
        grad = input_gradient(model, x_hat[None], t_hat[None])[0][0]
        if self.crafted_target == "digit":
            other = (ys != ys[i]).nonzero().flatten()
            if not len(other):
                raise ValueError("crafted_target=digit needs an evaluated image of another class")
            img = ws.datamodule.denormalize(xs[other[:1]])[0]
        else:
            from sklearn.datasets import load_sample_image

            photo = torch.tensor(load_sample_image("china.jpg"), dtype=torch.float64).mean(2)
            img = F.interpolate(photo[None, None], size=tuple(x_hat.shape[1:]), mode="area")[0]
            img = img.to(x_hat).expand_as(x_hat)
        img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-12)
        s_hat = self.crafted_clip * grad.abs().max() * img
        m2, raw = crafted_shift(grad, x_hat, s_hat, clip=self.crafted_clip)
        info = {"x_hat": x_hat, "t_hat": t_hat, "grad": grad, "s_hat": s_hat, "raw": raw}
        return Shift("crafted", m2, info=info)

    def _shifts(self, ws: Workspace, model: nn.Module, batches: list) -> list[Shift]:
        shape = tuple(batches[0][0].shape[1:])
        make = {
            "constant": lambda: Shift("constant", constant_shift(shape, self.constant_value)),
            "checkerboard": lambda: Shift(
                "checkerboard", checkerboard_shift(shape, self.checker_cells, self.checker_values)
            ),
            "crafted": lambda: self._crafted(ws, model, batches),
        }
        shifts = [make[name]() for name in self.shifts]
        for s in shifts:
            s.m2 = s.m2.to(ws.device, DTYPES[self.dtype])
        return shifts

    def _crafted_rows(self, model: nn.Module, shift: Shift) -> dict[str, float]:
        """Pearson of gradient x input with ``s_hat``: original, twin (raw / clipped shift)."""
        x, t, s_hat = shift.info["x_hat"][None], shift.info["t_hat"][None], shift.info["s_hat"]
        gi = {"pearson_target_original": x * input_gradient(model, x, t)[0]}
        for metric, m2 in (
            ("pearson_target_unclipped", shift.info["raw"]),
            ("pearson_target", shift.m2),
        ):
            twin = shifted_twin(model, m2)
            gi[metric] = (x + m2) * input_gradient(twin, x + m2, t)[0]
        shift.info["gi"] = {k: v[0] for k, v in gi.items()}
        return {k: pearson(v, s_hat) for k, v in gi.items()}

    # ---------------------------------------------------------------- chunks
    def _model_rows(
        self, ws: Workspace, model: nn.Module, twin: nn.Module, shift: Shift
    ) -> pd.DataFrame:
        """Twin check (raises if not equivalent) and accuracies of both nets on ``split``."""
        worst, correct, n = 0.0, [0, 0], 0
        with torch.no_grad():
            for b in ws.datamodule.dataloader(self.split, batch_size=self.fit_batch_size):
                x = b["image"].to(ws.device, DTYPES[self.dtype])
                out = (model(x), twin(x + shift.m2))
                worst = max(worst, assert_same_logits(*out, self.logit_tolerance))
                if not ws.meta.multilabel:
                    y = b["label"].to(ws.device)
                    correct = [c + int((o.argmax(1) == y).sum()) for c, o in zip(correct, out)]
                n += len(x)
        values = {"logit_max_abs_diff": worst}
        if not ws.meta.multilabel:
            values.update(accuracy_original=correct[0] / n, accuracy_twin=correct[1] / n)
        return pd.DataFrame(
            [{"method": "model", "metric": k, "value": v} for k, v in values.items()]
        )

    def _compare(
        self,
        ws: Workspace,
        label: str,
        nets: tuple[nn.Module, nn.Module],
        shifts: tuple[Shift, Shift],
        span: float,
        batches: list,
        originals: dict[str, Any],
        path: Path,
    ) -> pd.DataFrame:
        """One (method, shift) chunk: maps of both networks over all batches, compared.

        The maps of the first batch are saved to ``path`` for the figures; the original
        network's explainer is built once per method (``originals``).
        """
        try:
            if label not in originals:
                originals[label] = self._build(ws, label, nets[0], shifts[0], span)
            e1 = originals[label]
            if isinstance(e1, MethodNotApplicableError):
                raise e1
            e2 = self._build(ws, label, nets[1], shifts[1], span)
        except MethodNotApplicableError as err:
            originals[label] = err
            return pd.DataFrame([{"metric": "applicable", "value": 0.0, "note": str(err)}])
        m2, diffs, rels, shown = shifts[1].m2, [], [], None
        for x, t, _ in batches:
            a, b = e1(x, t), e2(x + m2, t)
            d, r = compare_maps(a, b)
            diffs.append(d)
            rels.append(r)
            if shown is None:
                shown = (a.cpu(), b.cpu())  # the first batch, for any n_figure
        atomic_write(path, lambda p: torch.save(shown, p))
        d, r = torch.cat(diffs), torch.cat(rels)
        bad = int(r.isnan().sum())
        values = {
            "max_abs_diff": math.nan if bad else float(d.max()),
            "rel_diff": math.nan if bad else float(r.max()),
            "invariant": float(not bad and float(r.max()) <= self.tolerance),
        }
        note = f"non-finite maps for {bad} images" if bad else ""
        return pd.DataFrame([{"metric": k, "value": v, "note": note} for k, v in values.items()])

    # ---------------------------------------------------------------- run
    def run(self, ws: Workspace) -> Result:
        dtype = DTYPES[self.dtype]
        model = copy.deepcopy(ws.model).to(dtype)  # f1, in the evaluation precision
        first_layer(model, tuple(ws.meta.input_size))  # refuse models the twin cannot handle
        batches = [
            (b.x.to(dtype), b.target, b.sample["label"].to(ws.device))
            for b in eval_batches(ws, self.split, self.n_images, self.batch_size, self.target)
        ]
        n_eval = sum(len(b[0]) for b in batches)
        if self.crafted_index >= n_eval or self.n_figure > len(batches[0][0]):
            raise ValueError(f"crafted_index / n_figure exceed the {n_eval} evaluated images")
        shifts = self._shifts(ws, model, batches)
        lo, hi = self._data_range(ws, shifts)
        zero = Shift("none", torch.zeros_like(shifts[0].m2), data_min=lo)
        labels = method_names(ws, self.methods)
        labels += [f"smoothgrad({m})" for m in self.smoothgrad_over]
        store = partial_store(ws, self.params(ws))
        originals: dict[str, Any] = {}
        tables, maps = [], {}
        twins = [shifted_twin(model, s.m2) for s in shifts]  # refuses unsupported first layers
        for shift, twin in zip(shifts, twins):
            key = f"model/shift={shift.name}"
            tab = store.cached(key, partial(self._model_rows, ws, model, twin, shift))
            tables.append(tab.assign(shift=shift.name))
            if shift.name == "crafted":
                rows = [
                    {"method": "input_x_gradient", "metric": k, "value": v}
                    for k, v in self._crafted_rows(model, shift).items()
                ]
                tables.append(pd.DataFrame(rows).assign(shift=shift.name))
            for label in labels:
                key = self._key(ws, label, shift.name)
                path = store.path(key).with_suffix(".pt")
                compute = partial(
                    self._compare, ws, label, (model, twin), (zero, shift), hi - lo, batches,
                    originals, path,
                )  # fmt: skip
                tab = store.cached(key, compute)
                tables.append(tab.assign(method=label, shift=shift.name))
                if path.is_file():
                    maps[(label, shift.name)] = torch.load(path, weights_only=True)
        table = self._table(ws, pd.concat(tables, ignore_index=True))
        figures = self._figures(ws, shifts, labels, batches, maps, table)
        return Result(table, self._summary(table, lo, hi), figures)

    def params(self, ws: Workspace) -> dict[str, Any]:
        """The partial store's fingerprint beyond model/data/seed: the arguments (but the
        method lists) and the trained checkpoint's key; method configs key the chunks."""
        skip = ("methods", "smoothgrad_over", "n_figure")
        return {
            "benchmark": self.name,
            "args": {k: v for k, v in vars(self).items() if k not in skip},
            "checkpoint": ws.checkpoint_dir.name if ws.cfg.model.weights == "trained" else None,
        }

    @staticmethod
    def _key(ws: Workspace, label: str, shift: str) -> str:
        """``method=<label>-<hash of its config(s)>/shift=<shift>``."""
        names = ["smoothgrad", label[11:-1]] if label.startswith("smoothgrad(") else [label]
        digest = stable_hash([method_config(ws, n) for n in names], 8)
        return f"method={label}-{digest}/shift={shift}"

    def _table(self, ws: Workspace, table: pd.DataFrame) -> pd.DataFrame:
        identity = {k: v for k, v in ws.identity.items() if k != "method"}
        table = table.reset_index(drop=True)
        if "note" not in table:
            table["note"] = ""
        table["note"] = table["note"].fillna("")
        context = {**identity, "benchmark": self.name}
        extra = {"dtype": self.dtype, "tolerance": self.tolerance, "n_images": self.n_images}
        table = table.assign(**context, **extra)
        cols = [*context, "method", "shift", "metric", "value", *extra, "note"]
        return table[cols]

    def _summary(self, table: pd.DataFrame, lo: float, hi: float) -> dict[str, Any]:
        summary: dict[str, Any] = {"dtype": self.dtype, "tolerance": self.tolerance}
        summary["data_range"] = [lo, hi]
        inv = table[table.metric == "invariant"]
        for shift, part in inv.groupby("shift", sort=False):
            summary[f"invariant/{shift}"] = list(part[part.value == 1].method)
            summary[f"not_invariant/{shift}"] = list(part[part.value != 1].method)
        for _, r in table[table.method == "model"].iterrows():
            summary[f"{r.metric}/{r['shift']}"] = float(r.value)
        for _, r in table[table.metric.str.startswith("pearson")].iterrows():
            summary[r.metric] = float(r.value)
        summary["not_applicable"] = sorted(set(table[table.metric == "applicable"].method))
        summary["nonfinite"] = sorted(set(table[table.note.str.startswith("non-finite")].method))
        return summary

    def _figures(
        self, ws: Workspace, shifts: list[Shift], labels: list[str], batches: list, maps, table
    ) -> list[str]:
        x = batches[0][0][: self.n_figure].cpu()
        rel = table[table.metric == "rel_diff"]
        rel = {(m, s): v for m, s, v in zip(rel.method, rel["shift"], rel.value)}
        paths = []
        for shift in shifts:
            rows = [(m, maps.get((m, shift.name)), rel.get((m, shift.name))) for m in labels]
            path = ws.run_dir / f"input_invariance_{shift.name}.png"
            paths.append(str(shift_figure(x, shift.m2.cpu(), rows, shift.name, path)))
            if shift.name == "crafted":
                path = ws.run_dir / "input_invariance_crafted_target.png"
                paths.append(str(crafted_figure(shift, path)))
        return paths
