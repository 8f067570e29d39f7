"""Rate limits shared by several web processes through a real redis-server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from newsletter.errors import ConfigError
from newsletter.web.ratelimit import RateLimits


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A redis-server of the test's own, on a free port, keeping nothing on disk."""
    server = shutil.which("redis-server")
    assert server, "redis-server is needed (Debian: apt-get install redis-server)"
    port = _free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_two_processes_share_one_limit_through_redis(redis_url: str) -> None:
    # Two RateLimits on one storage are what two web processes hold.
    first = RateLimits({"subscribe": "3/minute"}, storage=redis_url)
    second = RateLimits({"subscribe": "3/minute"}, storage=redis_url)
    address = f"{uuid.uuid4()}@example.org"
    assert [first.allow("subscribe", address), second.allow("subscribe", address)] == [True, True]
    assert first.allow("subscribe", address)
    assert not second.allow("subscribe", address)  # the fourth, in the other process
    assert not first.allow("subscribe", address)
    assert second.allow("subscribe", f"{uuid.uuid4()}@example.org")  # per key


def test_in_memory_each_process_counts_alone() -> None:
    first = RateLimits({"subscribe": "1/minute"})
    second = RateLimits({"subscribe": "1/minute"})
    assert first.allow("subscribe", "ada@example.org")
    assert not first.allow("subscribe", "ada@example.org")
    assert second.allow("subscribe", "ada@example.org")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("nonsense://x", "rate_limit_storage"),
        ("memcached://127.0.0.1:11211", "rate_limit_storage"),
    ],
)
def test_an_unusable_storage_is_a_configuration_error(uri: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RateLimits({"subscribe": "1/minute"}, storage=uri)


def test_a_storage_that_does_not_answer_lets_requests_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nobody = f"redis://127.0.0.1:{_free_port()}"  # nothing listens there
    limits = RateLimits({"subscribe": "1/minute"}, storage=nobody)
    assert limits.allow("subscribe", "ada@example.org")
    assert limits.allow("subscribe", "ada@example.org")  # not counted, not refused
    assert "rate limit subscribe not counted" in caplog.text
