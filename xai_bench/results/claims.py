"""The five papers' claims, checked against the numbers of an outputs folder.

Each :class:`Claim` names the paper, what it reports (with the paper's numbers), the benchmark
rows that measure it, and a rule that turns our means (``summary.csv``, see
:mod:`xai_bench.results.summary`) into a :class:`Verdict`: our numbers and whether the paper's
*direction* holds. A claim whose rows are missing says which command produces them. Directions,
not values, are compared: the embedded models are small, so the papers' numbers are not
expected; who wins, what stays near 1 and what drops is. `make run` prints the table
(``claims.md``), and the README's effect table is its copy.

Papers: OPPSD (Kim et al.), UNREL (Kindermans et al., input invariance), PRUNE (Khakzar et al.,
PruneGrad), GCAM (Zhang et al., Group-CAM), POSAGG (Khakzar et al., positive aggregation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

# Margins of the rules: "about 0", "about 1", "clearly higher", "about equal", "drops".
NEAR_ZERO = 0.15
NEAR_ONE = 0.75
CLEARLY = 0.1
ABOUT_EQUAL = 0.05


@dataclass(frozen=True)
class Verdict:
    """Our numbers as text, and whether the paper's direction holds (``None``: not measured)."""

    ours: str
    holds: bool | None


Rule = Callable[[pd.DataFrame], Verdict]


@dataclass(frozen=True)
class Claim:
    """One effect a paper reports, and how to check it on ``benchmark``'s rows.

    ``experiments`` names the paper experiments (``<paper>/<result>``) whose results `make
    report` checks it on, ``a+b`` for two checked together (:mod:`xai_bench.report.verdicts`);
    empty: checked on the embedded runs only."""

    paper: str
    topic: str
    claim: str
    paper_value: str
    benchmark: str
    rule: Rule
    command: str
    experiments: tuple[str, ...] = ()


def values(
    rows: pd.DataFrame, metric: str, methods: Iterable[str] | None = None, **conditions: object
) -> dict[str, float]:
    """Mean of ``metric`` per method label among ``rows`` where every condition equals its
    value (compared as text, so ``stage_index=1`` matches ``1.0``); ``methods`` picks labels."""
    if rows.empty or not {"metric", "method", "value"} <= set(rows.columns):
        return {}
    sel = rows[rows["metric"] == metric]
    for column, want in conditions.items():
        if column not in sel:
            return {}
        sel = sel[[_same(v, want) for v in sel[column]]]
    means = sel.groupby("method", sort=False)["value"].mean()
    if methods is None:
        return {str(k): float(v) for k, v in means.items()}
    return {m: float(means[m]) for m in methods if m in means.index}


def _same(value: object, want: object) -> bool:
    if isinstance(want, int | float) and not isinstance(want, bool):
        try:
            return float(value) == float(want)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
    return str(value) == str(want)


def _fmt(numbers: Mapping[str, float], digits: int = 2) -> str:
    return ", ".join(f"{NAMES.get(k, k)} {v:.{digits}f}" for k, v in numbers.items())


def _missing(needed: Iterable[str], got: Mapping[str, float]) -> Verdict | None:
    lacking = [m for m in needed if m not in got]
    return Verdict(f"not measured: {', '.join(lacking)}", None) if lacking else None


NAMES = {
    "gradient": "gradient",
    "guided_backprop": "GBP",
    "rectgrad": "RectGrad",
    "lrp_0": "LRP-0",
    "lrp_gamma_inf": "LRP-gamma=inf",
    "gradcam": "Grad-CAM",
    "gradcampp": "GradCAM++",
    "gradcam_pos": "GradCAM_Pos",
    "fullgrad": "FullGrad",
    "oppsd_noble": "OPPSD",
    "prunegrad": "PruneGrad",
    "prunegrad_fixed": "PruneGrad",
    "input_x_gradient": "grad x input",
    "pattern_net": "PatternNet",
    "pattern_attribution": "PatternAttribution",
    "integrated_gradients": "IG-zero",
    "integrated_gradients_black": "IG-black",
    "groupcam": "Group-CAM",
    "scorecam": "Score-CAM",
    "random": "random",
    "plain": "plain",
    "cumulative_gradcam": "CumulativeGradCAM",
}


# --- input invariance (UNREL) -------------------------------------------------------------


