"""`make figures` (xai_bench.viz.paper_figures): the paper figures from stored results only, on
small result trees in the on-disk format (RunStore.save) and experiment files in a tmp folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.image import imread

from xai_bench.benchmarks.sanity_maps import MAPS_FILE
from xai_bench.results.store import RunStore
from xai_bench.viz.paper_data import load_experiment
from xai_bench.viz.paper_figures import Entry, figures, make_figures
from xai_bench.viz.paper_match import comparison

REPO = Path(__file__).resolve().parent.parent
SCALE = "embedded"
STAGES = ["original", "fc", "layer3"]


def experiment(root: Path, name: str, bench: str, values: list, **extra: Any) -> None:
    spec = {"defaults": [{"override /benchmark": bench}], "experiment_name": f"x/{name}",
            "scales": {"embedded": {"overrides": []}, "paper": {"overrides": []}},
            "reported": {"source": f"{name} source", "scale": "the paper's", "unit": "u",
                         "values": values, "note": "figure only"}, **extra}  # fmt: skip
    path = root / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec))


def save_run(
    outputs: Path,
    name: str,
    sub: str,
    rows: list[dict],
    headline: tuple = (),
    base_test_acc: float | None = None,
    **config: Any,
) -> Path:
    """A finished run: ``rows`` with the identity columns, ``config`` as its config.yaml."""
    run_dir = outputs / SCALE / name / sub
    run_dir.mkdir(parents=True)
    table = pd.DataFrame(rows)
    for key, value in {"experiment": f"{SCALE}/{name}", "seed": 0}.items():
        table.insert(0, key, value)
    if "method_config" not in table:
        table["method_config"] = table["method"].str.lower()
    table["method_hash"] = "h" + table["method"]
    summary = {"headline": dict.fromkeys(headline, True), "base_test_acc": base_test_acc}
    RunStore(run_dir).save(table, summary, yaml.safe_dump(config))
    return run_dir


def base(
    bench: str, method: str, metric: str, value: float, model: str = "resnet8", **conds: Any
) -> dict:
    """One of our result rows (dataset ``shapes`` unless given)."""
    conds.setdefault("dataset", "shapes")
    return {"model": model, "benchmark": bench, "method": method, "metric": metric,
            "value": value, **conds}  # fmt: skip


def row(method: str, metric: str, value: float, **conds: Any) -> dict:
    """One row of an experiment's ``reported.values``."""
    return {"method": method, "metric": metric, "value": value, **conds}


