"""The reproduction report (`make report`): per paper experiment, our numbers beside the
paper's with the differences, the figure of `make figures`, the scale it ran at and a verdict
per claim, from stored results only. Modules: :mod:`~xai_bench.report.model` (what is shown),
:mod:`~xai_bench.report.sections` (reading results), :mod:`~xai_bench.report.compare` (matching
the paper's numbers), :mod:`~xai_bench.report.setups` (what the runs used),
:mod:`~xai_bench.report.verdicts` (claims), :mod:`~xai_bench.report.markdown` and
:mod:`~xai_bench.report.html_page` (rendering), :mod:`~xai_bench.report.build` (writing)."""

from xai_bench.report.build import write_report

__all__ = ["write_report"]
