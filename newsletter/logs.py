"""Structured logs: one line per event on stderr, plain text or JSON (for a log shipper).

Every process sets its logging up here (the CLI's commands, ``newsletter serve``,
``newsletter run``), below the web layer, so a command that only delivers or plans
does not load the web app to log. Signed link tokens are redacted from every record
(``newsletter.redact``).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from newsletter.redact import install_redaction

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the
    ``extra=`` fields of the call, and the traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                event[key] = value
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str, ensure_ascii=False)


def configure_logging(*, json_lines: bool = False, level: int = logging.INFO) -> None:
    """Log to stderr, one line per event: plain text, or JSON (``json_lines``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    install_redaction(root)
