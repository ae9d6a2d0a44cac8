"""What the report shows, independent of its format: one :class:`Section` per paper experiment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

HOLDS = "holds"
FAILS = "does not hold"
NOT_RUN = "not run"
NOT_CHECKED = "not checked automatically"
VERDICTS = (HOLDS, FAILS, NOT_RUN, NOT_CHECKED)

#: the papers' folders under ``configs/experiment/``: short name and reference
PAPERS: dict[str, tuple[str, str]] = {
    "oppsd": ("OPPSD", "Kim, Cho, Chung: one-step pixel-level perturbation saliency detector"),
    "unrel": ("UNREL", "Kindermans et al.: the (un)reliability of saliency methods"),
    "prunegrad": ("PRUNE", "Khakzar et al.: input-specific network pruning (PruneGrad)"),
    "groupcam": ("GCAM", "Zhang, Rao, Yang: Group-CAM, group score-weighted visual explanations"),
    "posagg": ("POSAGG", "Khakzar et al.: positive aggregation and propagation of gradients"),
}


@dataclass(frozen=True)
class Comparison:
    """One number the paper reports beside ours (``ours`` is ``None`` where we have no row).

    ``factor`` is what ours were multiplied by to be in the paper's unit (100 for a percentage
    or "x 100" unit when our values are fractions), ``n`` how many of our mean rows matched and
    ``missing`` why none did."""

    method: str
    metric: str
    conditions: tuple[tuple[str, str], ...]
    paper: float
    ours: float | None
    unit: str = ""
    factor: float = 1.0
    n: int = 0
    missing: str = ""  # why ours is None

    @property
    def difference(self) -> float | None:
        """Ours minus the paper's (``None`` without ours)."""
        return None if self.ours is None else self.ours - self.paper

    @property
    def where(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.conditions)


@dataclass(frozen=True)
class ClaimCheck:
    """A claim of the paper and its verdict (one of :data:`VERDICTS`) with our numbers."""

    claim: str
    paper_value: str
    verdict: str
    ours: str
    where: str = ""


@dataclass(frozen=True)
class RunSetup:
    """What the runs of an experiment actually used (from their ``config.yaml``)."""

    setup: str
    model: str
    weights: str
    dataset: str
    images: str
    device: str
    runs: int = 1


@dataclass
class Section:
    """One paper experiment (``<paper>/<result>``) at one scale."""

    name: str
    scale: str
    command: str
    description: str = ""
    source: str = ""
    paper_scale: str = ""
    unit: str = ""
    note: str = ""
    gpu_hours: float | None = None
    runs: int = 0
    setups: list[RunSetup] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    headline: str = ""  # markdown tables of our headline numbers
    checks: list[ClaimCheck] = field(default_factory=list)
    figure: Path | None = None
    problem: str | None = None  # why the experiment file or its results could not be read

    @property
    def paper(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def result(self) -> str:
        return self.name.split("/", 1)[-1]

    @property
    def ran(self) -> bool:
        return self.runs > 0

    @property
    def anchor(self) -> str:
        """The html id of the section (``exp-oppsd-fig2a_sanity``)."""
        return "exp-" + self.name.replace("/", "-")


@dataclass
class Report:
    """Every paper experiment at one scale."""

    scale: str
    outputs: str  # the outputs folder as given (shown, not opened by the renderers)
    sections: list[Section] = field(default_factory=list)

    def papers(self) -> dict[str, list[Section]]:
        """The sections per paper folder, known papers first in :data:`PAPERS` order."""
        order = [*PAPERS, *sorted({s.paper for s in self.sections} - set(PAPERS))]
        out = {p: [s for s in self.sections if s.paper == p] for p in order}
        return {p: sections for p, sections in out.items() if sections}

    def counts(self) -> dict[str, int]:
        """How many claims got each verdict."""
        got = [c.verdict for s in self.sections for c in s.checks]
        return {v: got.count(v) for v in VERDICTS}

    def missing(self) -> list[Section]:
        return [s for s in self.sections if not s.ran]


def paper_title(paper: str) -> str:
    """``OPPSD — Kim, Cho, Chung: ...`` for a paper folder (the folder name if unknown)."""
    short, ref = PAPERS.get(paper, (paper, ""))
    return f"{short} — {ref}" if ref else short
