"""OPPSD's and PruneGrad's paper experiments (``experiment=oppsd/fig3..6``, ``prunegrad/*``).

Every job of each file's sweep composes at both scales, as ``xai-bench -m
experiment=<name> scale=<scale>`` runs it (the file's ``hydra.sweeper.params``, then the scale's
overrides and the command line, as :func:`xai_bench.reproduce.sweep_jobs`); the paper's
protocol is the top level (setups, image counts, removal settings, methods with the paper's
labels), the embedded scale swaps in the embedded models, and the ``reported`` block validates
and names methods and metrics that the runs write.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from xai_bench.benchmarks.sanity_checks import METRICS as SANITY_METRICS
from xai_bench.experiments import SCALES, expand_argv, paper_experiments, read_experiment, reported
from xai_bench.run import build_benchmark
from xai_bench.utils.configs import CONFIG_DIR

OPPSD = ["oppsd/fig3_pixel_perturbation", "oppsd/fig4_roar", "oppsd/fig5_roar_ablation",
         "oppsd/fig6_efficiency"]  # fmt: skip
PRUNE = ["prunegrad/fig2_sanity", "prunegrad/fig4a_lerf", "prunegrad/fig4b_roar",
         "prunegrad/fig6_threshold", "prunegrad/fig12a_threshold_lerf",
         "prunegrad/fig12b_threshold_roar"]  # fmt: skip
#: OPPSD Table 1, its labels and method configs
OPPSD_METHODS = {"OPPSD-Noble": "oppsd_noble", "OPPSD-Frobenius": "oppsd_frobenius",
                 "OPPSD-MinEigenvalue": "oppsd_min_eigenvalue", "InputGradient": "gradient",
                 "IntegratedGradients": "integrated_gradients", "VarGrad": "vargrad",
                 "GuidedBackProp": "guided_backprop", "GuidedGradCam": "guided_gradcam",
                 "FullGrad": "fullgrad"}  # fmt: skip
#: PRUNE §4's methods
PRUNE_METHODS = {"PruneGrad": "prunegrad", "PrunePGD": "prunepgd", "GradCAM": "gradcam",
                 "RectGrad": "rectgrad", "IntegratedGradients": "integrated_gradients",
                 "GuidedBackprop": "guided_backprop", "Gradient x Input": "input_x_gradient",
                 "VanillaGradient": "gradient"}  # fmt: skip
THRESHOLDS = [0.05, 0.10, 0.15, 0.20, 0.30]
OPPSD_R50 = ["oppsd_resnet50_cifar100", "oppsd_resnet50_food101", "oppsd_resnet50_birds250"]
OPPSD_VIT = ["oppsd_vit_b16_cifar100", "oppsd_vit_b16_food101", "oppsd_vit_b16_birds250"]
R50_STAGES = ["fc", "layer4.2", "layer4.1", "layer4.0", *[f"layer3.{i}" for i in range(5, -1, -1)],
              *[f"layer2.{i}" for i in range(3, -1, -1)], "layer1.2", "layer1.1", "layer1.0",
              "conv1"]  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("experiments")


def sweep(name: str, scale: str) -> list[list[str]]:
    """The override lists of the jobs of ``xai-bench -m experiment=<name> scale=<scale>``:
    the file's sweep (read, not composed: the files' sweeps hold plain values) under the scale's
    overrides, expanded by Hydra's basic sweeper."""
    params = read_experiment(name)["hydra"]["sweeper"]["params"] or {}
    lines = [f"{k}={v}" for k, v in params.items()]
    lines += expand_argv([f"experiment={name}", f"scale={scale}"])
    parsed = OverridesParser.create().parse_overrides(lines)
    return BasicSweeper.split_arguments(parsed, None)[0]


@functools.cache
def _jobs(root: Path, name: str, scale: str) -> tuple[tuple[str, DictConfig], ...]:
    """(setup, config) of every job of ``xai-bench -m experiment=<name> scale=<scale>``."""
    out = []
    for job in sweep(name, scale):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("run", overrides=[f"paths.root_dir={root}", *job],
                          return_hydra_config=True)  # fmt: skip
        out.append((str(cfg.hydra.runtime.choices.setup), cfg))
    return tuple(out)


@pytest.fixture
def jobs(root: Path):
    def make(name: str, scale: str) -> dict[str, DictConfig]:
        return dict(_jobs(root, name, scale))

    return make


def methods(cfg: DictConfig) -> list[dict]:
    return OmegaConf.to_container(cfg.benchmark.methods, resolve=True)  # type: ignore[return-value]


def labels(cfg: DictConfig) -> list[str]:
    return [m["label"] for m in methods(cfg)]


