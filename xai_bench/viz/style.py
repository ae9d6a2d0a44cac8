"""One look for every figure: method display names, a fixed colour per method, map colours.

Figures receive method *labels* (the ``method`` column of results). A label that the run made
from a method config (``gradcampp``, or ``gradcampp(layer=B2)`` for an override) is shown with
the config's display name (``Grad-CAM++``, ``Grad-CAM++(layer=B2)``); a label the user gave
(``GradCAM++ B2``) is shown as given. Colours follow the method config, so Grad-CAM is the same
colour in every figure; two variants of one config in one figure get distinct colours.

Saliency maps are drawn by their sign: a map with negative values is *signed* and drawn with a
diverging colour map on symmetric limits ``(-m, m)`` (zero is white in every panel); other maps
are drawn with a sequential colour map from 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

# Display name per method config (xai_bench/configs/method/*.yaml) and per pseudo-method of the
# benchmarks (the pointing game's centre baseline, the efficiency floors).
DISPLAY_NAMES: dict[str, str] = {
    "gradient": "Gradient",
    "input_x_gradient": "Input \u00d7 Gradient",
    "integrated_gradients": "Integrated Gradients",
    "integrated_gradients_black": "Integrated Gradients (black)",
    "integrated_gradients_blur": "Integrated Gradients (blur)",
    "smoothgrad": "SmoothGrad",
    "vargrad": "VarGrad",
    "guided_backprop": "Guided Backprop",
    "deconvnet": "Deconvnet",
    "rectgrad": "RectGrad",
    "rectgrad_mod": "RectGrad_Mod",
    "lrp_0": "LRP-0",
    "lrp_gamma": "LRP-\u03b3",
    "lrp_gamma_inf": "LRP-\u03b3=\u221e",
    "pattern_net": "PatternNet",
    "pattern_attribution": "PatternAttribution",
    "gradcam": "Grad-CAM",
    "gradcampp": "Grad-CAM++",
    "gradcam_pos": "GradCAM_Pos",
    "guided_gradcam": "Guided Grad-CAM",
    "gradmid": "GradMid",
    "cumulative_gradcam": "Cumulative Grad-CAM",
    "cumulative_gradmid": "Cumulative GradMid",
    "fullgrad": "FullGrad",
    "scorecam": "Score-CAM",
    "groupcam": "Group-CAM",
    "groupcam_finetune": "Group-CAM (fine-tuning)",
    "oppsd_noble": "OPPSD-Noble",
    "oppsd_frobenius": "OPPSD-Frobenius",
    "oppsd_min_eigenvalue": "OPPSD-MinEig",
    "oppsd_corner_only": "OPPSD (corner only)",
    "oppsd_patch_only": "OPPSD (patch only)",
    "prunegrad": "PruneGrad",
    "prunegrad_fixed": "PruneGrad (p=70)",
    "prunepgd": "PrunePGD",
    "occlusion": "Occlusion",
    "rise": "RISE",
    "xrai": "XRAI",
    "random": "Random",
    "center": "Centre baseline",
    "forward": "Forward",
    "forward_backward": "Forward + backward",
}

# A fixed colour per method config: the most used methods take the tab10 colours, related
# methods share a hue family (CAMs blue/purple, OPPSD red, LRP green, ...); baselines are grey.
COLORS: dict[str, str] = {
    "gradient": "#1f77b4",
    "input_x_gradient": "#17becf",
    "integrated_gradients": "#9edae5",
    "integrated_gradients_black": "#6b6ecf",
    "integrated_gradients_blur": "#9c9ede",
    "smoothgrad": "#aec7e8",
    "vargrad": "#393b79",
    "guided_backprop": "#ff7f0e",
    "deconvnet": "#ffbb78",
    "rectgrad": "#bcbd22",
    "rectgrad_mod": "#dbdb8d",
    "lrp_0": "#2ca02c",
    "lrp_gamma": "#98df8a",
    "lrp_gamma_inf": "#637939",
    "pattern_net": "#8c6d31",
    "pattern_attribution": "#bd9e39",
    "gradcam": "#9467bd",
    "gradcampp": "#e377c2",
    "gradcam_pos": "#c5b0d5",
    "guided_gradcam": "#7b4173",
    "gradmid": "#a55194",
    "cumulative_gradcam": "#ce6dbd",
    "cumulative_gradmid": "#de9ed6",
    "fullgrad": "#8c564b",
    "scorecam": "#c49c94",
    "groupcam": "#f7b6d2",
    "groupcam_finetune": "#e7969c",
    "oppsd_noble": "#d62728",
    "oppsd_frobenius": "#ff9896",
    "oppsd_min_eigenvalue": "#ad494a",
    "oppsd_corner_only": "#843c39",
    "oppsd_patch_only": "#d6616b",
    "prunegrad": "#e7ba52",
    "prunegrad_fixed": "#e7cb94",
    "prunepgd": "#b5cf6b",
    "occlusion": "#cedb9c",
    "rise": "#5254a3",
    "xrai": "#8ca252",
    "random": "#7f7f7f",
    "center": "#000000",
    "forward": "#c7c7c7",
    "forward_backward": "#525252",
}
# Colours of labels whose config has no colour, or a second variant of one config in a figure.
SPARE_COLORS = (
    "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363", "#6baed6", "#fd8d3c", "#74c476",
    "#9e9ac8", "#a1d99b", "#fdae6b", "#bdbdbd",
)  # fmt: skip

SIGNED_CMAP = "RdBu_r"  # diverging: negative blue, zero white, positive red
UNSIGNED_CMAP = "inferno"  # sequential, black at 0
OVERLAY_CMAP = "jet"  # pytorch-grad-cam's show_cam_on_image colours for unsigned overlays

_CALL = re.compile(r"^([A-Za-z0-9_]+)\((.*)\)$")


def display_name(label: str, config: str | None = None) -> str:
    """The name shown for the method labelled ``label`` (of the method config ``config``).

    ``gradcampp`` gives ``Grad-CAM++``; ``gradcampp(layer=B2)`` gives ``Grad-CAM++(layer=B2)``;
    ``smoothgrad(lrp_0)`` gives ``SmoothGrad(LRP-0)``; a label chosen by the user (neither a
    config name nor ``config(...)``) is returned as it is.
    """
    label = str(label)
    name = config or label
    if label == name and name in DISPLAY_NAMES:
        return DISPLAY_NAMES[name]
    call = _CALL.match(label)
    if call and call.group(1) in DISPLAY_NAMES and (config is None or call.group(1) == config):
        inner = call.group(2)
        return f"{DISPLAY_NAMES[call.group(1)]}({DISPLAY_NAMES.get(inner, inner)})"
    return label


def _config_of(label: str, config: str | None) -> str | None:
    if config:
        return config
    call = _CALL.match(label)
    return call.group(1) if call else label


def method_colors(
    labels: Iterable[str], configs: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A colour per label, in order: the fixed colour of its method config (:data:`COLORS`;
    ``configs`` maps labels to configs, else the label is read as ``config`` or
    ``config(...)``); a spare colour where the config has none or another label of the figure
    already took it."""
    out: dict[str, str] = {}
    candidates = [*SPARE_COLORS, *COLORS.values()]
    for i, label in enumerate(dict.fromkeys(str(x) for x in labels)):
        config = _config_of(label, (configs or {}).get(label))
        color = COLORS.get(config or "")
        if color is None or color in out.values():
            free = [c for c in candidates if c not in out.values()]
            color = free[0] if free else candidates[i % len(candidates)]
        out[label] = color
    return out


