"""A scripted local HTTP server for source tests, and settings that configure sources.

The server answers each request with the next scripted ``Reply`` (or 404 when the
script is exhausted) and records when each request arrived, its path, query and
headers, so tests can check courtesy delays (lower bounds only) and parameters.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from newsletter.settings import Settings
from tests.conftest import SHARED_DATA, TEST_SECRET

ARXIV_API = SHARED_DATA / "arxiv-api"
ATOM_FILE = ARXIV_API / "atom_query_all-science_2019-08-10.xml"
OAI_FILE = ARXIV_API / "oai_listrecords_arXiv_astro-ph_2013-04-03.xml"
HTTP_DATA = Path(__file__).resolve().parents[1] / "data" / "http"


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/atom+xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to stall before answering (a timeout)
    length: int | None = None  # a Content-Length other than the body's (a dropped connection)


@dataclass
class Request:
    at: float  # time.monotonic() on arrival
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class FakeServer:
    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[Request] = []
        self._release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                server.requests.append(
                    Request(time.monotonic(), parts.path, query, dict(self.headers.items()))
                )
                reply = server.replies.popleft() if server.replies else Reply(404, b"no reply")
                if reply.delay:
                    server._release.wait(reply.delay)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    length = len(reply.body) if reply.length is None else reply.length
                    self.send_header("Content-Length", str(length))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = False
        self._server.block_on_close = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def add(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def gaps(self) -> list[float]:
        times = [r.at for r in self.requests]
        return [b - a for a, b in itertools.pairwise(times)]

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    try:
        yield fake
    finally:
        fake.close()


SourceSettings = Settings  # the source fields are ordinary settings now


def source_settings(
    sources: dict[str, dict[str, Any]],
    *,
    database_url: str = "sqlite://",
    **overrides: Any,
) -> SourceSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "secret_key": TEST_SECRET,
        "sources": sources,
        "source_timeout": 5.0,
        "source_retries": 2,
        "source_backoff_seconds": 0.01,
        "source_max_wait_seconds": 5.0,
    }
    values.update(overrides)
    return SourceSettings(**values)