def test_the_files_are_paper_experiments() -> None:
    assert set(OPPSD + PRUNE) <= set(paper_experiments())


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", OPPSD + PRUNE)
def test_every_job_composes_and_builds(jobs, name: str, scale: str) -> None:
    for setup, cfg in jobs(name, scale).items():
        assert cfg.experiment_name == f"{scale}/{name}" and cfg.scale == scale, setup
        build_benchmark(cfg.benchmark)
        if scale == "embedded":  # the embedded models, trained here
            assert setup in ("resnet8_shapes", "vit_small_shapes") or name.endswith("efficiency")
            assert cfg.dataset.name == "shapes"
    rep = reported(name)
    cfg = next(iter(jobs(name, "paper").values()))
    bench = cfg.benchmark.name
    written = {"pixel_perturbation": {"output_change", "auc"}, "roar": {"test_acc", "roar_auc"},
               "sanity_checks": set(SANITY_METRICS),
               "efficiency": {"seconds_per_image", "peak_mb_per_image", "time_ratio_to_fwd_bwd",
                              "memory_ratio_to_fwd_bwd"}}[bench]  # fmt: skip
    for row in rep["values"]:
        assert row["method"] in labels(cfg) and row["metric"] in written, row
    if not rep["values"]:
        assert rep["note"]


@pytest.mark.parametrize("name", [n for n in OPPSD if "roar" not in n] + PRUNE)
def test_each_run_compares_its_methods_in_one_run(jobs, name: str) -> None:
    """Methods (and threshold variants) are specs of one run: no sweep over them."""
    for scale in SCALES:
        for cfg in jobs(name, scale).values():
            assert len(set(labels(cfg))) == len(labels(cfg))


def test_oppsd_fig3_pixel_perturbation(jobs) -> None:
    paper = jobs("oppsd/fig3_pixel_perturbation", "paper")
    assert list(paper) == ["resnet50_imagenet", "vit_b16_imagenet"]
    for cfg in paper.values():
        b = cfg.benchmark
        assert cfg.dataset.name == "imagenet" and cfg.model.weights == "pretrained"
        assert (b.n_images, b.split, b.target, b.fill, b.output, b.order) == (
            None, "test", "label", "image_mean", "logit", "least_first",
        )  # fmt: skip
        assert list(b.postprocess) == ["channel_mean", "abs"]
        assert {m["label"]: m["name"] for m in methods(cfg)} == OPPSD_METHODS
    assert paper["vit_b16_imagenet"].model.name == "vit_b16"
    embedded = jobs("oppsd/fig3_pixel_perturbation", "embedded")
    assert list(embedded) == ["resnet8_shapes", "vit_small_shapes"]
    vit = embedded["vit_small_shapes"]
    assert vit.model.name == "vit_small_embedded" and vit.model.num_prefix_tokens == 0
    assert not vit.model.convolutional and not vit.model.relu_only  # FullGrad, GBP: skipped
    for cfg in embedded.values():
        assert cfg.benchmark.n_images == 64 and labels(cfg) == list(OPPSD_METHODS)


@pytest.mark.parametrize("name", ["oppsd/fig4_roar", "oppsd/fig5_roar_ablation"])
def test_oppsd_roar(jobs, name: str) -> None:
    fig4 = name == "oppsd/fig4_roar"
    paper = jobs(name, "paper")
    assert list(paper) == (OPPSD_R50 + OPPSD_VIT if fig4 else OPPSD_R50)
    for setup, cfg in paper.items():
        b = build_benchmark(cfg.benchmark)
        assert (b.fill, b.target, b.ranking, b.post_steps, b.train_limit, b.seeds) == (
            "image_mean", "label", "pixel", ["channel_mean", "abs"], None, [0],
        )  # fmt: skip
        assert b.fractions == [0.1, 0.3, 0.5, 0.7, 0.9]
        assert b.init == ("pretrained" if "vit" in setup else "scratch")
        assert b.recipe.max_epochs == cfg.train.max_epochs and not b.recipe.augment
        expected = ({"Random": "random", **OPPSD_METHODS} if fig4 else {
            "OPPSD-Noble": "oppsd_noble", "OPPSD-PatchOnly": "oppsd_patch_only",
            "OPPSD-CornerOnly": "oppsd_corner_only"})  # fmt: skip
        assert {m["label"]: m["name"] for m in methods(cfg)} == expected
    embedded = jobs(name, "embedded")
    assert list(embedded) == ["resnet8_shapes"]
    b = build_benchmark(embedded["resnet8_shapes"].benchmark)
    assert b.fractions == [0.1, 0.5] and b.train_limit == 1000
    assert (b.recipe.batch_size, b.recipe.max_epochs) == (32, 2)
    # the two files' embedded ROAR settings agree, so their OPPSD-Noble rows do
    other = jobs("oppsd/fig5_roar_ablation" if fig4 else "oppsd/fig4_roar", "embedded")
    assert build_benchmark(other["resnet8_shapes"].benchmark).params() == b.params()
    assert "OPPSD-Noble" in labels(embedded["resnet8_shapes"])


