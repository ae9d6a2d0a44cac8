"""Method specs: variants of one method side by side, their identity in every table, user config
folders in lists, clear errors for bad entries, and a benchmark called without Hydra."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import GRADIENT, tiny_context
from xai_bench.benchmarks.pixel_perturbation import PixelPerturbation
from xai_bench.method_specs import resolve_methods
from xai_bench.methods.spec import MethodSpec
from xai_bench.results.store import load_all
from xai_bench.results.summary import write_summary
from xai_bench.run import run
from xai_bench.utils.errors import UserInputError

REPO = Path(__file__).resolve().parent.parent
TINY = ("model.weights=random", "model.net.widths=[4,8,8]", "dataset.datamodule.n_test=8",
        "benchmark=efficiency", "benchmark.batch_size=4", "benchmark.repeats=1",
        "benchmark.warmup=0")  # fmt: skip
B2 = "${model.block_layers.B2}"
PP = "benchmark=pixel_perturbation"
B3 = "${model.block_layers.B3}"


def test_entries_resolve_to_labels_params_and_hashes(make_cfg) -> None:
    cfg = make_cfg(
        "benchmark=pixel_perturbation",
        f"benchmark.methods=[gradient,{{name:gradcampp,layer:'{B2}'}},"
        f"{{name:gradcampp,label:B3,params:{{layer:'{B3}'}}}}]",
    )
    specs = resolve_methods(cfg)
    assert specs.labels() == ["gradient", "gradcampp(layer=layer2)", "B3"]
    assert [s.config_name for s in specs] == ["gradient", "gradcampp", "gradcampp"]
    assert specs[1].params == {"layer": "layer2"} and specs[2].params == {"layer": "layer3"}
    assert specs[1].config["explainer"]["layer"] == "layer2"  # interpolation resolved
    assert len({s.hash for s in specs}) == 3
    # the same parameters give the same hash, whatever the label
    again = resolve_methods(make_cfg(PP, f"benchmark.methods=[{{name:gradcampp,layer:'{B2}'}}]"))
    assert again[0].hash == specs[1].hash


def test_own_method_is_the_one_entry_case(make_cfg) -> None:
    cfg = make_cfg("benchmark=pixel_perturbation", "benchmark.methods=[]", "method=gradcampp",
                   f"method.explainer.layer={B2}")  # fmt: skip
    (spec,) = resolve_methods(cfg)
    listed = resolve_methods(make_cfg(PP, f"benchmark.methods=[{{name:gradcampp,layer:'{B2}'}}]"))
    assert (spec.label, spec.hash) == (listed[0].label, listed[0].hash)
    plain = resolve_methods(make_cfg(PP, "benchmark.methods=[]", "method=gradcampp"))[0]
    assert plain.label == "gradcampp" and plain.params == {}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("[gradient,gradcam_typo]", r"benchmark.methods\[1\]: unknown method 'gradcam_typo'"),
        ("[{name:gradcam,layr:x}]", r"benchmark.methods\[0\] \(gradcam\): unknown parameter.*layr"),
        ("[gradient,{name:gradcam,label:gradient}]", "label 'gradient' is used twice"),
        ("[{label:x}]", r"benchmark.methods\[0\]: a method entry is a config name or a mapping"),
    ],
)
def test_bad_entries_fail_before_any_computation(make_cfg, tmp_path, entry, message) -> None:
    cfg = make_cfg("benchmark=pixel_perturbation", f"benchmark.methods={entry}")
    with pytest.raises(UserInputError, match=message):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written, no model trained
    assert not Path(cfg.paths.checkpoint_dir).exists()


def test_two_variants_in_one_run_give_two_rows(make_cfg, tmp_path) -> None:
    methods = f"benchmark.methods=[{{name:gradcampp,layer:'{B2}'}},{{name:gradcampp,layer:'{B3}'}}]"
    cfg = make_cfg(*TINY, methods)
    out = tmp_path / "outputs"
    run(cfg, out / "one")
    table = pd.read_csv(out / "one" / "results.csv")
    ratios = table[table.metric == "time_ratio_to_fwd_bwd"].set_index("method")
    assert {"gradcampp(layer=layer2)", "gradcampp(layer=layer3)"} <= set(ratios.index)
    variants = ratios.loc[["gradcampp(layer=layer2)", "gradcampp(layer=layer3)"]]
    assert set(variants.method_config) == {"gradcampp"} and variants.method_hash.nunique() == 2
    saved = yaml.safe_load((out / "one" / "config.yaml").read_text())["resolved_methods"]
    assert [s["config"]["explainer"]["layer"] for s in saved] == ["layer2", "layer3"]
    long = pd.read_csv(write_summary(out)[0])
    rows = long[(long.metric == "time_ratio_to_fwd_bwd") & (long.method_config == "gradcampp")]
    assert len(rows) == 2 and set(rows.n) == {1}


def test_two_variants_in_two_runs_give_two_rows(make_cfg, tmp_path) -> None:
    out = tmp_path / "outputs"
    for name, block in (("b2", B2), ("b3", B3)):
        cfg = make_cfg(*TINY, "benchmark.methods=[]", "method=gradcampp",
                       f"method.explainer.layer={block}")  # fmt: skip
        run(cfg, out / name)
    long = pd.read_csv(write_summary(out)[0])
    rows = long[(long.metric == "time_ratio_to_fwd_bwd") & (long.method_config == "gradcampp")]
    assert sorted(rows.method) == ["gradcampp(layer=layer2)", "gradcampp(layer=layer3)"]
    assert set(rows.n) == {1}
    spec = importlib.util.spec_from_file_location("collect", REPO / "scripts/collect_results.py")
    collect = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(collect)  # type: ignore[union-attr]
    collected = collect.grouped(load_all(out))
    got = collected[(collected.metric == "time_ratio_to_fwd_bwd")]
    assert len(got[got.method_config == "gradcampp"]) == 2


def test_user_config_folder_works_inside_a_list(tmp_path) -> None:
    conf = tmp_path / "conf" / "method"
    conf.mkdir(parents=True)
    (conf / "my_gradient.yaml").write_text(
        "name: my_gradient\nexplainer:\n  _target_: xai_bench.methods.gradient.Gradient\n"
        "  _partial_: true\n"
    )
    env = {**os.environ, "XAI_BENCH_ROOT": str(tmp_path)}
    args = [sys.executable, "-m", "xai_bench", "--config-dir", str(tmp_path / "conf"), *TINY,
            "benchmark.methods=[gradient,my_gradient,{name:my_gradient,label:mine}]"]  # fmt: skip
    res = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    run_dir = next((tmp_path / "outputs").rglob("results.csv")).parent
    assert run_dir.parent.name == "gradient+my_gradient+mine"  # the method folder: the labels
    table = pd.read_csv(run_dir / "results.csv")
    mine = table[table.method.isin(["my_gradient", "mine"])]
    assert set(mine.method_config) == {"my_gradient"} and mine.method_hash.nunique() == 1


def test_benchmark_runs_without_hydra(tmp_path) -> None:
    specs = [MethodSpec.create("gradient", GRADIENT),
             MethodSpec.create("gradient", GRADIENT, label="again")]  # fmt: skip
    ctx = tiny_context(tmp_path, specs, num_classes=4)
    result = PixelPerturbation(n_images=4, batch_size=4, fractions=[0.1]).run(ctx)
    auc = result.table[result.table.metric == "auc"]
    assert sorted(auc.method.unique()) == ["again", "gradient"] and len(auc) == 8
    a, b = (auc[auc.method == m].value.to_numpy() for m in ("gradient", "again"))
    assert (a == b).all()  # equal parameters, equal numbers


def test_run_directories_are_readable(tmp_path) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from xai_bench.utils.configs import CONFIG_DIR

    def run_dir(*overrides: str) -> str:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(
                "run", [f"paths.root_dir={tmp_path}", *overrides], return_hydra_config=True
            )
            HydraConfig.instance().set_config(cfg)
            return str(Path(cfg.hydra.run.dir).relative_to(tmp_path / "outputs"))

    assert run_dir("benchmark=overview") == "default/overview/resnet8/shapes/base"  # no method
    listed = run_dir(
        PP,
        f"benchmark.methods=[gradient,{{name:gradcampp,layer:'{B2}'}},{{name:gradcam,label:GC}}]",
    )
    assert (
        listed
        == "default/pixel_perturbation/resnet8/shapes/gradient+gradcampp(layer=layer2)+GC/base"
    )
    own = run_dir(PP, "benchmark.methods=[]", "method=gradcampp", "method.explainer.relu=false")
    assert own == "default/pixel_perturbation/resnet8/shapes/gradcampp/method.explainer.relu=false"
    named = run_dir("experiment=input_invariance", "experiment_name=paper", "seed=3")
    assert named.startswith("paper/input_invariance/mlp/digits/") and named.endswith("/seed=3")
    long = run_dir(PP, "benchmark.methods=[]", *(f"+tag{i}=value_{i}" for i in range(12)))
    assert len(long.rsplit("/", 1)[1]) <= 200 and "tag0=value_0" in long
    longer = run_dir(PP, "benchmark.methods=[]", *(f"+tag{i}=value_{i}" for i in range(30)))
    leaf = longer.rsplit("/", 1)[1]
    assert len(leaf) == 200 and leaf.startswith("+tag0=value_0")  # cut, with a hash suffix
