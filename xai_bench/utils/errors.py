"""Errors caused by what the user asked for (a config value, a dataset that does not fit)."""

from __future__ import annotations


class UserInputError(ValueError):
    """A run's inputs do not fit: the CLI reports it in one line, without a traceback."""
