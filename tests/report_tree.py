"""A small tree for the report tests: three paper experiment files in their own folder, finished
runs of two of them written by :class:`~xai_bench.results.store.RunStore` (the real on-disk
format: results.csv, config.yaml, summary.json with checksums, Hydra's overrides.yaml) and a
tiny PNG as the figure of one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from PIL import Image

from xai_bench.results.store import RunStore

GCAM = "groupcam/table1_deletion_insertion"  # the claims map "Group-CAM at least as good" here
OPPSD = "oppsd/fig2a_sanity"  # ... and the two cascading-randomisation claims here
MISSING = "posagg/table9_missing"

GCAM_FILE = """# @package _global_
# Group-CAM, Table 1: deletion and insertion | a test copy.
# Run:  xai-bench -m experiment=groupcam/table1_deletion_insertion
defaults:
  - override /setup: vgg19_imagenet
  - override /benchmark: deletion_insertion
scales:
  paper: {gpu_hours: 120, overrides: []}
  embedded: {overrides: [setup=resnet8_shapes, benchmark.n_images=32]}
reported:
  source: Group-CAM Table 1
  scale: VGG19, 10k ImageNet validation images
  unit: AUC x 100
  values:
    - {method: Grad-CAM, metric: overall, value: 51.09}
    - {method: Score-CAM, metric: overall, value: 53.28}
    - {method: Group-CAM, metric: overall, value: 53.62}
    - {method: Group-CAM, metric: insertion_auc, value: 64.91, fill: blur}
    - {method: XRAI, metric: overall, value: 42.46}
  claims:
    - Group-CAM has the highest over-all AUC
"""
OPPSD_FILE = """# @package _global_
# OPPSD, Fig. 2: cascading randomisation.
defaults:
  - override /setup: resnet50_imagenet
  - override /benchmark: sanity_checks
scales:
  paper: {gpu_hours: 1.0, overrides: []}
  embedded: {overrides: [setup=resnet8_shapes, benchmark.n_images=16]}
reported:
  source: OPPSD Fig. 2
  scale: ResNet-50, 500 ImageNet validation images
  unit: rank correlation
  values: []
  note: figure only
  claims:
    - OPPSD's curves drop to about 0 right after fc
"""
MISSING_FILE = """# @package _global_
# POSAGG, a table nobody ran.
defaults:
  - override /benchmark: class_sensitivity
scales:
  paper: {gpu_hours: 2, overrides: []}
  embedded: {overrides: []}
reported:
  source: POSAGG Table 9
  scale: VGG-16, ImageNet
  unit: Spearman
  values:
    - {method: GradCAM, metric: hog_spearman, value: 0.03}
"""


def _config(methods: list[tuple[str, str, dict]], n_images: int) -> str:
    resolved = [{"label": label, "name": name, "params": params, "hash": f"h{i}"}
                for i, (label, name, params) in enumerate(methods)]  # fmt: skip
    config = {
        "device": "auto",
        "model": {"name": "resnet8", "weights": "trained", "cam_layer": "layer3",
                  "block_layers": {"B1": "layer1", "B2": "layer2", "B3": "layer3"}},
        "dataset": {"name": "shapes"},
        "benchmark": {"n_images": n_images},
        "resolved_methods": resolved,
    }  # fmt: skip
    return yaml.safe_dump(config)


def _save(run_dir: Path, rows: list[dict], config: str, headline: dict) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / ".hydra").mkdir()
    overrides = ["experiment=x", "setup=resnet8_shapes", "benchmark.n_images=32"]
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    hashes = {}
    for entry in yaml.safe_load(config)["resolved_methods"]:
        hashes[entry["label"]] = entry["hash"]
    table = pd.DataFrame(
        [{"experiment": "x", "model": "resnet8", "dataset": "shapes", "method_config": "",
          "method_hash": hashes[r["method"]], "image": i, **r} for i, r in enumerate(rows)]
    )  # fmt: skip
    RunStore(run_dir).save(table, {"headline": headline, "device": "cpu"}, config)


def write_tree(base: Path) -> tuple[Path, Path]:
    """The experiment folder and the outputs folder of the test tree under ``base``."""
    root, outputs = base / "experiment", base / "outputs"
    for name, text in ((GCAM, GCAM_FILE), (OPPSD, OPPSD_FILE), (MISSING, MISSING_FILE)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / f"{name}.yaml").write_text(text)
    gcam = [("Grad-CAM", "gradcam", {}), ("Score-CAM", "scorecam", {}),
            ("Group-CAM", "groupcam", {"groups": 32})]  # fmt: skip
    overall = {"Grad-CAM": 0.5, "Score-CAM": 0.52, "Group-CAM": 0.55}
    rows = [{"benchmark": "deletion_insertion", "method": m, "metric": "overall", "value": v}
            for m, v in overall.items()]  # fmt: skip
    rows.append({"benchmark": "deletion_insertion", "method": "Group-CAM",
                 "metric": "insertion_auc", "value": 0.7, "fill": "zeros"})  # fmt: skip
    _save(outputs / "embedded" / GCAM / "deletion_insertion/run", rows, _config(gcam, 32),
          {"overall": True, "insertion_auc": True})  # fmt: skip
    oppsd = [("OPPSD-Noble", "oppsd_noble", {}), ("InputGradient", "gradient", {}),
             ("GuidedBackProp", "guided_backprop", {})]  # fmt: skip
    after_fc = {"OPPSD-Noble": 0.05, "InputGradient": 0.3, "GuidedBackProp": 0.95}
    rows = [{"benchmark": "sanity_checks", "method": m, "metric": "spearman_abs", "value": v,
             "mode": "cascading", "stage_index": 1} for m, v in after_fc.items()]  # fmt: skip
    _save(outputs / "embedded" / OPPSD / "sanity_checks/run", rows, _config(oppsd, 16),
          {"spearman_abs": None})  # fmt: skip
    figure = outputs / "figures" / "embedded" / f"{GCAM}.png"
    figure.parent.mkdir(parents=True)
    Image.new("RGB", (6, 4), (200, 30, 30)).save(figure)
    return root, outputs