def method_configs(rows: object) -> dict[str, str]:
    """``label -> method config`` of a results table (empty without a ``method_config``
    column; labels without a config are left out)."""
    columns = getattr(rows, "columns", ())
    if "method" not in columns or "method_config" not in columns:
        return {}
    pairs = zip(rows["method"], rows["method_config"])  # type: ignore[index]
    return {str(m): str(c) for m, c in pairs if isinstance(c, str) and c}


def display_names(labels: Sequence[str], configs: Mapping[str, str] | None = None) -> list[str]:
    """:func:`display_name` of each label."""
    return [display_name(str(x), (configs or {}).get(str(x))) for x in labels]


def is_signed(values: np.ndarray) -> bool:
    """A map with a negative (finite) value is signed."""
    finite = values[np.isfinite(values)]
    return bool(finite.size and finite.min() < 0)


def map_limits(values: np.ndarray) -> tuple[str, float, float]:
    """``(cmap, vmin, vmax)`` of maps drawn on one colour scale: the diverging map on
    ``(-m, m)`` (m = largest magnitude) for signed maps, else the sequential map on
    ``(0, max)``; m and max are 1 where every value is 0."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return UNSIGNED_CMAP, 0.0, 1.0
    if finite.min() < 0:
        m = float(np.abs(finite).max()) or 1.0
        return SIGNED_CMAP, -m, m
    top = float(finite.max()) or 1.0
    return UNSIGNED_CMAP, 0.0, top


def fixed_color(name: str) -> str | None:
    """The fixed colour of a name that is a method config (``gradcam``) or a default label of
    one (``gradcam(layer=x)``); ``None`` for any other name."""
    return COLORS.get(_config_of(str(name), None) or "")