Tree = tuple[Path, Path, Path, dict[str, Entry]]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    """(experiment root, outputs, figures out, entries): six experiments, five with results,
    drawn once for the tests of this module (drawing takes about a second per figure)."""
    tmp_path = tmp_path_factory.mktemp("figures")
    root, outputs, out = tmp_path / "exp", tmp_path / "outputs", tmp_path / "figures"
    # sanity: 2 methods x 3 stages x 2 metrics x 2 images; the paper gives SSIM of A at fc
    experiment(root, "oppsd/sanity", "sanity_checks", [row("A", "ssim", 0.1, stage="fc")])
    rows = [
        base("sanity_checks", m, metric, 1 - 0.3 * i - 0.1 * k, stage=s, stage_index=i, image=k)
        for m in ("A", "B")
        for i, s in enumerate(STAGES)
        for metric in ("spearman_abs", "ssim")
        for k in (0, 1)
    ]
    run = save_run(outputs, "oppsd/sanity", "sanity_checks/r", rows, benchmark={"n_images": 2})
    maps = np.random.rand(2, 3, 8, 8).astype(np.float16)
    image, labels = np.random.rand(3, 8, 8), np.array(["A", "B"])
    np.savez(run / MAPS_FILE, maps=maps, methods=labels, stages=np.array(STAGES), image=image)
    # pointing: original and restricted runs, 3 methods and the centre baseline, paper in %
    paper = [
        row("A", "accuracy", 80.0, variant="standard", unit="%"),
        row("A", "accuracy", 70.0, variant="restricted", unit="%"),
        row("Z", "accuracy", 50.0, variant="standard", unit="%"),
        row("B", "accuracy", 75.0, variant="standard", subset="difficult", unit="%"),
    ]
    sweep = {"sweeper": {"params": {"benchmark": "pointing_game,pointing_game_restricted"}}}
    experiment(root, "posagg/pointing", "pointing_game", paper, hydra=sweep)
    for bench, variant, less in (("pointing_game", "standard", 0.0),
                                 ("pointing_game_restricted", "restricted", 0.1)):  # fmt: skip
        rows = [
            base(bench, m, "accuracy", v - less, variant=variant, subset="all", **{"class": "all"})
            for m, v in (("center", 0.5), ("A", 0.9), ("B", 0.8), ("C", 0.7))
        ]
        save_run(outputs, "posagg/pointing", f"{bench}/r", rows)
    # Group-CAM G and theta as curves: deletion/insertion AUCs of four labels
    specs = [("Group-CAM", {}), ("Group-CAM G=16", {"groups": 16}),
             ("Group-CAM G=64", {"groups": 64}), ("Group-CAM theta=50", {"theta": 50})]  # fmt: skip
    resolved = [
        {"label": lab, "params": p, "config": {"explainer": {"groups": 32, "theta": 70, **p}}}
        for lab, p in specs
    ]
    figure = {"kind": "curve_over_param", "param": ["groups", "theta"]}
    paper = [row("Group-CAM G=16", "insertion_auc", 60.0)]
    experiment(root, "groupcam/params", "deletion_insertion", paper, figure=figure)
    aucs = ("deletion_auc", "insertion_auc")
    rows = [
        base("deletion_insertion", lab, metric, 0.5 + 0.001 * len(lab), method_config="groupcam")
        for lab, _ in specs
        for metric in aucs
    ]
    save_run(outputs, "groupcam/params", "di/r", rows, aucs, resolved_methods=resolved)
    # ROAR on two model/dataset pairs, 2 methods x 3 fractions
    paper = [row("A", "test_acc", 0.3, fraction=0.5, model="vgg")]
    experiment(root, "prunegrad/roar", "roar", paper)
    for model, data in (("resnet8", "shapes"), ("vgg", "cifar10")):
        rows = [
            base("roar", m, "test_acc", 0.9 - f, model=model, dataset=data, fraction=f)
            for m in ("A", "random")
            for f in (0.0, 0.5, 0.9)
        ]
        save_run(outputs, "prunegrad/roar", f"roar/{model}", rows, base_test_acc=0.95)
    # efficiency: time and memory
    paper = [
        row("A", "seconds_per_image", 0.2),
        row("A", "peak_mb_per_image", 3.0, relative_to="forward", unit="x forward"),
    ]
    experiment(root, "groupcam/cost", "efficiency", paper)
    rows = [
        base("efficiency", m, metric, v)
        for m, v in (("forward", 0.01), ("A", 0.1))
        for metric in ("seconds_per_image", "peak_mb_per_image")
    ]
    save_run(outputs, "groupcam/cost", "efficiency/r", rows)
    experiment(root, "unrel/missing", "input_invariance", [])  # no results
    return root, outputs, out, {e.name: e for e in make_figures(outputs, SCALE, out, root)}


def _gids(ax: Any, prefix: str) -> list[str]:
    artists = [*ax.get_lines(), *ax.patches]
    return [a.get_gid() for a in artists if (a.get_gid() or "").startswith(prefix)]