def test_oppsd_fig6_efficiency(jobs) -> None:
    (paper,) = jobs("oppsd/fig6_efficiency", "paper").values()
    b = paper.benchmark
    assert (paper.model.name, paper.model.weights, paper.device) == ("resnet50", "random", "cuda")
    assert (b.inputs, b.batch_size, b.repeats * b.batch_size) == ("random", 32, 1024)
    assert list(paper.model.input_size) == [3, 224, 224]
    assert labels(paper) == list(OPPSD_METHODS)
    (embedded,) = jobs("oppsd/fig6_efficiency", "embedded").values()
    assert (embedded.model.name, embedded.device, embedded.dataset.image_size) == (
        "resnet50", "cpu", 32,
    )  # fmt: skip
    values = {(r["method"], r["metric"]): r["value"] for r in reported("oppsd/fig6_efficiency")
              ["values"]}  # fmt: skip
    assert values == {("FullGrad", "seconds_per_image"): 5.36,
                      ("FullGrad", "peak_mb_per_image"): 8.0}  # fmt: skip


@pytest.mark.parametrize("name", ["prunegrad/fig2_sanity", "prunegrad/fig6_threshold"])
def test_prune_sanity(jobs, name: str) -> None:
    (paper,) = jobs(name, "paper").values()
    b = paper.benchmark
    assert (paper.model.name, paper.dataset.name, paper.model.weights) == (
        "resnet50", "imagenet", "pretrained",
    )  # fmt: skip
    assert (b.n_images, b.mode, b.init, b.std, b.target) == (
        1000, "cascading", "normal", 0.01, "predicted",
    )  # fmt: skip
    assert list(b.metrics) == ["prune_spearman_signed", "prune_spearman_abs", "prune_ssim"]
    assert list(b.blocks) == R50_STAGES
    if name == "prunegrad/fig2_sanity":
        assert {m["label"]: m["name"] for m in methods(paper)} == PRUNE_METHODS
    else:
        assert [(m["name"], m["target_change"]) for m in methods(paper)] == [
            (n, t) for n in ("prunegrad", "prunepgd") for t in THRESHOLDS
        ]
    (embedded,) = jobs(name, "embedded").values()
    assert embedded.model.name == "resnet8" and embedded.benchmark.blocks is None
    assert embedded.benchmark.n_images == 16


@pytest.mark.parametrize(
    "name", ["prunegrad/fig4a_lerf", "prunegrad/fig12a_threshold_lerf",
             "prunegrad/fig4b_roar", "prunegrad/fig12b_threshold_roar"],
)  # fmt: skip
def test_prune_cifar10(jobs, name: str) -> None:
    (paper,) = jobs(name, "paper").values()
    assert (paper.model.name, paper.dataset.name) == ("resnet8", "cifar10")
    assert list(paper.model.net.widths) == [64, 128, 256]
    b = build_benchmark(paper.benchmark)
    if "lerf" in name:
        assert (b.fill, b.output, b.order, b.plan.n_images) == (
            "dataset_mean", "softmax", "least_first", None,
        )  # fmt: skip
        assert b.fractions == [round(0.01 * k, 2) for k in range(1, 11)]
        assert b.postprocess_steps == ["channel_max_abs", "abs"]
    else:
        assert (b.fill, b.target, b.ranking, b.post_steps, b.train_limit, b.init) == (
            "dataset_mean", "predicted", "pixel", ["channel_max_abs", "abs"], None, "scratch",
        )  # fmt: skip
        assert b.fractions == [0.1, 0.3, 0.5, 0.7, 0.9]
        assert (b.recipe.optimizer, b.recipe.lr, b.recipe.batch_size, b.recipe.max_epochs) == (
            "adam", 1e-3, 256, 50,
        )  # fmt: skip
        assert b.recipe.augment
    if "threshold" in name:
        assert [(m["name"], m["target_change"]) for m in methods(paper)] == [
            (n, t) for n in ("prunegrad", "prunepgd") for t in THRESHOLDS
        ]
    else:
        assert {m["label"]: m["name"] for m in methods(paper)} == PRUNE_METHODS
    (embedded,) = jobs(name, "embedded").values()
    assert embedded.model.name == "resnet8" and list(embedded.model.net.widths) == [16, 32, 64]
