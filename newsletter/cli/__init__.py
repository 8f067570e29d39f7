"""The ``newsletter`` command line (Typer): the edge where settings are built and errors
shown. ``main`` is the console script; exit statuses are in ``exitcodes.ExitCode``."""

from __future__ import annotations

import newsletter.cli.commands  # noqa: F401  (registers every command on ``app``)
from newsletter.cli.app import app, command, main
from newsletter.cli.exitcodes import ExitCode

__all__ = ["ExitCode", "app", "command", "main"]
