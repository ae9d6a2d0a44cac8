"""The report as one self-contained HTML page (``report.html``): inline CSS, figures embedded as
base64 data URIs, no script and no external resource (a Content-Security-Policy forbids them),
so the single file can be mailed. Ids: ``paper-<paper>`` per paper, ``exp-<paper>-<result>`` per
experiment, ``overview`` and ``not-run``."""

from __future__ import annotations

import base64
import re
from collections.abc import Collection, Iterable, Sequence
from html import escape
from pathlib import Path

from xai_bench.report.markdown import (
    CHECK_HEAD,
    check_rows,
    comparison_head,
    comparison_rows,
    cost_text,
    counts_of,
)
from xai_bench.report.model import VERDICTS, Report, Section, paper_title

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1em 2em;color:#222}
h1{font-size:1.6em}h2{border-bottom:2px solid #ccc;margin-top:2em}h3{margin-top:1.5em}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
article{border-left:3px solid #ddd;padding-left:1em;margin:1.5em 0}
img{max-width:100%;height:auto;border:1px solid #eee}
code{background:#f5f5f5;padding:1px 4px}.desc{color:#555}
.verdict{padding:1px 6px;border-radius:3px;white-space:nowrap}
.holds{background:#d7f5d7}.does-not-hold{background:#f8d0d0}.not-run{background:#e6e6e6}
.not-checked-automatically{background:#fbefc6}.problem{color:#a00}
"""


def _class(verdict: str) -> str:
    return re.sub(r"[^a-z]+", "-", verdict.lower()).strip("-")


def badge(verdict: str) -> str:
    return f'<span class="verdict {_class(verdict)}">{escape(verdict)}</span>'


def html_table(
    head: Sequence[str], rows: Iterable[Sequence[str]], raw: Collection[int] = ()
) -> str:
    """A table of text cells, escaped, except the columns ``raw`` (already HTML)."""
    out = ["<table><thead><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        cells = [c if i in raw else escape(str(c)) for i, c in enumerate(row)]
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "".join([*out, "</tbody></table>"])


def image(path: Path, alt: str) -> str:
    """``path`` as an ``<img>`` with its bytes in a data URI."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    mime = "image/svg+xml" if path.suffix == ".svg" else f"image/{path.suffix.lstrip('.')}"
    return f'<img alt="{escape(alt)}" src="data:{mime};base64,{data}">'


def markdown_tables(text: str) -> str:
    """The headline markdown of :func:`~xai_bench.results.summary.headline_markdown` (headings,
    lines and pipe tables) as HTML."""
    out, rows = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            if not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip()):
                cells = re.split(r"(?<!\\)\|", line)[1:-1]
                rows.append([c.strip().replace("\\|", "|") for c in cells])
            continue
        if rows:
            out.append(html_table(rows[0], rows[1:]))
            rows = []
        if line.startswith("#"):
            out.append(f"<h4>{escape(line.lstrip('#').strip())}</h4>")
        elif line.strip():
            out.append(f"<p>{escape(line)}</p>")
    return "\n".join(out)


def scale_html(s: Section) -> str:
    cost = cost_text(s)
    head = (f"<p>Scale: <b>{escape(s.scale)}</b>. The paper ran: {escape(s.paper_scale)}"
            f"{escape(cost)}.</p>")  # fmt: skip
    if not s.ran:
        return f"{head}<p>{badge('not run')} Run: <code>{escape(s.command)}</code></p>"
    rows = [[u.setup, u.model, u.weights, u.dataset, u.images, u.device, str(u.runs)]
            for u in s.setups]  # fmt: skip
    head_row = ["setup", "model", "weights", "dataset", "images", "device", "runs"]
    return head + html_table(head_row, rows)


def section_html(s: Section) -> str:
    parts = [f'<article class="experiment" id="{escape(s.anchor)}">',
             f"<h3>{escape(s.name)} — {escape(s.source or '?')}</h3>"]  # fmt: skip
    if s.description:
        parts.append(f'<p class="desc">{escape(s.description)}</p>')
    if s.problem:
        return "".join([*parts, f'<p class="problem">Cannot be read: {escape(s.problem)}</p>',
                        "</article>"])  # fmt: skip
    parts += [scale_html(s), f"<h4>Ours beside the paper</h4><p>Unit: {escape(s.unit)}</p>"]
    if s.comparisons:
        parts.append(html_table(comparison_head(s.comparisons), comparison_rows(s.comparisons)))
    else:
        parts.append(f"<p>The paper gives no numbers: {escape(s.note or 'figures only')}.</p>")
    if s.headline:
        parts.append("<details><summary>All our headline numbers</summary>"
                     f"{markdown_tables(s.headline)}</details>")  # fmt: skip
    parts.append("<h4>Figure</h4>")
    if s.figure is None:
        parts.append("<p>Figure not drawn: run <code>make figures</code>.</p>")
    else:
        parts.append(f"<p>{image(s.figure, s.name)}</p>")
    parts.append("<h4>Claims</h4>")
    if s.checks:
        rows = [[*r[:-1], badge(r[-1])] for r in check_rows(s.checks)]
        parts.append(html_table(CHECK_HEAD, rows, raw={len(CHECK_HEAD) - 1}))
    else:
        parts.append("<p>No claims listed.</p>")
    return "".join([*parts, "</article>"])


def overview_html(report: Report) -> str:
    counts = report.counts()
    rows = []
    for s in report.sections:
        got = counts_of(s)
        claims = ", ".join(f"{got[v]} {v}" for v in VERDICTS if got[v])
        link = f'<a href="#{escape(s.anchor)}">{escape(s.name)}</a>'
        rows.append([link, s.source, "yes" if s.ran else "no", str(s.runs), claims])
    ran = sum(s.ran for s in report.sections)
    total = ", ".join(f"{counts[v]} {badge(v)}" for v in VERDICTS)
    head = f"<p>{len(report.sections)} paper experiments, {ran} with results. Claims: {total}.</p>"
    return head + html_table(["experiment", "source", "ran", "runs", "claims"], rows, raw={0})


def missing_html(report: Report) -> str:
    missing = report.missing()
    if not missing:
        return "<p>Every paper experiment has results at this scale.</p>"
    items = "".join(f"<li>{escape(s.name)} ({escape(s.source)}): {badge('not run')} "
                    f"<code>{escape(s.command)}</code></li>" for s in missing)  # fmt: skip
    return f"<ul>{items}</ul>"


def report_html(report: Report) -> str:
    """The whole report as one HTML document."""
    title = f"Reproduction report — scale {report.scale}"
    papers = report.papers()
    nav = "".join(f'<li><a href="#paper-{escape(p)}">{escape(paper_title(p))}</a></li>'
                  for p in papers)  # fmt: skip
    body = [
        f"<h1>{escape(title)}</h1>",
        f"<p>From the stored results under <code>{escape(report.outputs)}/"
        f"{escape(report.scale)}/</code> and the figures of <code>make figures</code>; nothing "
        "is recomputed. Verdicts compare directions with the margins of "
        "<code>xai_bench/results/claims.py</code>.</p>",
        f'<nav id="contents"><ul>{nav}</ul></nav>',
        f'<section id="overview"><h2>Overview</h2>{overview_html(report)}</section>',
        f'<section id="not-run"><h2>Not run</h2>{missing_html(report)}</section>',
    ]
    for paper, sections in papers.items():
        inner = "".join(section_html(s) for s in sections)
        body.append(f'<section class="paper" id="paper-{escape(paper)}">'
                    f"<h2>{escape(paper_title(paper))}</h2>{inner}</section>")  # fmt: skip
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
