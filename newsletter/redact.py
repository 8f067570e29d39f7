"""Signed link tokens kept out of every log.

A token in a path (``/manage/<token>``) is a password for one reader's preferences:
whoever reads the access log could change or delete their subscription. Log lines keep
the route and drop the token, so a request stays traceable without granting anything.
"""

from __future__ import annotations

import logging
import re

# Routes whose next path segment is a signed token (pages and /api/v1 alike).
_TOKEN_SEGMENT = re.compile(
    r"(/(?:confirm|manage|unsubscribe|feedback|view|address|subscribers)/)[A-Za-z0-9_.=-]+"
)
REDACTED = "[token]"


def redact_tokens(text: str) -> str:
    """``text`` with every signed token of a link path replaced by ``[token]``."""
    return _TOKEN_SEGMENT.sub(rf"\g<1>{REDACTED}", text)


class RedactTokens(logging.Filter):
    """A logging filter that takes tokens out of a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Formatters such as uvicorn's access log unpack ``record.args``: redact the
        # message and each argument in place and keep the tuple, when that is enough.
        # A token may also sit in the arguments of a "/manage/%s" message; then (and
        # for any other shape) the formatted message replaces both.
        try:
            message = record.getMessage()
        except Exception:  # a broken record: logging reports it as it would have
            return True
        if redact_tokens(message) == message:
            return True
        if isinstance(record.args, tuple) and isinstance(record.msg, str):
            msg = redact_tokens(record.msg)
            args = tuple(redact_tokens(a) if isinstance(a, str) else a for a in record.args)
            try:
                formatted = msg % args if args else msg
            except (TypeError, ValueError):
                formatted = None
            if formatted is not None and redact_tokens(formatted) == formatted:
                record.msg, record.args = msg, args
                return True
        record.msg, record.args = redact_tokens(message), None
        return True


def install_redaction(*loggers: logging.Logger) -> None:
    """Redact tokens in everything the handlers of ``loggers`` (default: root) write."""
    for logger in loggers or (logging.getLogger(),):
        for handler in logger.handlers:
            if not any(isinstance(f, RedactTokens) for f in handler.filters):
                handler.addFilter(RedactTokens())
