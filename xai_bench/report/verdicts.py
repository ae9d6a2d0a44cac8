"""A verdict per claim of a paper experiment: the rules of :mod:`xai_bench.results.claims` run
on the experiment's own results, and the paper's qualitative ``reported.claims`` as "not checked
automatically".

A :class:`~xai_bench.results.claims.Claim` belongs to the experiments in its ``experiments``;
an entry ``a+b`` names experiments whose results are checked together (e.g. two tables that
each hold half of the methods a rule compares), and the verdict is shown under each of them. The
rules know methods by their config names (``guided_backprop``, ``gradcampp_B4``); paper
experiments label them as the paper does (``GuidedBackProp``), so :func:`claim_keys` renames each
run's labels first.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import pandas as pd

from xai_bench.report.model import FAILS, HOLDS, NOT_CHECKED, NOT_RUN, ClaimCheck
from xai_bench.results.claims import CLAIMS, NAMES, Claim, check_claims

LongOf = Callable[[str], pd.DataFrame]  # experiment name -> its long summary (claim keys)
_HOLDS = {"yes": HOLDS, "no": FAILS}


def groups(claim: Claim) -> list[list[str]]:
    """The groups of experiments ``claim`` is checked on (each group together)."""
    return [[n.strip() for n in entry.split("+")] for entry in claim.experiments]


def claims_for(name: str, claims: tuple[Claim, ...] = CLAIMS) -> list[tuple[Claim, list[str]]]:
    """The claims experiment ``name`` checks, each with the experiments checked together."""
    return [(c, g) for c in claims for g in groups(c) if name in g]


def claim_keys(config: Mapping[str, Any]) -> dict[str, str]:
    """Label -> the claims' name of each method of a run (``resolved_methods`` of its
    ``config.yaml``): a label the rules know stays; the only variant of a method is its config
    name; of several variants of one method, the one without parameters is the name, one whose
    only parameter is the layer of a block ``<name>_B<k>`` (the CAM layer: the name), any other
    keeps its label, as does one whose name is already taken."""
    model = config.get("model") or {}
    blocks = {str(v): str(k) for k, v in (model.get("block_layers") or {}).items()}
    methods = [m for m in config.get("resolved_methods") or [] if isinstance(m, Mapping)]
    methods.sort(key=lambda m: bool(m.get("params")))  # plain variants claim their name first
    variants = Counter(str(m.get("name")) for m in methods)
    out: dict[str, str] = {}
    for m in methods:
        label, name, params = str(m.get("label")), str(m.get("name")), m.get("params") or {}
        layer = str(params.get("layer")) if set(params) == {"layer"} else None
        key = label  # a label the rules know (``gradcam``, ``gradcampp_B4``) or no better one
        if label in NAMES or re.search(r"_B\d$", label):
            pass
        elif variants[name] == 1 or not params or layer == str(model.get("cam_layer")):
            key = name
        elif layer in blocks:
            key = f"{name}_{blocks[layer]}"
        out[label] = key if key not in out.values() else label
    return out


def _verdict(row: Mapping[str, Any], claim: Claim) -> ClaimCheck:
    ours = str(row["ours"])
    if ours.startswith("not run ("):
        ours = f"no {claim.benchmark} results in this experiment's runs"
    where = f"{row['model']}, {row['dataset']}" if row["model"] else ""
    verdict = _HOLDS.get(str(row["holds"]), NOT_RUN)
    return ClaimCheck(claim.claim, claim.paper_value, verdict, ours, where)


def check(name: str, spec: Mapping[str, Any], long_of: LongOf, command: str) -> list[ClaimCheck]:
    """The verdicts of experiment ``name``: its claims' rules on its results (with those of the
    experiments checked together with it), then the qualitative claims of ``reported.claims``."""
    out = []
    for claim, group in claims_for(name):
        own = long_of(name)
        if own.empty:
            out.append(ClaimCheck(claim.claim, claim.paper_value, NOT_RUN, f"not run: {command}"))
            continue
        others = [o for o in (long_of(n) for n in group if n != name) if not o.empty]
        long = pd.concat([own, *others], ignore_index=True) if others else own
        rows = [_verdict(r, claim) for r in check_claims(long, [claim]).to_dict("records")]
        absent = [n for n in group if n != name and long_of(n).empty]
        if absent:  # a rule that needs them says "not run"; name them
            hint = f" (also run experiment {', '.join(absent)})"
            rows = [replace(r, ours=r.ours + hint) if r.verdict == NOT_RUN else r for r in rows]
        out += rows
    for text in (spec.get("reported") or {}).get("claims") or []:
        out.append(ClaimCheck(str(text), "", NOT_CHECKED, ""))
    return out
