"""The demo's run-level error: something wrong with the whole run rather than with one input."""

from __future__ import annotations


class DemoError(RuntimeError):
    """A problem with the whole run (mode, model, output folder, options); ``run_demo.py`` exits with status 2."""


class InputError(ValueError):
    """The input as a whole cannot be used (missing path, empty folder, unreadable manifest)."""