def _invariant(methods: tuple[str, ...], want: float, shift: str = "constant") -> Rule:
    def rule(rows: pd.DataFrame) -> Verdict:
        got = values(rows, "invariant", methods, shift=shift)
        if (miss := _missing(methods, got)) is not None:
            return miss
        text = ", ".join(f"{NAMES[m]} {'yes' if v == 1 else 'no'}" for m, v in got.items())
        return Verdict(f"invariant: {text}", all(v == want for v in got.values()))

    return rule


def _ig_black(rows: pd.DataFrame) -> Verdict:
    const = values(rows, "invariant", ["integrated_gradients_black"], shift="constant")
    check = values(rows, "invariant", ["integrated_gradients_black"], shift="checkerboard")
    if not const or not check:
        return Verdict("not measured: integrated_gradients_black", None)
    a, b = const["integrated_gradients_black"], check["integrated_gradients_black"]
    text = f"constant {'yes' if a == 1 else 'no'}, checkerboard {'yes' if b == 1 else 'no'}"
    return Verdict(text, a == 1 and b == 0)


# --- cascading randomisation (OPPSD, PRUNE, Adebayo) ----------------------------------------


def _after_output(rows: pd.DataFrame, methods: Iterable[str]) -> dict[str, float]:
    return values(rows, "spearman_abs", methods, mode="cascading", stage_index=1)


def _gbp_stays(rows: pd.DataFrame) -> Verdict:
    got = _after_output(rows, ["guided_backprop", "gradient", "oppsd_noble"])
    if (miss := _missing(["guided_backprop", "gradient", "oppsd_noble"], got)) is not None:
        return miss
    gbp = got["guided_backprop"]
    holds = gbp >= NEAR_ONE and gbp > max(got["gradient"], got["oppsd_noble"])
    return Verdict(f"Spearman-abs after the output layer: {_fmt(got)}", holds)


def _gradient_drops(rows: pd.DataFrame) -> Verdict:
    got = _after_output(rows, ["gradient", "oppsd_noble", "guided_backprop"])
    if (miss := _missing(["gradient", "oppsd_noble", "guided_backprop"], got)) is not None:
        return miss
    drops = [got[m] <= got["guided_backprop"] - 2 * CLEARLY for m in ("gradient", "oppsd_noble")]
    return Verdict(f"Spearman-abs after the output layer: {_fmt(got)}", all(drops))


def _prunegrad_lowest(rows: pd.DataFrame) -> Verdict:
    randomised = rows[[_stage(v) for v in rows.get("stage_index", pd.Series(dtype=float))]]
    if "mode" in randomised:
        randomised = randomised[randomised["mode"] == "cascading"]
    abs_, signed, ssim = (  # PRUNE's normalisation (``prune_*``) where the run measured it
        _one_prune(values(randomised, f"prune_{k}") or values(randomised, k))
        for k in ("spearman_abs", "spearman_signed", "ssim")
    )
    prune = next((m for m in PRUNEGRAD if m in abs_), None)
    if prune is None or len(abs_) < 3:
        return Verdict("not measured: prunegrad beside other methods", None)
    rank = sorted(ssim, key=ssim.get).index(prune) + 1 if prune in ssim else 0
    holds = min(abs_, key=abs_.get) == prune and min(signed, key=signed.get) == prune
    text = (
        f"mean over the randomised stages: Spearman-abs {_fmt(abs_)}; signed {_fmt(signed)}; "
        f"PruneGrad's SSIM rank {rank} of {len(ssim)}"
    )
    return Verdict(text, holds and 1 <= rank <= 2)


PRUNEGRAD = ("prunegrad", "prunegrad_fixed")  # calibrated (paper) or fixed percentile (its code)
# PRUNE §4's baselines: Grad-CAM, RectGrad, IG, guided backprop, gradient x input, gradient.
PRUNE_BASELINES = ("gradcam", "rectgrad", "integrated_gradients", "guided_backprop",
                   "input_x_gradient", "gradient")  # fmt: skip


def _one_prune(got: Mapping[str, float]) -> dict[str, float]:
    """PRUNE's baselines and one PruneGrad (the calibrated one if both ran)."""
    keep = next((m for m in PRUNEGRAD if m in got), None)
    return {m: v for m, v in got.items() if m in PRUNE_BASELINES or m == keep}


def _stage(value: object) -> bool:
    try:
        return float(value) >= 1  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


# --- class sensitivity (POSAGG Tables 2 and 4) -----------------------------------------------


def _hog(rows: pd.DataFrame, methods: Iterable[str]) -> dict[str, float]:
    return values(rows, "hog_spearman", methods)


