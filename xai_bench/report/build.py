"""`make report`: collect every paper experiment's section and write ``report.md`` and
``report.html`` (atomically) into the report folder."""

from __future__ import annotations

from pathlib import Path

from xai_bench.experiments import DEFAULT_SCALE, EXPERIMENT_DIR
from xai_bench.report.html_page import report_html
from xai_bench.report.markdown import report_markdown
from xai_bench.report.sections import collect
from xai_bench.utils.io import atomic_write_text

REPORT_MD = "report.md"
REPORT_HTML = "report.html"


def write_report(
    scale: str = DEFAULT_SCALE,
    outputs: str | Path = "outputs",
    out_dir: str | Path | None = None,
    figures: str | Path | None = None,
    root: Path = EXPERIMENT_DIR,
) -> tuple[Path, Path]:
    """Write the report of ``scale`` from the results under ``outputs`` into ``out_dir``
    (default ``<outputs>/report``); return the paths of report.md and report.html."""
    out = Path(out_dir) if out_dir is not None else Path(outputs) / "report"
    report = collect(scale, outputs, figures, root)
    md = atomic_write_text(out / REPORT_MD, report_markdown(report, out))
    page = atomic_write_text(out / REPORT_HTML, report_html(report))
    return md, page
