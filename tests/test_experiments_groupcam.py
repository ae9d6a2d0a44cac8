"""Group-CAM's paper experiments (``experiment=groupcam/<result>``).

Every job of each file's sweep composes at both scales, as ``xai-bench -m experiment=<name>
scale=<scale>`` runs it (the file's ``hydra.sweeper.params``, then the scale's overrides); the
top level holds the paper's protocol (models, image counts, G and theta grids, methods with the
paper's labels, VGG19's 16 conv layers), the embedded scale swaps in the models of ``make run``
and ``make finetune`` with their checkpoints, and the ``reported`` block validates and names
methods and metrics that the runs write. No training, no data.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from xai_bench.benchmarks.groupcam_finetune import VARIANTS
from xai_bench.benchmarks.sanity_checks import METRICS as SANITY_METRICS
from xai_bench.experiments import SCALES, expand_argv, paper_experiments, read_experiment, reported
from xai_bench.run import build_benchmark
from xai_bench.training.recipe import Recipe
from xai_bench.utils.configs import CONFIG_DIR
from xai_bench.workspace import Workspace

NAMES = ["groupcam/table1_deletion_insertion", "groupcam/table2_groups",
         "groupcam/fig5_threshold", "groupcam/table3_runtime", "groupcam/table4_pointing",
         "groupcam/fig3_class_maps", "groupcam/fig6_sanity", "groupcam/fig7_finetune"]  # fmt: skip
#: Table 1's (and Table 4's) comparison: label -> method config
TABLE1 = {"Grad-CAM": "gradcam", "Grad-CAM++": "gradcampp", "RISE": "rise", "XRAI": "xrai",
          "Score-CAM": "scorecam", "Group-CAM": "groupcam"}  # fmt: skip
TABLE3 = ["RISE", "XRAI", "Grad-CAM", "Score-CAM", "Group-CAM"]
GROUPS = [1, 4, 8, 16, 32, 64, 128, 256]
THETAS = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
#: what each benchmark writes in results.csv's `metric` column
WRITTEN = {
    "deletion_insertion": {"deletion_auc", "insertion_auc", "overall"},
    "efficiency": {"seconds_per_image", "peak_mb_per_image", "time_ratio_to_fwd_bwd",
                   "memory_ratio_to_fwd_bwd"},
    "pointing_game": {"accuracy", "hit_rate"},
    "gallery": {"seconds_per_image"},
    "sanity_checks": set(SANITY_METRICS),
    "groupcam_finetune": {"val_acc", "val_loss", "test_acc", "test_loss", "start_test_acc"},
}  # fmt: skip
#: the experiment of `make run` / `make finetune` whose checkpoint each embedded setup reuses
MAKE_RUN = {"resnet8_shapes": "embedded", "vgg16_small_shapes_multi": "embedded_multi",
            "resnet8_shapes_hard": "embedded_finetune"}  # fmt: skip


def vgg_convs(cfg: list) -> list[str]:
    """The conv modules of a torchvision VGG ``features`` built from ``cfg``, the last first."""
    names, i = [], 0
    for v in cfg:
        if v == "M":
            i += 1
        else:
            names.append(f"features.{i}")
            i += 2  # conv, ReLU
    return names[::-1]


VGG19_CONVS = vgg_convs([64, 64, "M", 128, 128, "M", *[256] * 4, "M", *[512] * 4, "M",
                         *[512] * 4, "M"])  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("groupcam")


def sweep(name: str, scale: str) -> list[list[str]]:
    """The override lists of the jobs of ``xai-bench -m experiment=<name> scale=<scale>``."""
    params = read_experiment(name)["hydra"]["sweeper"]["params"] or {}
    lines = [f"{k}={v}" for k, v in params.items()]
    lines += expand_argv([f"experiment={name}", f"scale={scale}"])
    parsed = OverridesParser.create().parse_overrides(lines)
    return BasicSweeper.split_arguments(parsed, None)[0]


@functools.cache
def _compose(root: Path, overrides: tuple[str, ...]) -> DictConfig:
    """The run config of ``overrides`` (cached: each composition takes a good part of a
    second)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("run", overrides=[f"paths.root_dir={root}", *overrides],
                       return_hydra_config=True)  # fmt: skip


def _jobs(root: Path, name: str, scale: str) -> tuple[DictConfig, ...]:
    return tuple(_compose(root, tuple(job)) for job in sweep(name, scale))