def _gradcam_zero(rows: pd.DataFrame) -> Verdict:
    got = _hog(rows, ["gradcam"])
    if not got:
        return Verdict("not measured: gradcam", None)
    return Verdict(_fmt(got), abs(got["gradcam"]) <= NEAR_ZERO)


def _cam_higher(rows: pd.DataFrame) -> Verdict:
    methods = ["gradcam", "gradcampp", "fullgrad", "gradcam_pos"]
    got = _hog(rows, methods)
    if (miss := _missing(methods, got)) is not None:
        return miss
    holds = all(got[m] >= got["gradcam"] + CLEARLY for m in methods[1:])
    return Verdict(_fmt(got), holds)


def _blocks_rise(method: str) -> Rule:
    labels = [f"{method}_B{i}" for i in (4, 3, 2, 1)]

    def rule(rows: pd.DataFrame) -> Verdict:
        got = _hog(rows, [method, *labels])
        if (miss := _missing([method, *labels], got)) is not None:
            return miss
        text = ", ".join(
            f"{k.split('_')[-1] if k != method else 'B5'} {v:.2f}" for k, v in got.items()
        )
        return Verdict(text, got[labels[-1]] >= got[method] + CLEARLY)

    return rule


def _positive_near_one(rows: pd.DataFrame) -> Verdict:
    methods = ["guided_backprop", "rectgrad", "lrp_gamma_inf"]
    got = _hog(rows, methods)
    if (miss := _missing(methods, got)) is not None:
        return miss
    return Verdict(_fmt(got), all(v >= NEAR_ONE for v in got.values()))


def _in_between(rows: pd.DataFrame) -> Verdict:
    methods = ["gradcam", "gradient", "lrp_0", "guided_backprop"]
    got = _hog(rows, methods)
    if (miss := _missing(methods, got)) is not None:
        return miss
    low, high = got["gradcam"], got["guided_backprop"]
    return Verdict(_fmt(got), all(low < got[m] < high for m in ("gradient", "lrp_0")))


# --- pointing game (POSAGG Tables 1 and 3) ---------------------------------------------------


def _pointing_rows(rows: pd.DataFrame, benchmark: str) -> pd.DataFrame:
    """POSAGG's pointing rows of ``benchmark``: its multi-class subset (the EBP ``difficult``
    rows) where a run reported one, else all pairs; never the mean of the two subsets."""
    part = rows[rows["benchmark"] == benchmark]
    if "subset" not in part:
        return part
    subset = part["subset"].fillna("all").astype(str).replace("", "all")  # "": run without it
    return part[subset == ("difficult" if (subset == "difficult").any() else "all")]


def _gaps(rows: pd.DataFrame, methods: list[str]) -> tuple[dict[str, tuple[float, float]], str]:
    orig = values(_pointing_rows(rows, "pointing_game"), "accuracy", methods)
    restr = values(_pointing_rows(rows, "pointing_game_restricted"), "accuracy", methods)
    pairs = {m: (orig[m], restr[m]) for m in methods if m in orig and m in restr}
    text = ", ".join(f"{NAMES[m]} {a:.2f}/{b:.2f}" for m, (a, b) in pairs.items())
    return pairs, text


def _restricted_drops(rows: pd.DataFrame) -> Verdict:
    methods = ["gradcam", "gradient"]
    pairs, text = _gaps(rows, methods)
    if len(pairs) < len(methods):
        return Verdict("not measured: original and restricted pointing game", None)
    return Verdict(text, all(a - b >= CLEARLY for a, b in pairs.values()))


def _restricted_equal(rows: pd.DataFrame) -> Verdict:
    methods = ["gradcam_pos", "guided_backprop", "rectgrad", "lrp_gamma_inf"]
    pairs, text = _gaps(rows, methods)
    if len(pairs) < len(methods):
        return Verdict("not measured: original and restricted pointing game", None)
    return Verdict(text, all(abs(a - b) <= ABOUT_EQUAL for a, b in pairs.values()))


# --- faithfulness (OPPSD, PRUNE, GCAM, ROAR) -------------------------------------------------


def _lerf_auc(rows: pd.DataFrame) -> dict[str, float]:
    """Area under the LeRF curve per real method (no ``random``), one PruneGrad."""
    got = values(rows, "auc")
    keep = next((m for m in PRUNEGRAD if m in got), None)
    return {m: v for m, v in got.items() if m != "random" and (m not in PRUNEGRAD or m == keep)}


