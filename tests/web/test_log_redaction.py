"""Signed link tokens never reach a log: they are passwords for one reader's account."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from newsletter.logs import configure_logging
from newsletter.redact import REDACTED, RedactTokens, redact_tokens
from newsletter.settings import Settings
from newsletter.tokens import Purpose, TokenData, Tokens
from newsletter.web import web_server
from tests.conftest import TEST_SECRET
from tests.web.helpers import local_listener, server_running

# HTTP behaviour: SQLite is enough (tests/conftest.py, sqlite_only).
pytestmark = pytest.mark.sqlite_only

TOKEN = Tokens(TEST_SECRET).make(Purpose.MANAGE, TokenData(7, 12345))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"GET /manage/{TOKEN} HTTP/1.1", f"GET /manage/{REDACTED} HTTP/1.1"),
        (f"/manage/{TOKEN}/export", f"/manage/{REDACTED}/export"),
        (f"/feedback/{TOKEN}/3/more", f"/feedback/{REDACTED}/3/more"),
        (f"/unsubscribe/{TOKEN}?x=1", f"/unsubscribe/{REDACTED}?x=1"),
        (f"/api/v1/subscribers/{TOKEN}/preferences", f"/api/v1/subscribers/{REDACTED}/preferences"),
        (
            f"http://h/confirm/{TOKEN} /view/{TOKEN}",
            f"http://h/confirm/{REDACTED} /view/{REDACTED}",
        ),
        (f"/address/{TOKEN}", f"/address/{REDACTED}"),
        ("/static/site.css", "/static/site.css"),
        ("/admin/subscribers", "/admin/subscribers"),
    ],
    # The token carries the time it was made: ids of their own keep the test names the
    # same in every process (pytest-xdist's workers must collect the same tests).
    ids=["access-line", "export", "feedback", "query", "api", "two", "address", "static", "admin"],
)
def test_tokens_are_taken_out_of_paths(line: str, expected: str) -> None:
    assert redact_tokens(line) == expected


def test_the_filter_redacts_messages_and_arguments() -> None:
    record = logging.makeLogRecord(
        {"msg": f"opened /view/{TOKEN} and %s (%d)", "args": (f"/manage/{TOKEN}", 200)}
    )
    assert RedactTokens().filter(record)
    assert TOKEN not in record.getMessage()
    assert record.getMessage() == f"opened /view/{REDACTED} and /manage/{REDACTED} (200)"


def test_the_application_log_is_redacted(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging()
    try:
        logging.getLogger("newsletter.test").warning("link /manage/%s failed", TOKEN)
    finally:
        logging.getLogger().handlers.clear()
    err = capfd.readouterr().err
    assert f"link /manage/{REDACTED} failed" in err
    assert TOKEN not in err


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """``newsletter serve`` sets up the process's logging: put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_access_log_of_the_running_server_is_redacted(
    engine: Engine,
    web_settings: Settings,
    capfd: pytest.CaptureFixture[str],
    logging_restored: None,
) -> None:
    listener, url = local_listener()
    with server_running(web_server(web_settings, "127.0.0.1", 0), listener):
        for path in (f"/manage/{TOKEN}", f"/unsubscribe/{TOKEN}", f"/feedback/{TOKEN}/1/more"):
            httpx.get(url + path, timeout=10)
        # What the app and uvicorn itself log under `newsletter serve` is redacted too.
        logging.getLogger("newsletter.web.app").error("unhandled error on GET /view/%s", TOKEN)
        logging.getLogger("uvicorn.error").warning("trouble with /confirm/%s", TOKEN)
    captured = capfd.readouterr()
    logged = captured.out + captured.err  # uvicorn's access log goes to stdout
    # Each request has its access line, in uvicorn's own format ...
    assert f'"GET /manage/{REDACTED} HTTP/1.1" 400' in logged
    assert f'"GET /feedback/{REDACTED}/1/more HTTP/1.1"' in logged
    assert "Logging error" not in logged  # (a formatter that could not format its line)
    assert f"unhandled error on GET /view/{REDACTED}" in logged
    assert f"trouble with /confirm/{REDACTED}" in logged
    assert TOKEN not in logged  # ... and no token anywhere
