"""A key typo on the command line: one line (exit 2) naming the level and its valid keys."""

from __future__ import annotations

import subprocess
import sys

from xai_bench.override_check import unknown_key


def test_a_misspelt_key_names_its_level_and_the_valid_keys() -> None:
    message = unknown_key(["benchmark=sanity_checks", "benchmark.n_imagse=4"])
    assert message is not None
    assert message.startswith("unknown key 'benchmark.n_imagse': benchmark has no key 'n_imagse'")
    assert "n_images" in message and "methods" in message and "\n" not in message
    top = unknown_key(["seed=1", "trian.lr=0.1", "sede=2"])  # the first typo is reported
    assert top is not None and "the root config has no key 'trian'" in top
    assert "train, train_if_missing" in top


def test_valid_keys_additions_and_group_dependent_keys_pass() -> None:
    assert unknown_key(["benchmark=sanity_checks", "benchmark.n_images=4", "train.lr=0.1"]) is None
    assert unknown_key(["+benchmark.brand_new=1", "~benchmark.methods"]) is None
    assert unknown_key(["-m", "benchmark=roar,overview", "benchmark.train_limit=5"]) is None
    wrong = unknown_key(["benchmark=overview", "benchmark.train_limit=5"])
    assert wrong is not None and "benchmark has no key 'train_limit'" in wrong
    nested = unknown_key(["benchmark=roar", "benchmark.recipe.lrr=0.1"])
    assert nested is not None and "benchmark.recipe has no key 'lrr'" in nested
    assert "optimizer" in nested
    assert unknown_key(["experiment=embedded", "model.net.widths=[4,8,8]"]) is None
    assert unknown_key(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]) is None


def test_the_cli_reports_it_in_one_line_with_exit_2(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "xai_bench", "benchmark.n_figur=3", f"paths.root_dir={tmp_path}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        "xai-bench: error: unknown key 'benchmark.n_figur'"
    )
    assert not (tmp_path / "outputs").exists()
