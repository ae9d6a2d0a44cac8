"""`make report` (xai_bench.report): the paper's numbers beside ours with the differences, a
verdict per claim, the scale a run used, and the experiments that did not run."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.report_tree import GCAM, MISSING, OPPSD, write_tree
from xai_bench.experiments import paper_experiments
from xai_bench.report import write_report
from xai_bench.report.compare import compare, unit_factor
from xai_bench.report.verdicts import claim_keys, groups
from xai_bench.results.claims import CLAIMS

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def report_md(tmp_path_factory: pytest.TempPathFactory) -> str:
    root, outputs = write_tree(tmp_path_factory.mktemp("report"))
    md, _ = write_report("embedded", outputs, root=root)
    assert md == outputs / "report" / "report.md"
    return md.read_text()


def lines_with(text: str, *parts: str) -> list[str]:
    return [line for line in text.splitlines() if all(p in line for p in parts)]


def test_our_numbers_beside_the_papers_with_the_differences(report_md: str) -> None:
    # AUC x 100: ours (fractions) are scaled; the difference is ours - paper
    assert "| method | metric | conditions | paper | ours (x100) | ours - paper |" in report_md
    assert "| Group-CAM | overall |  | 53.62 | 55 | +1.38 |" in report_md
    assert "| Grad-CAM | overall |  | 51.09 | 50 | -1.09 |" in report_md
    # a condition ours lacks and a method we did not run: no number, and why
    assert lines_with(report_md, "| Group-CAM | insertion_auc | fill=blur | 64.91 |",
                      "no fill=blur (ours: zeros)")  # fmt: skip
    assert lines_with(report_md, "| XRAI | overall |", "no method labelled XRAI")


def test_a_verdict_per_claim_with_the_number_behind_it(report_md: str) -> None:
    [gcam] = lines_with(report_md, "Group-CAM at least as good as Grad-CAM and Score-CAM")
    assert gcam.endswith("| holds |") and "Group-CAM 0.550" in gcam and "resnet8, shapes" in gcam
    # the rules know methods by name: the paper's labels are renamed from the runs' configs
    [gbp] = lines_with(report_md, "GBP stays similar after the output layer")
    assert gbp.endswith("| holds |") and "GBP 0.95" in gbp
    [drop] = lines_with(report_md, "gradient and OPPSD drop sharply")
    assert drop.endswith("| holds |")
    assert lines_with(report_md, "OPPSD's curves drop to about 0", "not checked automatically")
    assert lines_with(report_md, "Group-CAM has the highest over-all AUC", "not checked")


def test_scale_figure_and_missing_experiments(report_md: str) -> None:
    assert ("Ours: setup resnet8_shapes: model resnet8 (trained weights), dataset shapes, 32 "
            "images, device cpu (1 run).") in report_md  # fmt: skip
    assert "The paper ran: VGG19, 10k ImageNet validation images; the paper scale" in report_md
    assert f"![{GCAM}](../figures/embedded/{GCAM}.png)" in report_md
    oppsd = report_md[report_md.index(f"### {OPPSD}") :]
    assert "Figure not drawn: run `make figures`." in oppsd
    assert "The paper gives no numbers: figure only." in oppsd
    cmd = f"`xai-bench -m experiment={MISSING} scale=embedded`"
    assert f"- {MISSING} (POSAGG Table 9): not run — {cmd}" in report_md
    assert "3 paper experiments, 2 with results. Claims: 3 holds, 0 does not hold" in report_md


def test_report_without_any_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The script exits normally on an empty outputs folder: every experiment is "not run"."""
    sys.path.insert(0, str(REPO / "scripts"))
    import make_report

    monkeypatch.setattr(sys, "argv", ["make_report.py", "--outputs", str(tmp_path)])
    make_report.main()
    md = (tmp_path / "report" / "report.md").read_text()
    assert "0 with results" in md and "0 holds" in md
    assert (tmp_path / "report" / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_claims_name_existing_paper_experiments() -> None:
    known = set(paper_experiments())
    for claim in CLAIMS:
        for group in groups(claim):
            assert set(group) <= known, f"{claim.claim}: {set(group) - known}"


def test_claim_keys_rename_labels_blocks_and_keep_the_rest() -> None:
    config = {
        "model": {"cam_layer": "f.30", "block_layers": {"B4": "f.23", "B5": "f.30"}},
        "resolved_methods": [
            {"label": "GradCAM++ B4", "name": "gradcampp", "params": {"layer": "f.23"}},
            {"label": "GradCAM++ B5", "name": "gradcampp", "params": {"layer": "f.30"}},
            {"label": "GuidedBackProp", "name": "guided_backprop", "params": {}},
            {"label": "gradcam_pos_B1", "name": "gradcam_pos", "params": {"layer": "f.3"}},
            {"label": "G=8", "name": "groupcam", "params": {"groups": 8}},
            {"label": "G=32", "name": "groupcam", "params": {"groups": 32}},
        ],
    }
    assert claim_keys(config) == {
        "GradCAM++ B4": "gradcampp_B4", "GradCAM++ B5": "gradcampp",
        "GuidedBackProp": "guided_backprop", "gradcam_pos_B1": "gradcam_pos_B1",
        "G=8": "G=8", "G=32": "G=32",
    }  # fmt: skip


def test_unit_factor_and_numeric_conditions() -> None:
    assert unit_factor("pointing accuracy in %", [0.5, 0.9]) == 100
    assert unit_factor("top-1 (%)", [76.1]) == 1  # already in percent
    assert unit_factor("Spearman", [0.5]) == 1
    long = pd.DataFrame({"method": ["A", "A"], "metric": ["m", "m"], "stage": ["1", "2"],
                         "value": [0.1, 0.3]})  # fmt: skip
    block = {"unit": "", "values": [{"method": "A", "metric": "m", "value": 0.2, "stage": 2.0}]}
    [row] = compare(block, long)
    assert row.ours == pytest.approx(0.3) and row.difference == pytest.approx(0.1)
    assert row.where == "stage=2.0" and row.n == 1
