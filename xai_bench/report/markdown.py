"""The report as markdown (``report.md``): per paper and experiment, the scale it ran at, our
numbers beside the paper's with the differences, the figure and a verdict per claim."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from xai_bench.report.model import (
    NOT_RUN,
    VERDICTS,
    ClaimCheck,
    Comparison,
    Report,
    Section,
    paper_title,
)


def number(value: float | None, sign: bool = False) -> str:
    """A value as text with 4 significant digits ("—" for ``None``)."""
    if value is None:
        return "—"
    return f"{value:+.4g}" if sign else f"{value:.4g}"


def cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def comparison_head(rows: Sequence[Comparison]) -> list[str]:
    factors = {c.factor for c in rows if c.ours is not None} - {1.0}
    ours = f"ours (x{next(iter(factors)):g})" if len(factors) == 1 else "ours"
    return ["method", "metric", "conditions", "paper", ours, "ours - paper"]


def ours_text(c: Comparison) -> str:
    """Our number, or why there is none."""
    return number(c.ours) if c.ours is not None else f"— ({c.missing})" if c.missing else "—"


def comparison_rows(rows: Sequence[Comparison]) -> list[list[str]]:
    return [
        [c.method, c.metric, c.where, number(c.paper), ours_text(c), number(c.difference, True)]
        for c in rows
    ]


def check_rows(checks: Sequence[ClaimCheck]) -> list[list[str]]:
    return [[c.claim, c.paper_value, c.where, c.ours, c.verdict] for c in checks]


CHECK_HEAD = ["claim", "paper", "model, data", "ours", "verdict"]


def cost_text(s: Section) -> str:
    """The cost of the paper scale ("" when the file gives none)."""
    if not s.gpu_hours:
        return ""
    plural = "" if s.gpu_hours == 1 else "s"
    return f"; the paper scale costs about {s.gpu_hours:g} GPU-hour{plural}"


def scale_text(s: Section) -> str:
    """How the experiment ran at this scale (or the command that runs it)."""
    cost = cost_text(s)
    head = f"Scale: **{s.scale}**. The paper ran: {s.paper_scale}{cost}."
    if not s.ran:
        return f"{head}\n\n**Not run.** Run: `{s.command}`"
    used = "; ".join(
        f"setup {u.setup}: model {u.model} ({u.weights} weights), dataset {u.dataset}, "
        f"{u.images} images, device {u.device} ({u.runs} run{'s' if u.runs > 1 else ''})"
        for u in s.setups
    )
    return f"{head} Ours: {used}."


def figure_text(s: Section, here: Path) -> str:
    if s.figure is None:
        return "Figure not drawn: run `make figures`."
    path = Path(os.path.relpath(s.figure.resolve(), here.resolve())).as_posix()
    return f"![{s.name}]({path})"


def section_markdown(s: Section, here: Path) -> str:
    """One experiment; ``here`` is the folder of report.md (figures are linked relative to it)."""
    parts = [f'<a id="{s.anchor}"></a>', "", f"### {s.name} — {s.source or '?'}", ""]
    if s.description:
        parts += [s.description, ""]
    if s.problem:
        return "\n".join([*parts, f"**Cannot be read:** {s.problem}", ""])
    parts += [scale_text(s), "", f"**Ours beside the paper** (unit: {s.unit})", ""]
    if s.comparisons:
        parts.append(table(comparison_head(s.comparisons), comparison_rows(s.comparisons)))
    else:
        parts.append(f"The paper gives no numbers: {s.note or 'figures only'}.")
    if s.headline:
        parts += ["", "<details><summary>All our headline numbers</summary>", ""]
        parts += [s.headline.replace("### ", "##### ").strip(), "", "</details>"]
    parts += ["", "**Figure**", "", figure_text(s, here), "", "**Claims**", ""]
    parts.append(table(CHECK_HEAD, check_rows(s.checks)) if s.checks else "No claims listed.")
    return "\n".join([*parts, ""])


def overview_markdown(report: Report) -> str:
    counts = report.counts()
    ran = sum(s.ran for s in report.sections)
    rows = [
        [f"[{s.name}](#{s.anchor})", s.source, "yes" if s.ran else "no", s.runs,
         ", ".join(f"{counts_of(s)[v]} {v}" for v in VERDICTS if counts_of(s)[v])]
        for s in report.sections
    ]  # fmt: skip
    verdicts = ", ".join(f"{counts[v]} {v}" for v in VERDICTS)
    return "\n".join([
        f"{len(report.sections)} paper experiments, {ran} with results. Claims: {verdicts}.",
        "",
        table(["experiment", "source", "ran", "runs", "claims"], rows),
    ])  # fmt: skip


def counts_of(s: Section) -> dict[str, int]:
    got = [c.verdict for c in s.checks]
    return {v: got.count(v) for v in VERDICTS}


def missing_markdown(report: Report) -> str:
    missing = report.missing()
    if not missing:
        return "Every paper experiment has results at this scale."
    return "\n".join(f"- {s.name} ({s.source}): {NOT_RUN} — `{s.command}`" for s in missing)


def report_markdown(report: Report, here: Path) -> str:
    """The whole report; ``here`` is the folder report.md is written to."""
    parts = [
        f"# Reproduction report — scale {report.scale}",
        "",
        f"From the stored results under `{report.outputs}/{report.scale}/` and the figures of "
        "`make figures`; nothing is recomputed. Verdicts compare directions with the margins "
        "of `xai_bench/results/claims.py`.",
        "",
        overview_markdown(report),
        "",
        "## Not run",
        "",
        missing_markdown(report),
        "",
    ]
    for paper, sections in report.papers().items():
        parts += [f'<a id="paper-{paper}"></a>', "", f"## {paper_title(paper)}", ""]
        parts += [section_markdown(s, here) for s in sections]
    return "\n".join(parts)
