"""Figures a reviewer accepts, and summary.md as a report (issue 15, points 4 and 5).

Figures are inspected as matplotlib objects: the figure functions' ``save_figure`` is replaced
by one that keeps the figure (and still writes it), so colour maps, colour limits, colour bars,
legend texts and axis labels are read back.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.image import AxesImage

from tests.conftest import GRADIENT, tiny_context
from xai_bench.methods.spec import MethodSpec
from xai_bench.results.store import RunStore
from xai_bench.results.summary import write_summary
from xai_bench.run import RUNTIME_KEYS, run
from xai_bench.viz import curves, efficiency, figures, perturbation, roar, sanity, style
from xai_bench.viz.formats import figure_formats

CONFIG_DIR = Path(__file__).resolve().parents[1] / "xai_bench" / "configs"


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures drawn by the viz modules, in order (they are still written)."""
    kept: list = []
    real = figures.save_figure

    def keep(fig, path, formats=None):
        kept.append(fig)
        return real(fig, path, formats)

    for module in (figures, curves, efficiency, perturbation, roar, sanity):
        monkeypatch.setattr(module, "save_figure", keep)
    return kept


def _images(ax) -> list[AxesImage]:
    return [a for a in ax.get_children() if isinstance(a, AxesImage)]


def _colorbars(fig) -> list:
    return [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def _texts(fig) -> str:
    """Every text of the figure: titles, labels, legends, suptitle."""
    out = [fig._suptitle.get_text() if fig._suptitle else ""]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        out += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        out += [t.get_text() for t in ax.texts]
        legend = ax.get_legend()
        if legend is not None:
            out += [t.get_text() for t in legend.get_texts()]
    return "\n".join(out)


# ---------------------------------------------------------------- saliency maps


def test_signed_maps_diverging_symmetric_with_colorbar_unsigned_sequential(drawn, tmp_path):
    images = torch.rand(3, 3, 8, 8)
    signed = torch.linspace(-2.0, 1.0, 3 * 64).reshape(3, 1, 8, 8)  # m = 2
    unsigned = torch.linspace(0.0, 3.0, 3 * 64).reshape(3, 1, 8, 8)
    figures.map_grid(images, [signed, unsigned, None], ["gradient", "gradcampp", "xrai"],
                     ["a", "b", "c"], tmp_path / "grid.png")  # fmt: skip
    fig = drawn[-1]
    rows = np.array(fig.axes).reshape(4, 5)  # image row + 3 method rows; title, 3 maps, bar
    for ax in rows[1, 1:4]:
        (im,) = _images(ax)
        assert im.get_cmap().name == style.SIGNED_CMAP == "RdBu_r"
        assert im.get_clim() == (-2.0, 2.0)  # zero is white in every panel
    for ax in rows[2, 1:4]:
        (im,) = _images(ax)
        assert im.get_cmap().name == style.UNSIGNED_CMAP
        assert im.get_clim() == (0.0, 3.0)
    assert {id(ax) for ax in _colorbars(fig)} == {id(rows[1, 4]), id(rows[2, 4])}
    text = _texts(fig)
    assert "Gradient" in text and "Grad-CAM++" in text and "XRAI" in text and "n/a" in text
    assert "gradcampp" not in text


def test_overlay_blends_the_map_on_the_image(drawn, tmp_path):
    images = torch.zeros(2, 3, 8, 8)  # black images: the blend is the map's colour x alpha
    maps = torch.ones(2, 1, 4, 4)  # smaller than the image: upsampled for the overlay
    figures.map_grid(images, [maps], ["gradcam"], ["a", "b"], tmp_path / "o.png",
                     overlay=True, alpha=0.4)  # fmt: skip
    fig = drawn[-1]
    rows = np.array(fig.axes).reshape(2, 4)
    (im,) = _images(rows[1, 1])
    rgb = np.asarray(im.get_array())
    assert rgb.shape == (8, 8, 3)
    top = np.array(colormaps[style.OVERLAY_CMAP](1.0)[:3])
    assert np.allclose(rgb, 0.4 * top, atol=1e-6)
    assert _colorbars(fig)


def test_gallery_overlay_option_draws_the_figure(tmp_path):
    from xai_bench.tasks.gallery import Gallery

    ctx = tiny_context(tmp_path, [MethodSpec.create("gradient", GRADIENT)])
    result = Gallery(n_images=2, overlay=True, overlay_alpha=0.3).run(ctx)
    assert Path(result.figures[0]).stat().st_size > 1_000
    with pytest.raises(ValueError, match="overlay_alpha"):
        Gallery(overlay_alpha=2.0)
    config = (CONFIG_DIR / "benchmark" / "gallery.yaml").read_text()
    assert re.search(r"^overlay: (true|false)", config, re.M)


# ---------------------------------------------------------------- names and colours


def test_display_names_and_fixed_colours_for_every_method_config():
    configs = sorted(p.stem for p in (CONFIG_DIR / "method").glob("*.yaml"))
    assert configs and not [c for c in configs if c not in style.DISPLAY_NAMES]
    assert not [c for c in configs if c not in style.COLORS]
    assert len({style.COLORS[c] for c in configs}) == len(configs)  # no two methods share one
    assert style.display_name("gradcampp") == "Grad-CAM++"
    assert style.display_name("guided_backprop") == "Guided Backprop"
    assert style.display_name("integrated_gradients") == "Integrated Gradients"
    assert style.display_name("lrp_gamma_inf") == "LRP-\u03b3=\u221e"
    assert style.display_name("oppsd_noble") == "OPPSD-Noble"
    assert style.display_name("gradcampp(layer=B2)") == "Grad-CAM++(layer=B2)"
    assert style.display_name("smoothgrad(lrp_0)") == "SmoothGrad(LRP-0)"
    assert style.display_name("GradCAM++ B2", "gradcampp") == "GradCAM++ B2"  # the user's label
    assert style.display_name("gradcampp_B4", "gradcampp") == "gradcampp_B4"


def _perturbation_rows() -> pd.DataFrame:
    variants = [("gradcampp", "gradcampp"), ("GradCAM++ B2", "gradcampp"),
                ("integrated_gradients", "integrated_gradients")]  # fmt: skip
    return pd.DataFrame(
        [
            {"method": label, "method_config": config, "metric": "output_change",
             "fraction": f, "index": i, "value": v * f}
            for v, (label, config) in enumerate(variants, start=1)
            for f in (0.01, 0.1)
            for i in range(5)
        ]
    )  # fmt: skip


def test_legends_show_display_names_in_the_methods_colours(drawn, tmp_path):
    rows = _perturbation_rows()
    perturbation.pixel_perturbation_curves(rows, tmp_path / "p.png", "least_first", "logit", "0")
    ax = drawn[-1].axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["Grad-CAM++", "GradCAM++ B2", "Integrated Gradients"]
    colours = [to_hex(line.get_color()) for line in ax.get_lines()]
    assert colours[0] == style.COLORS["gradcampp"]
    assert colours[2] == style.COLORS["integrated_gradients"]
    assert colours[1] not in (colours[0], colours[2])  # a second variant: its own colour
    assert "n = 5 images" in ax.get_title()
    # the same method has the same colour in another kind of figure
    acc = pd.DataFrame([{"method": "gradcampp", "method_config": "gradcampp", "metric": "test_acc",
                         "fraction": f, "value": 0.5} for f in (0.1, 0.5)])  # fmt: skip
    roar.roar_curves(acc, tmp_path / "r.png")
    lines = drawn[-1].axes[0].get_lines()
    assert style.COLORS["gradcampp"] in {to_hex(line.get_color()) for line in lines}
    assert "Grad-CAM++" in _texts(drawn[-1]) and "n = 1" in _texts(drawn[-1])


# ---------------------------------------------------------------- n, bands, axes


def test_sanity_curves_have_an_x_label_n_and_the_band_explained(drawn, tmp_path):
    stages = ["original", "fc", "layer3"]
    aggregates = [
        {"method": "guided_backprop", "stage": s, "metric": m, "mean": 0.5, "std": 0.1, "n": 16}
        for s in stages
        for m in ("ssim", "spearman_abs")
    ]
    title = "guided_backprop: cascading randomisation (normal)"
    metrics = ["ssim", "spearman_abs"]
    sanity.stage_curves(aggregates, "guided_backprop", stages, metrics, title, tmp_path / "s.png")
    ax = drawn[-1].axes[0]
    assert ax.get_xlabel() and "cascading" in ax.get_xlabel()
    assert "n = 16 images" in ax.get_title() and "± 1 std" in ax.get_title()
    assert ax.get_title().startswith("Guided Backprop: cascading")
    sanity.class_sensitivity_bars(aggregates, ["ssim"], tmp_path / "c.png")
    assert "n = 16 images" in _texts(drawn[-1]) and "Guided Backprop" in _texts(drawn[-1])


def test_efficiency_shows_absolute_time_and_n(drawn, tmp_path):
    rows = [
        {"method": m, "method_config": c, "metric": metric, "value": v, "batch_size": 32,
         "device": "cpu"}
        for m, c in (("forward_backward", ""), ("gradient", "gradient"), ("oppsd_noble",
                                                                          "oppsd_noble"))
        for metric, v in (("seconds_per_image", 0.002), ("time_ratio_to_fwd_bwd", 1.5),
                          ("peak_mb_per_image", 0.0))
    ]  # fmt: skip
    efficiency.time_ratios(pd.DataFrame(rows), tmp_path / "e.png", repeats=5)
    fig = drawn[-1]
    labels = [ax.get_xlabel() for ax in fig.axes]
    assert "ms per image (median)" in labels and "time / (forward + backward)" in labels
    text = _texts(fig)
    assert "batch of 32 images" in text and "median of 5" in text and "memory not measured" in text
    assert "OPPSD-Noble" in text and "Forward + backward" in text
    rows += [{**r, "value": 3.0} for r in rows if r["metric"] == "peak_mb_per_image"]
    efficiency.time_ratios(pd.DataFrame(rows).drop_duplicates(["method", "metric"], keep="last"),
                           tmp_path / "e2.png")  # fmt: skip
    assert "peak MB per image" in [ax.get_xlabel() for ax in drawn[-1].axes]


def test_sample_grid_titles_do_not_overlap_boxes_are_named_mistakes_marked(drawn, tmp_path):
    images = torch.rand(4, 3, 32, 32)
    titles = ["checkered_square, striped_disk → checkered_square"] * 4
    boxes = [torch.tensor([[2.0, 2.0, 12.0, 12.0]])] * 4
    figures.sample_grid(images, titles, boxes, tmp_path / "samples.png", cols=4,
                        box_labels=[["disk"]] * 4, correct=[True, False, True, True])  # fmt: skip
    fig = drawn[-1]
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    boxes_px = [ax.title.get_window_extent(renderer) for ax in fig.axes]
    for a, b in itertools.pairwise(boxes_px):
        assert a.x1 <= b.x0 + 1e-6, "neighbouring titles overlap"
    wrong = fig.axes[1]
    assert all(s.get_visible() for s in wrong.spines.values())
    assert to_hex(wrong.spines["left"].get_edgecolor()) == to_hex("tab:red")
    assert not any(s.get_visible() for s in fig.axes[0].spines.values())
    assert [t.get_text() for t in fig.axes[0].texts] == ["disk"]
    assert "1 of 4" in fig._suptitle.get_text()


# ---------------------------------------------------------------- vector output


def test_figures_write_pdf_and_svg_beside_the_png(tmp_path):
    rows = pd.DataFrame({"method": ["gradient"] * 3, "metric": ["m"] * 3, "value": [1, 2, 3]})
    out = figures.metric_bars(rows, "m", tmp_path / "bars.png", formats=("png", "pdf", "svg"))
    assert out == tmp_path / "bars.png"
    assert (tmp_path / "bars.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "bars.pdf").read_bytes().startswith(b"%PDF")
    svg = (tmp_path / "bars.svg").read_bytes()
    assert svg.startswith(b"<?xml") and b"<svg" in svg[:1000]
    with figure_formats(["svg"]):  # the run's figure_formats: every figure function follows
        path = perturbation.pixel_perturbation_curves(
            _perturbation_rows(), tmp_path / "p.png", "least_first", "logit", "0"
        )
    assert path == tmp_path / "p.svg" and not (tmp_path / "p.png").exists()
    with pytest.raises(ValueError, match="figure_formats"):
        figures.metric_bars(rows, "m", tmp_path / "x.png", formats=("jpg",))


# ---------------------------------------------------------------- runs and summary.md

TINY = (
    "model.weights=random", "model.net.widths=[4,8,8]", "dataset.datamodule.n_train=32",
    "dataset.datamodule.n_val=16", "dataset.datamodule.n_test=16", "benchmark=overview",
    "benchmark.n_figure=4",
)  # fmt: skip


def test_run_figure_formats_relative_paths_and_summary_report(make_cfg, tmp_path):
    out = tmp_path / "outputs"
    first = run(make_cfg(*TINY, "figure_formats=[png,pdf]"), out / "overview")
    run_dir = out / "overview"
    assert (run_dir / "samples.pdf").read_bytes().startswith(b"%PDF")
    stored = json.loads((run_dir / "summary.json").read_text())
    assert stored["figures"] == ["samples.png"]  # relative to the run directory
    assert "figure_formats" in RUNTIME_KEYS
    again = run(make_cfg(*TINY), out / "overview")  # png only: the results are reused
    assert again["cached"] is True and Path(again["figures"][0]).is_file()
    assert Path(again["figures"][0]).resolve() == Path(first["figures"][0]).resolve()

    _, md = write_summary(out)
    text = md.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links == ["overview/samples.png"]
    assert all((md.parent / unquote(link)).is_file() for link in links)
    assert not any(Path(unquote(link)).is_absolute() for link in links)
    table = text.split("### overview", 1)[1]
    assert "| metric | value |" in table  # no method column for a task without methods
    assert "gradient" not in table.split("![", 1)[0]
    assert "| accuracy ↑ |" in table and "(n=16) |" in table


def test_summary_md_embeds_old_absolute_and_moved_figure_paths(tmp_path):
    base = {"experiment": "e", "benchmark": "pixel_perturbation", "model": "m", "dataset": "d",
            "method": "gradient", "method_config": "gradient", "metric": "auc"}  # fmt: skip
    for name, values in (("old", [1.0, 2.0, 3.0]), ("moved", [4.0])):
        run_dir = tmp_path / name
        run_dir.mkdir()
        (run_dir / f"{name}.png").write_bytes(b"\x89PNG")
        pd.DataFrame([{**base, "image": i, "value": v} for i, v in enumerate(values)]).to_csv(
            run_dir / "results.csv", index=False
        )
        where = run_dir if name == "old" else Path("/elsewhere/before/the/move")
        summary = {"figures": [str(where / f"{name}.png")], "headline": {"auc": False}}
        (run_dir / "summary.json").write_text(json.dumps(summary))
    text = write_summary(tmp_path)[1].read_text()
    assert "![old](old/old.png)" in text and "![moved](moved/moved.png)" in text
    assert "| auc ↓ | 2.5 ± 1.3 (n=4) |" in text  # both runs: one method variant, 4 images
    assert str(tmp_path) not in text.split("\n", 1)[1]


def test_store_writes_paths_relative_to_the_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "a.png").write_bytes(b"\x89PNG")
    (tmp_path / "ckpt").mkdir()
    store = RunStore(run_dir)
    summary = {
        "figures": [str(run_dir / "a.png")],
        "checkpoint": str(tmp_path / "ckpt"),
        "runs": {"x": {"dir": str(run_dir / "finetune")}},
        "note": "/not/a/path here",
    }
    store.save(pd.DataFrame({"metric": ["m"], "value": [1.0]}), summary)
    stored = json.loads((run_dir / "summary.json").read_text())
    assert stored["figures"] == ["a.png"] and stored["checkpoint"] == "../ckpt"
    assert stored["runs"]["x"]["dir"] == "finetune" and stored["note"] == "/not/a/path here"
    assert store.problem() is None  # the checksum covers what was written
    assert store.summary()["figures"] == [str(run_dir / "a.png")]