def _oppsd_among_best(rows: pd.DataFrame) -> Verdict:
    got = _lerf_auc(rows)
    if "oppsd_noble" not in got or len(got) < 3:
        return Verdict("not measured: oppsd_noble beside other methods", None)
    ranked = sorted(got, key=got.get)
    text = f"AUC of |Δy|/|y| (lower = better): {_fmt(dict((m, got[m]) for m in ranked), 3)}"
    best = min(3, max(1, len(ranked) // 2))  # the paper: third, behind FullGrad and VarGrad
    return Verdict(text, ranked.index("oppsd_noble") < best)


def _prunegrad_lerf(rows: pd.DataFrame) -> Verdict:
    got = _one_prune(_lerf_auc(rows))
    prune = next((m for m in PRUNEGRAD if m in got), None)
    if prune is None or len(got) < 3:
        return Verdict("not measured: prunegrad beside other methods", None)
    ranked = sorted(got, key=got.get)
    text = f"AUC (lower = better): {_fmt(dict((m, got[m]) for m in ranked), 3)}"
    return Verdict(text, ranked[0] == prune)


def _groupcam_deletion(rows: pd.DataFrame) -> Verdict:
    methods = ["groupcam", "gradcam", "scorecam"]
    got = values(rows, "overall", methods)
    if (miss := _missing(methods, got)) is not None:
        return miss
    holds = got["groupcam"] >= max(got["gradcam"], got["scorecam"])
    return Verdict(f"over-all (ins - del): {_fmt(got, 3)}", holds)


def _roar(rows: pd.DataFrame) -> Verdict:
    got = values(rows, "roar_auc")
    if "random" not in got or len(got) < 3:
        return Verdict("not measured: roar with random and other methods", None)
    keep = next((m for m in PRUNEGRAD if m in got), None)
    real = {m: v for m, v in got.items() if m != "random" and (m not in PRUNEGRAD or m == keep)}
    ranked = sorted(real, key=real.get)
    steep = [m for m in ("oppsd_noble", "gradcam", *PRUNEGRAD) if m in real]
    below = all(v < got["random"] for v in real.values())
    holds = below and set(ranked[: len(steep)]) == set(steep)
    curve = {m: got[m] for m in [*ranked, "random"]}
    text = f"mean test accuracy over the curve: {_fmt(curve, 3)}"
    return Verdict(text, holds)


def _prune_roar(rows: pd.DataFrame) -> Verdict:
    """PRUNE §4.5: Grad-CAM, PruneGrad and PrunePGD the three steepest ROAR curves (lowest
    mean accuracy), Integrated Gradients the flattest; checked on the methods that ran (the
    embedded run has PruneGrad, Grad-CAM and gradient only)."""
    got = values(rows, "roar_auc")
    got.pop("random", None)
    best = [m for m in ("gradcam", "prunegrad", "prunepgd") if m in got]
    if "prunegrad" not in best or len(best) < 2 or len(got) == len(best):
        return Verdict("not measured: PruneGrad and Grad-CAM beside other methods", None)
    ranked = sorted(got, key=got.get)
    text = f"mean test accuracy over the curve: {_fmt({m: got[m] for m in ranked}, 3)}"
    flattest = "integrated_gradients" not in got or ranked[-1] == "integrated_gradients"
    return Verdict(text, set(ranked[: len(best)]) == set(best) and flattest)


def _finetune(rows: pd.DataFrame) -> Verdict:
    got = values(rows, "test_acc", ["plain", "groupcam"])
    if (miss := _missing(["plain", "groupcam"], got)) is not None:
        return miss
    return Verdict(f"test accuracy: {_fmt(got, 4)}", got["groupcam"] > got["plain"])


def _efficiency(rows: pd.DataFrame) -> Verdict:
    got = values(rows, "seconds_per_image", ["groupcam", "scorecam"])
    if (miss := _missing(["groupcam", "scorecam"], got)) is not None:
        return miss
    ratio = got["groupcam"] / got["scorecam"]
    return Verdict(f"s/image: {_fmt(got, 3)} (ratio {ratio:.3f})", ratio <= 0.1)


RUN = "make run"
MULTI = "make run (experiment=embedded_multi)"
CLAIMS: tuple[Claim, ...] = (
    Claim(
        "UNREL",
        "input invariance",
        "gradient, GBP, PatternNet, PatternAttribution unchanged by the constant shift",
        "identical maps",
        "input_invariance",
        _invariant(("gradient", "guided_backprop", "pattern_net", "pattern_attribution"), 1),
        RUN,
        experiments=("unrel/fig2_gradient_signal+unrel/fig3_attribution",),
    ),
    Claim(
        "UNREL",
        "input invariance",
        "grad x input, IG with a zero baseline and LRP-0 change with the constant shift",
        "maps differ",
        "input_invariance",
        _invariant(("input_x_gradient", "integrated_gradients", "lrp_0"), 0),
        RUN,
        experiments=("unrel/fig3_attribution",),
    ),
    Claim(
        "UNREL",
        "input invariance",
        "IG with a black baseline survives the constant shift, not the checkerboard",
        "yes / no",
        "input_invariance",
        _ig_black,
        RUN,
        experiments=("unrel/fig3_attribution+unrel/fig5_checkerboard",),
    ),
    Claim(
        "OPPSD, Adebayo",
        "cascading randomisation",
        "GBP stays similar after the output layer is randomised",
        "GBP ≈ 1.0 until block 4",
        "sanity_checks",
        _gbp_stays,
        RUN,
        experiments=("oppsd/fig2a_sanity",),
    ),
    Claim(
        "OPPSD",
        "cascading randomisation",
        "gradient and OPPSD drop sharply after the output layer",
        "OPPSD ≈ 0 right after fc",
        "sanity_checks",
        _gradient_drops,
        RUN,
        experiments=("oppsd/fig2a_sanity",),
    ),
    Claim(
        "PRUNE",
        "cascading randomisation",
        "PruneGrad: lowest Spearman (abs, signed), 2nd-lowest SSIM of PRUNE's methods",
        "figures only",
        "sanity_checks",
        _prunegrad_lowest,
        RUN,
        experiments=("prunegrad/fig2_sanity",),
    ),
    Claim(
        "POSAGG",
        "class sensitivity",
        "Grad-CAM ≈ 0 (Spearman of HOG, top vs bottom class)",
        "0.03",
        "class_sensitivity",
        _gradcam_zero,
        MULTI,
        experiments=("posagg/table2_class_sensitivity",),
    ),
    Claim(
        "POSAGG",
        "class sensitivity",
        "GradCAM++, FullGrad and GradCAM_Pos clearly above Grad-CAM",
        "0.37, 0.48, 0.69 vs 0.03",
        "class_sensitivity",
        _cam_higher,
        MULTI,
        experiments=("posagg/table2_class_sensitivity",),
    ),
    Claim(
        "POSAGG",
        "class sensitivity",
        "GradCAM++ per block rises towards B1",
        "B4 0.23 → B1 0.65",
        "class_sensitivity",
        _blocks_rise("gradcampp"),
        MULTI,
        experiments=("posagg/table2_class_sensitivity",),
    ),
    Claim(
        "POSAGG",
        "class sensitivity",
        "GradCAM_Pos per block rises towards B1",
        "0.69 → B4 0.94 → B1 0.99",
        "class_sensitivity",
        _blocks_rise("gradcam_pos"),
        MULTI,
        experiments=("posagg/table2_class_sensitivity",),
    ),
    Claim(
        "POSAGG",
        "class sensitivity",
        "GBP, RectGrad and LRP-gamma=inf ≈ 1",
        "0.99, 0.99, 0.99",
        "class_sensitivity",
        _positive_near_one,
        MULTI,
        experiments=("posagg/table4_class_sensitivity",),
    ),
    Claim(
        "POSAGG",
        "class sensitivity",
        "gradient and LRP-0 between Grad-CAM and GBP",
        "0.44, 0.59",
        "class_sensitivity",
        _in_between,
        MULTI,
        experiments=("posagg/table2_class_sensitivity+posagg/table4_class_sensitivity",),
    ),
    Claim(
        "POSAGG",
        "pointing game",
        "Grad-CAM and gradient: restricted clearly below original",
        "74.1/48.9, 52.7/45.1",
        "pointing_game",
        _restricted_drops,
        MULTI,
        experiments=("posagg/table1_pointing+posagg/table3_pointing_propagation",),
    ),
    Claim(
        "POSAGG",
        "pointing game",
        "GradCAM_Pos, GBP, RectGrad, LRP-gamma=inf: restricted ≈ original",
        "60.4/58.1, 48.7/47.5, 51.2/50.0, 50.6/50.0",
        "pointing_game",
        _restricted_equal,
        MULTI,
        experiments=("posagg/table1_pointing+posagg/table3_pointing_propagation",),
    ),
    Claim(
        "OPPSD",
        "pixel perturbation",
        "OPPSD among the best when the least important pixels are removed",
        "behind FullGrad and VarGrad only (ResNet-50)",
        "pixel_perturbation",
        _oppsd_among_best,
        RUN,
        experiments=("oppsd/fig3_pixel_perturbation",),
    ),
    Claim(
        "PRUNE",
        "pixel perturbation",
        "PruneGrad has the lowest LeRF curve of PRUNE's methods on the ResNet-8",
        "lowest curve (CIFAR-10)",
        "pixel_perturbation",
        _prunegrad_lerf,
        RUN,
        experiments=("prunegrad/fig4a_lerf",),
    ),
    Claim(
        "GCAM",
        "deletion/insertion",
        "Group-CAM at least as good as Grad-CAM and Score-CAM",
        "53.62 vs 51.09, 53.28 (over-all x100)",
        "deletion_insertion",
        _groupcam_deletion,
        RUN,
        experiments=("groupcam/table1_deletion_insertion",),
    ),
    Claim(
        "OPPSD, PRUNE",
        "ROAR",
        "every method below random; OPPSD, Grad-CAM, PruneGrad steepest",
        "figures only",
        "roar",
        _roar,
        "make roar",
        experiments=("oppsd/fig4_roar",),
    ),
    Claim(
        "PRUNE",
        "ROAR",
        "Grad-CAM, PruneGrad and PrunePGD steepest; Integrated Gradients the flattest",
        "figures only (CIFAR-10 ResNet-8)",
        "roar",
        _prune_roar,
        RUN,
        experiments=("prunegrad/fig4b_roar",),
    ),
    Claim(
        "GCAM",
        "fine-tuning",
        "Group-CAM augmentation beats plain fine-tuning",
        "76.15 → 76.74 % (ResNet-50)",
        "groupcam_finetune",
        _finetune,
        "make finetune",
        experiments=("groupcam/fig7_finetune",),
    ),
    Claim(
        "GCAM",
        "efficiency",
        "Group-CAM ≤ 1/10 of Score-CAM's time (≥ 512 channels)",
        "0.09 vs 2.46 s/image",
        "efficiency",
        _efficiency,
        "xai-bench experiment=efficiency_cam",
        experiments=("groupcam/table3_runtime",),
    ),
)


def check_claims(long: pd.DataFrame, claims: Iterable[Claim] = CLAIMS) -> pd.DataFrame:
    """One row per claim and per (model, dataset) that measured it: paper, topic, claim, the
    paper's number, model, dataset, ours, holds (yes / no / not run). A claim nothing measured
    gets one row per (model, dataset) saying what is missing, or one naming the command."""
    out = []
    for claim in claims:
        rows = _rows(long, claim.benchmark)
        groups = (
            list(rows.groupby(["model", "dataset"], sort=False, dropna=False))
            if not rows.empty
            else []
        )
        if not groups:
            verdicts = [("", "", Verdict(f"not run ({claim.command})", None))]
        else:
            verdicts = [(str(m), str(d), claim.rule(g)) for (m, d), g in groups]
            if any(v.holds is not None for _, _, v in verdicts):  # drop models it does not apply to
                verdicts = [t for t in verdicts if t[2].holds is not None]
        for model, dataset, verdict in verdicts:
            holds = "not run" if verdict.holds is None else "yes" if verdict.holds else "no"
            out.append(
                {
                    "paper": claim.paper,
                    "topic": claim.topic,
                    "claim": claim.claim,
                    "paper_value": claim.paper_value,
                    "model": model,
                    "dataset": dataset,
                    "ours": verdict.ours,
                    "holds": holds,
                }
            )
    return pd.DataFrame(out, columns=COLUMNS)


COLUMNS = ["paper", "topic", "claim", "paper_value", "model", "dataset", "ours", "holds"]


def _rows(long: pd.DataFrame, benchmark: str) -> pd.DataFrame:
    if long.empty or not {"benchmark", "model", "dataset"} <= set(long.columns):
        return long.iloc[0:0]
    wanted = {benchmark, f"{benchmark}_restricted"}
    return long[long["benchmark"].isin(wanted)]


def claims_markdown(table: pd.DataFrame) -> str:
    """The claims table as markdown (what `make run` prints and the README copies)."""
    lines = [
        "| paper | effect | paper's number | model, data | ours | holds |",
        "|---|---|---|---|---|---|",
    ]
    for row in table.to_dict("records"):
        where = f"{row['model']}, {row['dataset']}" if row["model"] else ""
        cells = [
            row["paper"],
            f"{row['topic']}: {row['claim']}",
            row["paper_value"],
            where,
            row["ours"],
            row["holds"],
        ]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