@pytest.fixture
def jobs(root: Path):
    return lambda name, scale: list(_jobs(root, name, scale))


@pytest.fixture
def job(jobs):
    def one(name: str, scale: str) -> DictConfig:
        (cfg,) = jobs(name, scale)
        return cfg

    return one


def methods(cfg: DictConfig) -> list[dict]:
    return OmegaConf.to_container(cfg.benchmark.methods, resolve=True)  # type: ignore[return-value]


def labels(cfg: DictConfig) -> list[str]:
    return [m["label"] for m in methods(cfg)]


def setup(cfg: DictConfig) -> str:
    return str(cfg.hydra.runtime.choices.setup)


def test_the_files_are_paper_experiments() -> None:
    assert set(NAMES) == {n for n in paper_experiments() if n.startswith("groupcam/")}


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", NAMES)
def test_every_job_composes_builds_and_reports_what_it_writes(jobs, name, scale) -> None:
    cfgs = jobs(name, scale)
    for cfg in cfgs:
        assert cfg.experiment_name == f"{scale}/{name}" and cfg.scale == scale
        build_benchmark(cfg.benchmark)
    rep = reported(name)
    cfg = jobs(name, "paper")[0]  # the paper's numbers are of the paper's methods
    bench = cfg.benchmark.name
    written = WRITTEN[bench]
    names = set(VARIANTS) if bench == "groupcam_finetune" else set(labels(cfg))
    for row in rep["values"]:
        assert row["method"] in names and row["metric"] in written, row
    assert rep["values"] or rep["note"]
    figure = read_experiment(name).get("figure")
    if figure and figure["kind"] == "curve_over_param":  # the swept parameter of every variant
        assert all(figure["param"] in m for m in methods(cfg))


@pytest.mark.parametrize("name", NAMES)
def test_embedded_reuses_the_checkpoints_of_make_run(jobs, root, name) -> None:
    """The embedded models are those of `make run` / `make finetune`: same checkpoint key."""
    for cfg in jobs(name, "embedded"):
        own = MAKE_RUN[setup(cfg)]
        ref = _compose(root, (f"experiment={own}",))
        ours, theirs = Workspace(cfg, root / "a"), Workspace(ref, root / "b")
        assert ours.checkpoint_dir == theirs.checkpoint_dir


@pytest.mark.parametrize("name", ["groupcam/table1_deletion_insertion", "groupcam/table2_groups",
                                  "groupcam/fig5_threshold"])  # fmt: skip
def test_deletion_insertion_protocol(job, name) -> None:
    paper, emb = job(name, "paper"), job(name, "embedded")
    assert (setup(paper), paper.model.name, paper.dataset.name, paper.model.weights) == (
        "vgg19_imagenet", "vgg19", "imagenet", "pretrained",
    )  # fmt: skip
    b = paper.benchmark
    assert (b.step_pixels, b.step_reference_size, b.blur, b.score, b.tie_break) == (
        448, 224, "gcam", "softmax", "index",
    )  # fmt: skip
    assert (b.deletion_fill, b.insertion_fill, b.target) == ("dataset_mean", "blur", "predicted")
    assert b.n_images == (10000 if name.endswith("deletion_insertion") else 5000)
    assert setup(emb) == "resnet8_shapes" and emb.benchmark.n_images in (24, 32)
    # the embedded scale changes the models and counts, not the protocol
    for key in ("step_pixels", "blur", "score", "tie_break", "deletion_fill", "insertion_fill"):
        assert emb.benchmark[key] == b[key], key


def test_table1_methods(job) -> None:
    name = "groupcam/table1_deletion_insertion"
    paper, emb = job(name, "paper"), job(name, "embedded")
    ms = {m["label"]: m for m in methods(paper)}
    assert {k: m["name"] for k, m in ms.items()} == TABLE1
    assert (ms["RISE"]["n_masks"], ms["RISE"]["s"], ms["RISE"]["p1"], ms["RISE"]["score"]) == (
        8000, 7, 0.1, "logit",
    )  # fmt: skip
    assert (ms["Group-CAM"]["groups"], ms["Group-CAM"]["theta"]) == (32, 70)
    embedded = {m["label"]: m for m in methods(emb)}
    assert list(embedded) == list(TABLE1)
    assert (embedded["RISE"]["n_masks"], embedded["RISE"]["score"]) == (1000, "softmax")


