"""The claims table (xai_bench.results.claims): each rule says yes when our numbers go the
paper's way, no when they do not, and names what is missing otherwise."""

from __future__ import annotations

import pandas as pd
import pytest

from xai_bench.results.claims import CLAIMS, check_claims, claims_markdown, values


def frame(benchmark: str, metric: str, numbers: dict[str, float], model: str = "vgg16_small",
          **conditions: object) -> pd.DataFrame:  # fmt: skip
    rows = [{"experiment": "embedded", "benchmark": benchmark, "model": model,
             "dataset": "shapes_multi", "metric": metric, "method": m, "value": v, **conditions}
            for m, v in numbers.items()]  # fmt: skip
    return pd.DataFrame(rows)


def verdict(long: pd.DataFrame, text: str) -> list[str]:
    table = check_claims(long)
    return table[table["claim"].str.contains(text, regex=False)]["holds"].tolist()


def test_values_match_conditions_as_numbers_and_average_the_rest() -> None:
    long = pd.concat([
        frame("sanity_checks", "spearman_abs", {"gradient": 0.2, "guided_backprop": 0.9}, stage_index=1.0),  # noqa: E501
        frame("sanity_checks", "spearman_abs", {"gradient": 0.4, "guided_backprop": 0.7}, stage_index=2.0),  # noqa: E501
    ])  # fmt: skip
    assert values(long, "spearman_abs", stage_index=1) == {"gradient": 0.2, "guided_backprop": 0.9}
    assert values(long, "spearman_abs", ["gradient"]) == pytest.approx({"gradient": 0.3})
    assert values(long, "spearman_abs", stage_index=3) == {}
    assert values(long, "ssim") == {}


@pytest.mark.parametrize(
    ("gbp", "gradient", "expected"),
    [(0.99, 0.45, "yes"), (0.99, 0.85, "no"), (0.6, 0.2, "no")],
)
def test_cascading_randomisation_rules(gbp: float, gradient: float, expected: str) -> None:
    long = frame("sanity_checks", "spearman_abs",
                 {"gradient": gradient, "guided_backprop": gbp, "oppsd_noble": 0.5},
                 mode="cascading", stage_index=1)  # fmt: skip
    stays = verdict(long, "GBP stays similar")
    drops = verdict(long, "gradient and OPPSD drop sharply")
    assert stays == ["yes" if gbp >= 0.75 and gbp > max(gradient, 0.5) else "no"]
    assert drops == [expected] if gbp >= 0.75 else drops == ["no"]


def test_class_sensitivity_rules_follow_the_numbers() -> None:
    paper_like = {"gradcam": 0.03, "gradcampp": 0.37, "fullgrad": 0.48, "gradcam_pos": 0.69,
                  "guided_backprop": 0.99, "rectgrad": 0.99, "lrp_gamma_inf": 0.99,
                  "gradient": 0.44, "lrp_0": 0.59}  # fmt: skip
    long = frame("class_sensitivity", "hog_spearman", paper_like)
    for text in ("Grad-CAM ≈ 0", "clearly above Grad-CAM", "LRP-gamma=inf ≈ 1", "between"):
        assert verdict(long, text) == ["yes"], text
    # a class-sensitive guided backprop (as on the shallow ResNet-8) breaks two claims
    shallow = frame("class_sensitivity", "hog_spearman", {**paper_like, "guided_backprop": 0.33})
    assert verdict(shallow, "LRP-gamma=inf ≈ 1") == ["no"]
    assert verdict(shallow, "between") == ["no"]
    assert verdict(frame("class_sensitivity", "hog_spearman", {"gradcam": 0.4}), "≈ 0") == ["no"]


def test_per_block_rule_compares_b1_with_the_last_layer() -> None:
    rising = {"gradcampp": 0.23, "gradcampp_B4": 0.23, "gradcampp_B3": 0.44,
              "gradcampp_B2": 0.58, "gradcampp_B1": 0.65}  # fmt: skip
    assert verdict(frame("class_sensitivity", "hog_spearman", rising), "GradCAM++ per block") == [
        "yes"
    ]
    flat = {k: 0.5 for k in rising}
    assert verdict(frame("class_sensitivity", "hog_spearman", flat), "GradCAM++ per block") == [
        "no"
    ]
    missing = check_claims(frame("class_sensitivity", "hog_spearman", {"gradcampp": 0.2}))
    row = missing[missing["claim"].str.contains("GradCAM++ per block", regex=False)].iloc[0]
    assert row["holds"] == "not run" and "gradcampp_B1" in row["ours"]


def test_pointing_rules_read_both_games() -> None:
    original = frame("pointing_game", "accuracy", {"gradcam": 0.80, "gradient": 0.70,
                     "gradcam_pos": 0.60, "guided_backprop": 0.51, "rectgrad": 0.51,
                     "lrp_gamma_inf": 0.51})  # fmt: skip
    restricted = frame("pointing_game_restricted", "accuracy", {"gradcam": 0.42,
                       "gradient": 0.47, "gradcam_pos": 0.58, "guided_backprop": 0.50,
                       "rectgrad": 0.50, "lrp_gamma_inf": 0.50})  # fmt: skip
    long = pd.concat([original, restricted])
    assert verdict(long, "restricted clearly below original") == ["yes"]
    assert verdict(long, "restricted ≈ original") == ["yes"]
    equal = restricted.assign(value=original["value"].to_numpy())
    assert verdict(pd.concat([original, equal]), "restricted clearly below original") == ["no"]
    only_original = check_claims(original)
    row = only_original[only_original["claim"].str.contains("clearly below", regex=False)].iloc[0]
    assert row["holds"] == "not run"


