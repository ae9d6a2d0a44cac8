"""``make figures``: the figure of every paper experiment (OPPSD, Group-CAM, PruneGrad, POSAGG,
UNREL) in the paper's layout, with the paper's numbers beside ours, from stored results only.

Nothing is computed: no model is built, no map is made; the runs' ``results.csv``,
``summary.json``, ``config.yaml``, ``sanity_maps.npz`` and pictures are read
(:mod:`~xai_bench.viz.paper_data`). The figure kind is the experiment file's ``figure.kind`` or
the benchmark's default (:data:`DEFAULT_KIND`); an experiment that runs several benchmarks of
different kinds gets one figure per kind. For ``<paper>/<result>`` at ``scale``:

* ``<out>/<scale>/<paper>/<result>.png`` (and ``<result>_<suffix>.png``: the sanity maps strip,
  a second kind, pictures the runs drew);
* ``<out>/<scale>/<paper>/<result>.md``: our numbers beside the paper's, with differences;
* ``<out>/<scale>/index.md``: every experiment, drawn or MISSING with the command that runs it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from xai_bench.experiments import EXPERIMENT_DIR, paper_experiments
from xai_bench.utils.io import atomic_write, atomic_write_text
from xai_bench.viz.paper_bars import bars_figure, efficiency_figure, pointing_figure
from xai_bench.viz.paper_data import ExperimentData, expected_benchmarks, load_experiment
from xai_bench.viz.paper_lines import CURVES, Curve, curve_figure, param_figure, sanity_figure
from xai_bench.viz.paper_maps import run_pictures, stage_strips
from xai_bench.viz.paper_match import comparison, comparison_markdown
from xai_bench.viz.paper_plots import save

DEFAULT_KIND = {
    "sanity_checks": "sanity", "pointing_game": "pointing", "pointing_game_restricted": "pointing",
    "roar": "roar", "efficiency": "efficiency", "class_sensitivity": "bars",
    "pixel_perturbation": "curves", "deletion_insertion": "curves", "groupcam_finetune": "curves",
    "input_invariance": "invariance", "gallery": "maps",
}  # fmt: skip
Item = tuple[str, Figure | Path]  # (file name suffix, figure to save or picture to copy)


def _curves(data: ExperimentData, rows: pd.DataFrame) -> list[Item]:
    bench = str(rows["benchmark"].iloc[0])
    curve = CURVES.get(bench)
    if curve is None:
        x = str(data.figure.get("x", ""))
        if not x:
            raise ValueError(f"experiment={data.name}: figure kind curves needs `x:` for {bench}")
        curve = Curve((), x, x)
    return [("", curve_figure(data, rows, curve))]


KINDS: dict[str, Callable[[ExperimentData, pd.DataFrame], list[Item]]] = {
    "sanity": lambda d, r: [("", sanity_figure(d, r)), *stage_strips(d)],
    "pointing": lambda d, r: [("", pointing_figure(d, r))],
    "curve_over_param": lambda d, r: [("", param_figure(d, r))],
    "roar": lambda d, r: [("", curve_figure(d, r, CURVES["roar"]))],
    "curves": _curves,
    "efficiency": lambda d, r: [("", efficiency_figure(d, r))],
    "bars": lambda d, r: [("", bars_figure(d, r))],
    "invariance": lambda d, r: [("", bars_figure(d, r)), *run_pictures(d, "input_invariance*.png")],
    "maps": lambda d, r: [*stage_strips(d), *run_pictures(d)],
}


@dataclass
class Entry:
    """One experiment in the index: ``status`` is ``drawn``, ``missing`` or ``failed``."""

    name: str
    status: str
    command: str
    files: list[Path] = field(default_factory=list)
    note: str = ""
    source: str = ""


def command(name: str, scale: str) -> str:
    """The command that computes experiment ``name`` at ``scale``."""
    return f"xai-bench -m experiment={name} scale={scale}"


def figures(data: ExperimentData) -> list[Item]:
    """The figures of an experiment with results: ``figure.kind`` over all rows, else one kind
    per group of benchmarks (:data:`DEFAULT_KIND`, ``bars`` for others); the first item of each
    later kind gets the kind as suffix. Items of a kind that gives none are left out."""
    kind = data.figure.get("kind")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"experiment={data.name}: unknown figure kind '{kind}' ({sorted(KINDS)})")
    groups: dict[str, list[str]] = {}
    for bench in data.benchmarks:
        groups.setdefault(str(kind or DEFAULT_KIND.get(bench, "bars")), []).append(bench)
    items: list[Item] = []
    for i, (name, benches) in enumerate(groups.items()):
        rows = data.table[data.table["benchmark"].isin(benches)]
        made = KINDS[name](data, rows.reset_index(drop=True))
        items += [(f"_{name}{s}" if i and not s.startswith(f"_{name}") else s, f) for s, f in made]
    if items and items[0][0]:  # a kind without a main figure (maps): its first item is the main
        items[0] = ("", items[0][1])
    return items


def _copy(source: Path, path: Path) -> Path:
    return atomic_write(path, lambda p: shutil.copyfile(source, p))


def result_markdown(data: ExperimentData, scale: str, files: Sequence[Path]) -> str:
    """The ``<result>.md``: what the paper ran, our runs, the figures and :func:`comparison`."""
    block, models = data.reported, data.table[["model", "dataset"]].drop_duplicates()
    setups = ", ".join(f"{m} on {d}" for m, d in models.itertuples(index=False))
    lines = [f"# {data.name}: {block.get('source', '(no reported block)')}", ""]
    lines += [f"Paper: {block.get('scale', '?')}. Unit: {block.get('unit', '?')}.", ""]
    lines += [f"Ours: scale `{scale}`, {len(data.runs)} run(s) under `{data.results_dir}` "
              f"({setups}).", ""]  # fmt: skip
    if data.factors:
        scaled = ", ".join(f"{m} x{f:g}" for m, f in data.factors.items())
        lines += [f"Our values are scaled to the paper's unit: {scaled}.", ""]
    if block.get("note"):
        lines += [f"Paper's note: {' '.join(str(block['note']).split())}", ""]
    if block.get("claims"):
        lines += ["Paper's claims:", "", *(f"- {c}" for c in block["claims"]), ""]
    lines += [f"![{f.stem}]({f.name})" for f in files if f.suffix == ".png"] + [""]
    if "sanity_checks" in data.benchmarks and not any(f.stem.endswith("_maps") for f in files):
        redo = f"`{command(data.name, scale)} force=true`"
        lines += [f"No strip of maps: no run kept a `sanity_maps.npz` (older runs; {redo}).", ""]
    lines += ["## Our numbers beside the paper's", "", comparison_markdown(comparison(data)), ""]
    return "\n".join(lines)


def draw_experiment(
    name: str, outputs: str | Path, scale: str, out: str | Path, root: Path = EXPERIMENT_DIR
) -> Entry:
    """Draw one experiment into ``<out>/<scale>/`` (nothing written when it has no results)."""
    data = load_experiment(name, outputs, scale, root)
    entry = Entry(
        name, "missing", command(name, scale), source=str(data.reported.get("source", ""))
    )
    if data.table.empty:
        return entry
    folder = Path(out) / scale / Path(name).parent
    stem = Path(name).name
    for suffix, item in figures(data):
        path = folder / f"{stem}{suffix}.png"
        entry.files.append(save(item, path) if isinstance(item, Figure) else _copy(item, path))
    md = atomic_write_text(folder / f"{stem}.md", result_markdown(data, scale, entry.files))
    entry.files.append(md)
    lacking = [b for b in expected_benchmarks(data.spec) if b not in data.benchmarks]
    entry.status = "drawn"
    if lacking:
        entry.note = f"partial: no results of {', '.join(lacking)}"
    return entry


def index_markdown(entries: Sequence[Entry], scale: str, outputs: str | Path) -> str:
    """``index.md``: one row per experiment, its figure and table, or MISSING and the command."""
    drawn = sum(e.status == "drawn" for e in entries)
    lines = [f"# Figures of the paper experiments, scale `{scale}`", "",
             f"Drawn by `make figures SCALE={scale}` from the stored results under "
             f"`{Path(outputs) / scale}` (nothing is computed): {drawn} of {len(entries)} drawn.",
             "", "| experiment | paper's result | status | figure and table / command |",
             "|---|---|---|---|"]  # fmt: skip
    for e in entries:
        links = ", ".join(f"[{f.name}]({Path(e.name).parent.as_posix()}/{f.name})" for f in e.files)
        if e.status == "drawn":
            status, what = "drawn" + (f" ({e.note})" if e.note else ""), links
            what += f"; complete it: `{e.command}`" if e.note else ""
        elif e.status == "missing":
            status, what = "MISSING", f"`{e.command}`"
        else:
            status, what = f"FAILED: {e.note}".replace("|", "\\|"), f"`{e.command}`"
        lines.append(f"| {e.name} | {e.source} | {status} | {what} |")
    return "\n".join(lines) + "\n"


def make_figures(
    outputs: str | Path = "outputs",
    scale: str = "embedded",
    out: str | Path = "outputs/figures",
    root: Path = EXPERIMENT_DIR,
    names: Sequence[str] | None = None,
) -> list[Entry]:
    """Draw every paper experiment at ``scale`` and write ``index.md`` (``names``: only those,
    and the index is left as it is). An experiment without results is listed as missing; one
    that fails to draw is listed as failed with the error (the others are drawn)."""
    entries = []
    for name in names or paper_experiments(root):
        try:
            entries.append(draw_experiment(name, outputs, scale, out, root))
        except Exception as err:  # one broken experiment must not stop the others
            entries.append(
                Entry(name, "failed", command(name, scale), note=f"{type(err).__name__}: {err}")
            )
    if names is None:  # the index lists every experiment: not rewritten for a few
        atomic_write_text(Path(out) / scale / "index.md", index_markdown(entries, scale, outputs))
    return entries