def test_every_kind_is_drawn_with_the_papers_layout(tree: Tree) -> None:
    root, outputs, out, entries = tree
    assert entries["unrel/missing"].status == "missing"
    for name in ("oppsd/sanity", "posagg/pointing", "groupcam/params", "prunegrad/roar",
                 "groupcam/cost"):  # fmt: skip
        assert entries[name].status == "drawn" and not entries[name].note, name
        png = out / SCALE / f"{name}.png"
        assert imread(png).ndim == 3 and (out / SCALE / f"{name}.md").is_file()
    assert imread(out / SCALE / "oppsd/sanity_maps.png").shape[0] > 100  # the strip of maps

    def main(name: str) -> Any:
        return figures(load_experiment(name, outputs, SCALE, root))[0][1]

    fig = main("oppsd/sanity")  # one panel per metric, one line per method
    assert [ax.get_title() for ax in fig.axes] == ["spearman_abs", "ssim"]
    assert all(sorted(_gids(ax, "ours:")) == ["ours:A", "ours:B"] for ax in fig.axes)
    assert _gids(fig.axes[1], "paper:") == ["paper:A"] and not _gids(fig.axes[0], "paper:")
    line = next(ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "ours:A")
    assert list(line.get_ydata()) == pytest.approx([0.95, 0.65, 0.35])  # means over images

    fig = main("posagg/pointing")  # groups = methods, original and restricted side by side
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B", "C", "Z"]
    assert len(_gids(ax, "ours:")) == 6 and len(_gids(ax, "baseline:center")) == 2
    heights = {p.get_gid(): p.get_height() for p in ax.patches}
    assert heights["ours:A:standard"] == pytest.approx(90.0)  # x 100: the paper's unit is %
    assert heights["paper:A:restricted"] == 70.0 and heights["paper:Z:standard"] == 50.0

    fig = main("groupcam/params")  # metric x param panels, one line (groupcam) each
    assert len(fig.axes) == 4
    groups = next(ax for ax in fig.axes if ax.get_title() == "insertion_auc — over=groups")
    (ours,) = [ln for ln in groups.get_lines() if ln.get_gid() == "ours:groupcam"]
    assert list(ours.get_xdata()) == [16.0, 32.0, 64.0]  # theta=50 is on the theta panel only
    (paper,) = [ln for ln in groups.get_lines() if ln.get_gid() == "paper:groupcam"]
    assert list(paper.get_xdata()) == [16.0] and list(paper.get_ydata()) == [60.0]

    fig = main("prunegrad/roar")  # one panel per model x dataset
    assert [ax.get_title() for ax in fig.axes] == [
        "test_acc — model=resnet8, dataset=shapes",
        "test_acc — model=vgg, dataset=cifar10",
    ]
    for ax, paper_lines in zip(fig.axes, ([], ["paper:A"])):
        assert sorted(_gids(ax, "ours:")) == ["ours:A", "ours:random"]
        assert _gids(ax, "paper:") == paper_lines and _gids(ax, "reference:")

    fig = main("groupcam/cost")  # time and memory
    assert [ax.get_title() for ax in fig.axes] == ["seconds_per_image", "peak_mb_per_image"]
    assert _gids(fig.axes[0], "paper:") == ["paper:A:seconds_per_image"]
    bar = next(p for p in fig.axes[1].patches if p.get_gid() == "paper:A:peak_mb_per_image")
    assert bar.get_height() == pytest.approx(3 * 0.01)  # 3x our forward's memory

    data = load_experiment("oppsd/sanity", outputs, SCALE, root)  # POSAGG Fig. 4's layout
    data.spec["figure"] = {"kind": "stage_curves", "metric": "ssim", "panels": {"p": ["A"]}}
    fig = figures(data)[0][1]
    assert [ax.get_title() for ax in fig.axes] == ["ssim — p"]
    assert _gids(fig.axes[0], "ours:") == ["ours:A"]


def test_tables_hold_the_papers_numbers_with_differences(tree: Tree) -> None:
    root, outputs, out, _ = tree
    table = comparison(load_experiment("posagg/pointing", outputs, SCALE, root))
    a = table[(table.method == "A") & (table.paper.notna())].set_index("variant")
    assert a.loc["standard", "ours"] == pytest.approx(90.0) and a.loc["standard", "paper"] == 80.0
    assert a.loc["restricted", "diff"] == pytest.approx(80.0 - 70.0)
    z = table[table.method == "Z"]  # the paper's method we did not run: paper only
    assert z.ours.isna().all() and z.paper.tolist() == [50.0]
    md = (out / SCALE / "posagg/pointing.md").read_text()
    assert "| A | accuracy | pointing_game | standard | 90 | 1 | 80 |  | +10 |" in md
    assert "| A | accuracy | pointing_game_restricted | restricted | 80 | 1 | 70 |  | +10 |" in md
    assert "| Z | accuracy |  | standard |  |  | 50 |  |  |" in md
    # our only subset (all) is compared with the paper's difficult one, and says so
    assert "| B | accuracy | pointing_game | standard | 80 | 1 | 75 | subset=difficult | +5 |" in md
    assert "accuracy x100" in md and "![pointing](pointing.png)" in md
    md = (out / SCALE / "groupcam/cost.md").read_text()  # a multiple of another method's
    assert "| A / forward | peak_mb_per_image | 10 |  | 3 | ratio | +7 |" in md
    md = (out / SCALE / "oppsd/sanity.md").read_text()
    assert "| A | ssim | fc | 0.65 | 2 | 0.1 | +0.55 |" in md and "figure only" in md
    md = (out / SCALE / "prunegrad/roar.md").read_text()
    assert "| A | test_acc | vgg | cifar10 | 0.5 | 0.4 | 1 | 0.3 | +0.1 |" in md