def test_table2_groups_and_fig5_thetas(job) -> None:
    for scale, grid in (("paper", GROUPS), ("embedded", GROUPS[:6])):  # 64 channels at embedded
        ms = methods(job("groupcam/table2_groups", scale))
        assert [m["groups"] for m in ms] == grid and {m["theta"] for m in ms} == {70}
        assert [m["label"] for m in ms] == [f"G={g}" for g in grid]
        assert {m["name"] for m in ms} == {"groupcam"}
    for scale in SCALES:
        ms = methods(job("groupcam/fig5_threshold", scale))
        assert [m["theta"] for m in ms] == THETAS and {m["groups"] for m in ms} == {32}
        assert [m["label"] for m in ms] == [f"theta={t}" for t in THETAS]


def test_table3_runtime(job) -> None:
    paper, emb = job("groupcam/table3_runtime", "paper"), job("groupcam/table3_runtime", "embedded")
    assert setup(paper) == "vgg19_imagenet" and paper.benchmark.name == "efficiency"
    assert paper.benchmark.batch_size == 1 and paper.benchmark.inputs == "data"
    assert labels(paper) == labels(emb) == TABLE3
    rise = methods(emb)[0]
    assert (rise["n_masks"], rise["score"]) == (8000, "logit")  # timed as the paper's
    assert setup(emb) == "resnet8_shapes"


def test_table4_pointing(job) -> None:
    paper = job("groupcam/table4_pointing", "paper")
    assert (paper.model.name, paper.model.weights, paper.dataset.name) == (
        "resnet50_torchray", "torchray", "coco2017",
    )  # fmt: skip
    assert paper.dataset.resize == "square"
    b = paper.benchmark
    assert (b.n_images, b.tolerance, b.gt, b.class_mean, b.smooth_sigma) == (
        None, 15, "masks", "all", None,
    )  # fmt: skip
    assert {m["label"]: m["name"] for m in methods(paper)} == TABLE1
    emb = job("groupcam/table4_pointing", "embedded")
    assert (setup(emb), emb.model.name, emb.dataset.name) == (
        "vgg16_small_shapes_multi", "vgg16_small", "shapes_multi",
    )  # fmt: skip
    assert emb.benchmark.tolerance == "auto" and emb.benchmark.n_images == 16
    assert labels(emb) == list(TABLE1)


def test_fig3_class_maps(job) -> None:
    for scale, own in (("paper", "vgg19_imagenet"), ("embedded", "vgg16_small_shapes_multi")):
        cfg = job("groupcam/fig3_class_maps", scale)
        assert setup(cfg) == own and cfg.benchmark.name == "gallery"
        assert cfg.benchmark.classes_per_image == 2 and labels(cfg) == ["Group-CAM"]


def test_fig6_sanity_randomises_the_conv_layers(jobs) -> None:
    assert VGG19_CONVS[0] == "features.34" and len(VGG19_CONVS) == 16
    for scale in SCALES:
        cfgs = jobs("groupcam/fig6_sanity", scale)
        assert [c.benchmark.mode for c in cfgs] == ["cascading", "independent"]
        for cfg in cfgs:
            b = cfg.benchmark
            assert (b.init, b.target, labels(cfg)) == ("default", "predicted", ["Group-CAM"])
            # every conv of `features`, the last first; the classifier stays trained
            convs = [n for n in cfg.model.blocks if n.startswith("features.")]
            assert list(b.blocks) == convs
            if scale == "paper":
                assert list(b.blocks) == VGG19_CONVS and b.n_images == 1
                assert setup(cfg) == "vgg19_imagenet"
            else:
                assert len(b.blocks) == 13 and setup(cfg) == "vgg16_small_shapes_multi"


def test_fig7_finetune(job, root) -> None:
    paper = job("groupcam/fig7_finetune", "paper")
    assert setup(paper) == "gcam_resnet50_imagenet" and paper.method.name == "groupcam_finetune"
    assert paper.benchmark.name == "groupcam_finetune"  # groupcam_finetune_paper: the train recipe
    r = Recipe.from_mapping(paper.benchmark.recipe)
    assert (r.lr, r.max_epochs, r.step_size, r.batch_size, r.momentum) == (1e-3, 20, 15, 256, 0.9)
    assert paper.benchmark.groups == 16
    emb = job("groupcam/fig7_finetune", "embedded")
    ref = _compose(root, ("experiment=embedded_finetune",))
    assert setup(emb) == "resnet8_shapes_hard"
    assert emb.benchmark == ref.benchmark  # make finetune's recipe and Group-CAM settings