def test_faithfulness_rules() -> None:
    lerf = frame("pixel_perturbation", "auc", {"gradient": 0.19, "input_x_gradient": 0.16,
                 "gradcam": 0.015, "oppsd_noble": 0.013, "prunegrad": 0.01, "random": 0.5},
                 model="resnet8")  # fmt: skip
    assert verdict(lerf, "OPPSD among the best") == ["yes"]
    assert verdict(lerf, "lowest LeRF") == ["yes"]
    worse = lerf.assign(value=lerf["value"].where(lerf["method"] != "prunegrad", 0.2))
    assert verdict(worse, "lowest LeRF") == ["no"]
    roar = frame("roar", "roar_auc", {"oppsd_noble": 0.31, "gradcam": 0.39, "gradient": 0.44,
                                      "random": 0.5}, model="resnet8")  # fmt: skip
    assert verdict(roar, "every method below random") == ["yes"]
    flipped = roar.assign(value=[0.44, 0.39, 0.31, 0.5])
    assert verdict(flipped, "every method below random") == ["no"]
    deletion = frame("deletion_insertion", "overall", {"groupcam": 0.54, "gradcam": 0.51,
                                                      "scorecam": 0.53})  # fmt: skip
    assert verdict(deletion, "Group-CAM at least as good") == ["yes"]
    speed = frame("efficiency", "seconds_per_image", {"groupcam": 0.09, "scorecam": 2.46})
    assert verdict(speed, "1/10 of Score-CAM") == ["yes"]
    slow = frame("efficiency", "seconds_per_image", {"groupcam": 0.5, "scorecam": 2.46})
    assert verdict(slow, "1/10 of Score-CAM") == ["no"]


def test_prune_rules_read_prunes_own_sanity_metrics_and_its_roar_methods() -> None:
    roar = frame("roar", "roar_auc", {"prunegrad": 0.24, "gradcam": 0.20, "prunepgd": 0.25,
                                      "gradient": 0.27, "integrated_gradients": 0.40},
                 model="resnet8")  # fmt: skip
    assert verdict(roar, "PrunePGD steepest") == ["yes"]
    ig_steep = roar.assign(value=[0.24, 0.20, 0.25, 0.27, 0.10])
    assert verdict(ig_steep, "PrunePGD steepest") == ["no"]
    embedded = frame("roar", "roar_auc", {"prunegrad": 0.238, "gradcam": 0.198, "gradient": 0.27},
                     model="resnet8")  # fmt: skip
    assert verdict(embedded, "PrunePGD steepest") == ["yes"]  # the methods that ran
    stages = dict(stage_index=1, mode="cascading")
    sanity = pd.concat([
        frame("sanity_checks", f"prune_{k}", {"prunegrad": 0.1, "gradcam": 0.2, "gradient": v},
              model="resnet8", **stages)
        for k, v in (("spearman_abs", 0.3), ("spearman_signed", 0.3), ("ssim", 0.05))
    ])  # fmt: skip
    assert verdict(sanity, "PruneGrad: lowest Spearman") == ["yes"]  # SSIM 2nd of 3
    high_ssim = sanity.assign(
        value=sanity["value"].where(
            (sanity["metric"] != "prune_ssim") | (sanity["method"] != "prunegrad"), 0.9
        )
    )
    assert verdict(high_ssim, "PruneGrad: lowest Spearman") == ["no"]


def test_every_claim_has_a_row_and_the_markdown_escapes_pipes() -> None:
    table = check_claims(pd.DataFrame())
    assert len(table) == len(CLAIMS)
    assert set(table["holds"]) == {"not run"}
    assert all("not run (" in text for text in table["ours"])
    lerf = frame(
        "pixel_perturbation", "auc", {"gradient": 0.2, "gradcam": 0.1, "oppsd_noble": 0.05}
    )
    text = claims_markdown(check_claims(lerf))
    assert text.count("\n") == len(check_claims(lerf)) + 1
    assert "\\|" in text  # the |Δy|/|y| of the pixel-perturbation row is escaped


def test_a_claim_is_judged_per_model() -> None:
    deep = frame("class_sensitivity", "hog_spearman", {"guided_backprop": 0.94, "rectgrad": 0.79,
                 "lrp_gamma_inf": 1.0})  # fmt: skip
    shallow = frame("class_sensitivity", "hog_spearman", {"guided_backprop": 0.33,
                    "rectgrad": 0.29, "lrp_gamma_inf": 0.35}, model="resnet8")  # fmt: skip
    table = check_claims(pd.concat([deep, shallow]))
    rows = table[table["claim"].str.contains("LRP-gamma=inf ≈ 1", regex=False)]
    assert dict(zip(rows["model"], rows["holds"], strict=True)) == {
        "vgg16_small": "yes", "resnet8": "no"}  # fmt: skip