def test_index_lists_missing_experiments_with_their_commands(tree: Tree, tmp_path: Path) -> None:
    root, _, out, _ = tree
    index = (out / SCALE / "index.md").read_text()
    assert "5 of 6 drawn" in index
    assert "| unrel/missing | unrel/missing source | MISSING | " \
        "`xai-bench -m experiment=unrel/missing scale=embedded` |" in index  # fmt: skip
    assert "[sanity.png](oppsd/sanity.png)" in index
    entries = make_figures(tmp_path / "none", "paper", tmp_path, root)  # nothing: no error
    assert {e.status for e in entries} == {"missing"}
    assert "scale=paper" in (tmp_path / "paper" / "index.md").read_text()


DRAW = """
import runpy, sys
from pathlib import Path
from xai_bench.viz.paper_figures import make_figures
(e,) = make_figures(sys.argv[1], "embedded", sys.argv[2], Path(sys.argv[3]), ["groupcam/cost"])
print(e.status, len(e.files))
sys.argv = ["make_figures.py", "--outputs", sys.argv[4], "--out", sys.argv[2]]
try:
    runpy.run_path("scripts/make_figures.py", run_name="__main__")
finally:
    assert "torch" not in sys.modules and "pytorch_lightning" not in sys.modules, "torch"
"""


def test_nothing_is_computed_and_the_script_exits_0(tree: Tree, tmp_path: Path) -> None:
    """Drawing imports neither torch nor Lightning (no model, no forward pass); the script
    runs on the repo's experiments with no results at all, lists them as missing, exits 0."""
    root, outputs, _, _ = tree
    args = [str(outputs), str(tmp_path), str(root), str(tmp_path / "no-runs")]
    done = subprocess.run([sys.executable, "-c", DRAW, *args], capture_output=True, text=True,
                          cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("drawn 2\n")  # the figure and the table
    assert "MISSING  oppsd/fig2a_sanity" in done.stdout
    index = (tmp_path / SCALE / "index.md").read_text()
    assert "| MISSING | `xai-bench -m experiment=oppsd/fig2a_sanity scale=embedded` |" in index


def test_a_swept_benchmark_setting_is_a_condition(tmp_path: Path) -> None:
    """LeRF and MoRF in two runs of one model: an ``order`` column (two panels); a setting that
    follows the model (``hog_cell: auto`` per model) is not one."""
    root, outputs = tmp_path / "exp", tmp_path / "outputs"
    experiment(root, "oppsd/lerf", "pixel_perturbation", [])
    for order, model in (("least_first", "a"), ("most_first", "a"), ("least_first", "b")):
        rows = [base("pixel_perturbation", "G", "output_change", f, model=model, fraction=f)
                for f in (0.01, 0.1)]  # fmt: skip
        settings = {"order": order, "hog_cell": model, "fractions": [0.01, 0.1]}
        save_run(outputs, "oppsd/lerf", f"pp/{order}-{model}", rows, benchmark=settings)
    data = load_experiment("oppsd/lerf", outputs, SCALE, root)
    assert "order" in data.table and "hog_cell" not in data.table and "fractions" not in data.table
    fig = figures(data)[0][1]
    assert sorted(ax.get_title() for ax in fig.axes) == [
        "output_change — model=a, order=least_first", "output_change — model=a, order=most_first",
        "output_change — model=b, order=least_first"]  # fmt: skip
