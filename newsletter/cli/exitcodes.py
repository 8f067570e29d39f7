"""The exit statuses of ``newsletter``: one place, so scripts and docs agree."""

from __future__ import annotations

from enum import IntEnum

from newsletter.errors import ConfigError, DatabaseUnavailable, NewsletterError


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # the work itself failed: relay unreachable, edition not planned, ...
    USAGE = 2  # bad arguments or options (click's own status)
    CONFIG = 3  # a setting, secret, config file or source definition is invalid
    DATABASE = 4  # the database does not connect or is not migrated to the newest schema


def exit_code_for(error: NewsletterError) -> ExitCode:
    """The status a domain error ends the command with."""
    if isinstance(error, ConfigError):
        return ExitCode.CONFIG
    if isinstance(error, DatabaseUnavailable):
        return ExitCode.DATABASE
    return ExitCode.FAILURE


EPILOG = """Exit status:
  0  done
  1  the work failed (e.g. the SMTP relay cannot be reached: run it again)
  2  usage error (bad arguments or options)
  3  configuration error (a setting, the secret key, a source definition)
  4  database unreachable or not migrated (run: newsletter db upgrade)"""
