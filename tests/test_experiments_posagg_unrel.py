"""POSAGG's and UNREL's paper experiments (``experiment=posagg/*``, ``experiment=unrel/*``).

Each file composes at both scales (the scale's overrides from
:func:`~xai_bench.experiments.scale_overrides`, as the CLI adds them), holds the paper's
protocol at ``scale=paper`` (model, data, image counts, metrics, methods with the paper's labels,
per-block variants on the model's block layers) and its embedded stand-in, and its ``reported``
block validates and names methods, metrics and conditions that the run writes.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from tests.conftest import GRADIENT, tiny_context
from xai_bench.experiments import (
    SCALES,
    paper_experiments,
    read_experiment,
    reported,
    scale_overrides,
)
from xai_bench.method_specs import resolve_methods
from xai_bench.methods.spec import MethodSpec
from xai_bench.run import build_benchmark
from xai_bench.utils.configs import CONFIG_DIR

POSAGG = ["posagg/table1_pointing", "posagg/table2_class_sensitivity",
          "posagg/table3_pointing_propagation", "posagg/table4_class_sensitivity",
          "posagg/fig1_class_maps", "posagg/fig4_sanity"]  # fmt: skip
UNREL = ["unrel/fig2_gradient_signal", "unrel/fig3_attribution", "unrel/fig4_smoothgrad",
         "unrel/fig5_checkerboard", "unrel/fig6_crafted"]  # fmt: skip
AGGREGATION = ["GradCAM", "FullGrad", "GradCAM++", "GradCAM++ B4", "GradCAM++ B3", "GradCAM++ B2",
               "GradCAM++ B1", "GradCAM_Pos", "GradCAM_Pos B4", "GradCAM_Pos B3",
               "GradCAM_Pos B2", "GradCAM_Pos B1", "GradMid", "GradMid B4", "GradMid B3",
               "GradMid B2", "GradMid B1", "CumulativeGradCAM", "CumulativeGradMid"]  # fmt: skip
PROPAGATION = ["Guided Backprop", "Gradients", "RectGrad", "RectGrad_Mod", "LRP-gamma=inf",
               "LRP-0"]  # fmt: skip
CONFIG = {"Guided Backprop": "guided_backprop", "Gradients": "gradient", "RectGrad": "rectgrad",
          "RectGrad_Mod": "rectgrad_mod", "LRP-gamma=inf": "lrp_gamma_inf", "LRP-0": "lrp_0",
          "GradCAM": "gradcam", "FullGrad": "fullgrad", "GradCAM++": "gradcampp",
          "GradCAM_Pos": "gradcam_pos", "GradMid": "gradmid",
          "CumulativeGradCAM": "cumulative_gradcam",
          "CumulativeGradMid": "cumulative_gradmid"}  # fmt: skip
BLOCKS = ("B1", "B2", "B3", "B4")
#: experiment -> (benchmark, methods in order)
TABLES = {
    "posagg/table1_pointing": ("pointing_game", AGGREGATION),
    "posagg/table2_class_sensitivity": ("class_sensitivity", AGGREGATION),
    "posagg/table3_pointing_propagation": ("pointing_game", PROPAGATION),
    "posagg/table4_class_sensitivity": ("class_sensitivity", PROPAGATION),
}
#: UNREL figure -> (shift, method labels)
ATTRIBUTION = ["Gradient x Input", "IG-zero", "IG-black", "LRP", "PatternAttribution"]
FIGURES = {
    "unrel/fig2_gradient_signal": ("constant", ["Gradient", "PatternNet", "Guided Backprop"]),
    "unrel/fig3_attribution": ("constant", ATTRIBUTION),
    "unrel/fig4_smoothgrad": ("constant", ["SG", "Guided Backprop", "PatternAttribution",
                                           "Gradient x Input", "IG-zero", "IG-black", "LRP"]),
    "unrel/fig5_checkerboard": ("checkerboard", ATTRIBUTION),
    "unrel/fig6_crafted": ("crafted", ATTRIBUTION),
}  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("experiments")


@functools.cache
def _compose(root: Path, name: str, scale: str, extra: tuple[str, ...]) -> DictConfig:
    overrides = [*scale_overrides(name, scale, extra), f"experiment={name}", f"scale={scale}"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose(
            config_name="run",
            overrides=[f"paths.root_dir={root}", "device=cpu", *overrides, *extra],
        )


@pytest.fixture
def make_cfg(root: Path):
    """``xai-bench experiment=<name> scale=<scale> <extra>`` as the CLI composes it (each
    composed once per module: the tests only read the configs)."""

    def make(name: str, scale: str, *extra: str) -> DictConfig:
        return _compose(root, name, scale, extra)

    return make


def compose(make_cfg, name: str, scale: str, *extra: str) -> DictConfig:
    return make_cfg(name, scale, *extra)


def labels(cfg) -> list[str]:
    return [m["label"] for m in OmegaConf.to_container(cfg.benchmark.methods, resolve=True)]


def test_the_files_are_the_paper_experiments() -> None:
    assert set(POSAGG + UNREL) <= set(paper_experiments())


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", POSAGG + UNREL)
def test_composes_at_both_scales(make_cfg, name: str, scale: str) -> None:
    cfg = compose(make_cfg, name, scale)
    assert cfg.experiment_name == f"{scale}/{name}" and cfg.scale == scale
    paper = scale == "paper"
    if name.startswith("unrel/"):
        assert (cfg.model.name, cfg.dataset.name) == ("mlp", "mnist" if paper else "digits")
        assert cfg.model.weights == "trained" and list(cfg.model.mean) == [0.0]
    elif name == "posagg/fig4_sanity":
        assert (cfg.model.name, cfg.dataset.name) == (
            ("vgg16", "imagenet") if paper else ("vgg16_small", "shapes_multi")
        )
    else:
        assert (cfg.model.name, cfg.dataset.name) == (
            ("vgg16_torchray", "voc07") if paper else ("vgg16_small", "shapes_multi")
        )
    block_layers = dict(cfg.model.block_layers)
    if block_layers:  # VGG-16's B1..B5 (features.3 ... features.29) at both scales
        assert block_layers == {"B1": "features.3", "B2": "features.8", "B3": "features.15",
                                "B4": "features.22", "B5": "features.29"}  # fmt: skip
    rep = reported(name)
    ours = set(labels(cfg)) | {"model"}
    ours |= {f"SG({b})" for b in cfg.benchmark.get("smoothgrad_over") or []}
    assert {row["method"] for row in rep["values"]} <= ours
    for row in rep["values"]:
        conditions = set(row) - {"method", "metric", "value", "unit"}
        assert conditions <= {"variant", "subset", "shift"}, row
    if not rep["values"]:
        assert rep["note"] and rep["claims"]


@pytest.mark.parametrize("name", list(TABLES))
def test_posagg_tables(make_cfg, name: str) -> None:
    bench, methods = TABLES[name]
    pointing = bench == "pointing_game"
    for scale in SCALES:
        paper = scale == "paper"
        cfg = compose(make_cfg, name, scale)
        b = cfg.benchmark
        assert b.name == bench and labels(cfg) == methods
        assert b.split == "test" and b.n_images == (None if paper else 64)
        if pointing:
            assert not b.restricted and b.tolerance == (15 if paper else "auto")
            assert b.class_mean == ("all" if paper else "present") and b.gt == "boxes"
            flags = "VOCdevkit/VOC2007/pointing_game_ebp_voc07_difficult.txt"
            assert b.subset_flags.endswith(flags) if paper else b.subset_flags is None
            assert b.subset_name == "difficult"
            blurred = [] if methods is AGGREGATION else None  # propagation: all (TorchRay)
            assert b.smooth_sigma == 0.02 and b.smooth_methods == blurred
        else:
            assert list(b.metrics) == ["hog_spearman"]
            assert b.hog_cell == (16 if paper else "auto")
        if not paper:
            build_benchmark(b)  # at scale=paper it reads the flag file, which is not here
        entries = OmegaConf.to_container(b.methods, resolve=True)
        for entry, label in zip(entries, methods, strict=True):
            head, _, block = label.rpartition(" ") if label[-2:] in BLOCKS else (label, "", "")
            assert entry["name"] == CONFIG[head]
            # per-block variants on the model's block layers; the others at model.cam_layer
            assert entry.get("layer") == (cfg.model.block_layers[block] if block else None)
    if pointing:  # the sweep's second run: the restricted game, same protocol and methods
        restricted = compose(make_cfg, name, "embedded", "benchmark=pointing_game_restricted")
        assert restricted.benchmark.name == "pointing_game_restricted"
        assert restricted.benchmark.restricted and labels(restricted) == methods
        standard = OmegaConf.to_container(compose(make_cfg, name, "embedded").benchmark)
        assert OmegaConf.to_container(restricted.benchmark) == {
            **standard, "name": "pointing_game_restricted", "restricted": True,
        }  # fmt: skip
    sweep = read_experiment(name)["hydra"]["sweeper"]["params"]
    assert sweep == ({"benchmark": "pointing_game,pointing_game_restricted"} if pointing else {})
    values = reported(name)["values"]
    assert [r["method"] for r in values][:: 2 if pointing else 1] == methods
    if pointing:  # both games of every method, on the multi-class subset
        assert {(r["variant"], r["subset"], r["metric"]) for r in values} == {
            ("standard", "difficult", "accuracy"), ("restricted", "difficult", "accuracy"),
        }  # fmt: skip
        assert len(values) == 2 * len(methods)
    else:
        assert {r["metric"] for r in values} == {"hog_spearman"}


def test_posagg_table_numbers() -> None:
    """Spot checks against"""

    def value(name: str, method: str, variant: str | None = None) -> float:
        rows = reported(name)["values"]
        return next(r["value"] for r in rows if r["method"] == method
                    and r.get("variant", variant) == variant)  # fmt: skip

    assert value("posagg/table1_pointing", "GradCAM", "restricted") == 48.9
    assert value("posagg/table1_pointing", "GradMid B1", "standard") == 51.8
    assert value("posagg/table2_class_sensitivity", "GradCAM_Pos B4") == 0.94
    assert value("posagg/table3_pointing_propagation", "RectGrad_Mod", "standard") == 59.5
    assert value("posagg/table4_class_sensitivity", "LRP-0") == 0.59


@pytest.mark.parametrize("scale", SCALES)
def test_posagg_fig4_sanity(make_cfg, scale: str) -> None:
    cfg = compose(make_cfg, "posagg/fig4_sanity", scale)
    b = cfg.benchmark
    assert (b.name, b.mode, b.init, b.std, list(b.metrics)) == (
        "sanity_checks", "cascading", "normal", 0.01, ["hog_spearman"],
    )  # fmt: skip
    assert b.n_images == (1000 if scale == "paper" else 16) and b.blocks is None
    assert len(cfg.model.blocks) == 16  # VGG-16's 13 conv and 3 linear layers, output first
    if scale == "paper":
        assert cfg.model.weights == "pretrained" and b.hog_cell == 16
    panels = cfg.figure.panels
    assert list(panels.aggregation) + list(panels.propagation) == labels(cfg)
    assert list(panels.propagation) == PROPAGATION
    if scale == "embedded":  # the method configs take the block layers
        specs = {s.label: s for s in resolve_methods(cfg)}
        assert specs["GradCAM_Pos B1"].params["layer"] == cfg.model.block_layers.B1 == "features.3"
        assert specs["LRP-gamma=inf"].config_name == "lrp_gamma_inf"
    build_benchmark(b)


@pytest.mark.parametrize("scale", SCALES)
def test_posagg_fig1_class_maps(make_cfg, scale: str) -> None:
    cfg = compose(make_cfg, "posagg/fig1_class_maps", scale)
    b = cfg.benchmark
    assert (b.name, b.classes_per_image, cfg.figure.kind) == ("gallery", 2, "maps")
    assert labels(cfg)[0] == "GradCAM" and len(labels(cfg)) == 7
    # the gallery stacks its images: square inputs for VOC07 (no resize key on shapes_multi)
    assert cfg.dataset.get("resize") == ("square" if scale == "paper" else None)
    build_benchmark(b)


@pytest.mark.parametrize("name", UNREL)
def test_unrel_figures(make_cfg, name: str) -> None:
    shift, methods = FIGURES[name]
    for scale in SCALES:
        cfg = compose(make_cfg, name, scale)
        b = cfg.benchmark
        assert (b.name, list(b.shifts), labels(cfg)) == ("input_invariance", [shift], methods)
        assert b.n_images == (1000 if scale == "paper" else 16 if "smoothgrad" in name else 32)
        assert b.dtype == "float64" and b.constant_value == -1.0
        if "smoothgrad" in name:  # SG 50 samples, IG 50 steps; 20 when embedded
            entries = OmegaConf.to_container(b.methods, resolve=True)
            n = 50 if scale == "paper" else 20
            assert [entries[0]["n_samples"], entries[4]["steps"], entries[5]["steps"]] == [n] * 3
        build_benchmark(b)
    sg = list(cfg.benchmark.smoothgrad_over)
    assert sg == (methods[1:] if "smoothgrad" in name else [])
    if shift == "crafted":
        assert (cfg.benchmark.crafted_target, cfg.benchmark.crafted_clip) == ("photo", 0.3)
    values = reported(name)["values"]
    rows = [r for r in values if r["metric"] == "invariant"]
    assert {r["shift"] for r in rows} == {shift}
    assert [r["method"] for r in rows] == (["SG"] + [f"SG({m})" for m in sg] if sg else methods)
    # only PatternAttribution (and IG-black under the constant shift) keeps the attribution
    invariant = {r["method"] for r in rows if r["value"] == 1}
    if name in ("unrel/fig5_checkerboard", "unrel/fig6_crafted"):
        assert invariant == {"PatternAttribution"}


def test_gallery_maps_each_image_for_its_top_classes(tmp_path: Path, monkeypatch) -> None:
    """``classes_per_image=k``: one column per (image, class), the k top-scoring classes."""
    from xai_bench.tasks import gallery

    drawn = {}

    def grid(images, maps, rows, cols, path, **kwargs):
        drawn.update(images=images, maps=maps, cols=cols)
        return Path(path)

    monkeypatch.setattr(gallery, "map_grid", grid)
    ctx = tiny_context(tmp_path, [MethodSpec.create("gradient", GRADIENT)])
    gallery.Gallery(n_images=2, classes_per_image=3).run(ctx)
    x = next(iter(ctx.datamodule.dataloader("test", batch_size=2)))["image"]
    with torch.no_grad():
        top = ctx.model(x).topk(3, dim=1).indices.flatten().tolist()
    assert drawn["images"].shape[0] == 6 and drawn["maps"][0].shape[0] == 6
    assert drawn["cols"] == [ctx.datamodule.class_names[c] for c in top]
    assert torch.equal(ctx.datamodule.denormalize(x[:1]), drawn["images"][:1].cpu())
    assert torch.equal(drawn["images"][0], drawn["images"][2])  # image 0 for its 3 classes
