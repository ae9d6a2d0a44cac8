"""Lightning's banners out of the command line's output, unless ``verbose=true``.

Every training prints "GPU available", "TPU available", a "💡 Tip" advertising a logging
service, the CUDA devices of each rank, "`weights_only` was not set" at every checkpoint, a
``_pytree`` deprecation warning and "Loading `train_dataloader` to estimate number of stepping
batches", and its progress bar shows the logger's version (``v_num``). :func:`quiet_lightning`
raises the levels of the few loggers that print them (Lightning's INFO messages: also e.g.
"`Trainer.fit` stopped" and "Restoring states") and ignores the specific warnings; every
warning and every message of another logger still shows. It changes process-wide state
(logging levels, warning filters), as the command line does once per run.

This module imports nothing heavy at module level (no torch, no Lightning).
"""

from __future__ import annotations

import logging
import re
import warnings

#: loggers whose INFO messages are banners: rank_zero_info (GPU/TPU available, tips, "Loading
#: `train_dataloader`"), the CUDA devices of each rank, "`weights_only` was not set"
BANNER_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "pytorch_lightning.accelerators.cuda",
    "pytorch_lightning.trainer.connectors.checkpoint_connector",
)
#: (message regex, category) of the warnings that say nothing about the run
NOISE_WARNINGS = ((r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),)

_state = {"quiet": False}


def quiet_lightning(quiet: bool = True) -> None:
    """Hide (``quiet``) or show again Lightning's banners and noise warnings."""
    _state["quiet"] = bool(quiet)
    level = logging.WARNING if quiet else logging.NOTSET  # NOTSET: the parent's (INFO)
    for name in BANNER_LOGGERS:
        logging.getLogger(name).setLevel(level)
    for message, category in NOISE_WARNINGS:
        if quiet:
            warnings.filterwarnings("ignore", message=message, category=category)
        else:
            _remove_filter(message, category)


def lightning_is_quiet() -> bool:
    """Whether :func:`quiet_lightning` hides the banners (then progress bars drop ``v_num``)."""
    return _state["quiet"]


def _remove_filter(message: str, category: type[Warning]) -> None:
    pattern = re.compile(message, re.I)
    for entry in list(warnings.filters):
        action, regex, cat, _module, _lineno = entry
        if action == "ignore" and regex == pattern and cat is category:
            warnings.filters.remove(entry)  # "ignore" never marks a warning as shown
