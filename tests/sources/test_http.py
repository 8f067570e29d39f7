from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from newsletter.papers.sources.http import FetchError, HttpClient, HttpOptions, retry_after
from tests.sources.fakeserver import FakeServer, Reply, server, source_settings

__all__ = ["server"]


def _client(**changes: float | int | str) -> HttpClient:
    values: dict[str, float | int | str] = {
        "timeout": 5.0,
        "retries": 2,
        "backoff_seconds": 0.05,
        "max_wait_seconds": 5.0,
        "delay_seconds": 0.0,
    }
    values.update(changes)
    return HttpClient(HttpOptions(**values), source="test")  # type: ignore[arg-type]


def test_user_agent_names_the_project_and_the_contact(server: FakeServer) -> None:
    settings = source_settings({}, source_contact="ops@papers.example.org")
    options = HttpOptions.from_settings(settings, delay_seconds=0)
    server.add(Reply(body=b"ok", content_type="text/plain"))
    with HttpClient(options, source="t") as client:
        assert client.get(server.url + "/x").text == "ok"
    agent = server.requests[0].headers["User-Agent"]
    assert agent.startswith("paper-newsletter/")
    assert "mailto:ops@papers.example.org" in agent
    assert options.timeout == 5.0


def test_contact_defaults_to_the_sender_address() -> None:
    options = HttpOptions.from_settings(source_settings({}), delay_seconds=3)
    assert "mailto:newsletter@example.org" in options.user_agent
    assert options.delay_seconds == 3


def test_503_with_retry_after_is_waited_out_then_succeeds(server: FakeServer) -> None:
    server.add(Reply(503, b"busy", headers={"Retry-After": "1"}), Reply(body=b"done"))
    with _client() as client:
        assert client.get(server.url + "/oai").text == "done"
    assert len(server.requests) == 2
    assert server.gaps()[0] >= 1.0


def test_429_without_retry_after_backs_off_then_succeeds(server: FakeServer) -> None:
    server.add(Reply(429, b"slow down"), Reply(429, b"slow down"), Reply(body=b"done"))
    with _client(backoff_seconds=0.1) as client:
        assert client.get(server.url + "/q").text == "done"
    gaps = server.gaps()
    assert len(gaps) == 2
    assert gaps[0] >= 0.1
    assert gaps[1] >= 0.2  # exponential


def test_persistent_429_gives_up_with_a_clear_error(server: FakeServer) -> None:
    server.add(*[Reply(429, b"no")] * 5)
    with _client(retries=2) as client, pytest.raises(FetchError) as caught:
        client.get(server.url + "/q", {"a": "b"})
    assert "source 'test'" in str(caught.value)
    assert "HTTP 429" in str(caught.value)
    assert "gave up after 3 attempts" in str(caught.value)
    assert "/q?a=b" in str(caught.value)
    assert len(server.requests) == 3


def test_retry_after_longer_than_allowed_fails_at_once(server: FakeServer) -> None:
    server.add(Reply(503, b"later", headers={"Retry-After": "3600"}))
    with _client(max_wait_seconds=60) as client, pytest.raises(FetchError) as caught:
        client.get(server.url + "/q")
    assert "3600" in str(caught.value)
    assert "source_max_wait_seconds" in str(caught.value)
    assert len(server.requests) == 1


def test_timeout_is_retried_then_reported(server: FakeServer) -> None:
    server.add(Reply(body=b"late", delay=3), Reply(body=b"late", delay=3))
    with _client(timeout=0.2, retries=1) as client, pytest.raises(FetchError) as caught:
        client.get(server.url + "/slow")
    assert "timed out after 0.2 s" in str(caught.value)
    assert len(server.requests) == 2


def test_timeout_then_success(server: FakeServer) -> None:
    server.add(Reply(body=b"late", delay=3), Reply(body=b"fine"))
    with _client(timeout=0.2, retries=1) as client:
        assert client.get(server.url + "/slow").text == "fine"


def test_client_errors_are_not_retried(server: FakeServer) -> None:
    server.add(Reply(404, b"nope"), Reply(body=b"never asked"))
    with _client() as client, pytest.raises(FetchError, match="HTTP 404"):
        client.get(server.url + "/missing")
    assert len(server.requests) == 1


def test_refused_connection_is_a_clear_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with _client(retries=1) as client, pytest.raises(FetchError, match="connection failed"):
        client.get(f"http://127.0.0.1:{port}/")


def test_courtesy_delay_separates_requests(server: FakeServer) -> None:
    server.add(*[Reply(body=b"x")] * 3)
    with _client(delay_seconds=0.25) as client:
        for _ in range(3):
            client.get(server.url + "/p")
    assert len(server.gaps()) == 2
    assert all(gap >= 0.25 for gap in server.gaps())


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)

    def response(value: str) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": value})

    assert retry_after(response("7")) == 7.0
    assert retry_after(response(later), now=now) == 90.0
    assert retry_after(response("soon")) is None
    assert retry_after(httpx.Response(503)) is None


def test_a_connection_dropped_mid_body_is_retried_then_reported(server: FakeServer) -> None:
    server.add(*[Reply(body=b"<feed><entry>", length=5000)] * 2)
    with _client(retries=1) as client, pytest.raises(FetchError) as caught:
        client.get(server.url + "/cut")
    assert "connection failed (RemoteProtocolError" in str(caught.value)
    assert len(server.requests) == 2


def test_an_invalid_url_is_a_clear_error() -> None:
    with _client() as client, pytest.raises(FetchError, match="invalid URL"):
        client.get("http://[::1/broken")
