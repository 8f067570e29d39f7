from __future__ import annotations

from datetime import date

import pytest

from newsletter.papers.sources.hf_daily import HfDailySource
from newsletter.papers.sources.http import FetchError, HttpClient, HttpOptions
from newsletter.papers.sources.registry import FetchResult
from tests.sources.fakeserver import HTTP_DATA, FakeServer, Reply, server

__all__ = ["server"]

TODAY = date(2026, 5, 27)
JSON = "application/json; charset=utf-8"
DAY = (HTTP_DATA / "hf_daily_papers_2026-05-27.json").read_bytes()


def run(
    server: FakeServer, *, since: date | None = None, state: str | None = None, delay: float = 0
) -> FetchResult:
    options = HttpOptions(timeout=5, retries=1, backoff_seconds=0.01, delay_seconds=delay)
    source = HfDailySource(
        "hf", HttpClient(options, source="hf"), base_url=server.url + "/", max_days=3
    )
    try:
        return source.fetch(since=since, state=state, today=TODAY)
    finally:
        source.close()


def test_one_day_of_papers(server: FakeServer) -> None:
    server.add(Reply(body=DAY, content_type=JSON))
    result = run(server, since=TODAY)
    assert [r.external_id for r in result.records] == ["2605.27011", "2605.26279", "2605.26278"]
    assert all(r.listed_on == TODAY for r in result.records)
    assert len(result.records[0].authors) == 6
    assert "Hidden Person" not in result.records[1].authors
    assert len(result.records[1].authors) == 2
    assert result.records[0].url == "https://arxiv.org/abs/2605.27011"
    assert [str(p) for p in result.problems] == [
        f"{server.url}/api/daily_papers?date=2026-05-27 item 4: "
        "'id' 'not-an-arxiv-id' is not an arXiv identifier"
    ]
    assert server.requests[0].path == "/api/daily_papers"
    assert server.requests[0].query == {"date": "2026-05-27"}
    assert result.state == "2026-05-27"


def test_each_day_since_the_previous_run_is_asked_with_a_delay(server: FakeServer) -> None:
    server.add(*[Reply(body=b"[]", content_type=JSON)] * 3)
    run(server, state="2026-05-25", delay=0.2)
    assert [r.query["date"] for r in server.requests] == ["2026-05-25", "2026-05-26", "2026-05-27"]
    assert all(gap >= 0.2 for gap in server.gaps())


def test_a_long_window_is_capped_at_max_days(server: FakeServer) -> None:
    server.add(*[Reply(body=b"[]", content_type=JSON)] * 3)
    run(server, since=date(2026, 1, 1))
    assert [r.query["date"] for r in server.requests] == ["2026-05-25", "2026-05-26", "2026-05-27"]


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(body=DAY[:200], content_type=JSON), "not JSON"),
        (Reply(body=b'{"error": "x"}', content_type=JSON), "expected a JSON list, got dict"),
        (
            Reply(body=(HTTP_DATA / "maintenance.html").read_bytes(), content_type="text/html"),
            "expected json content, got 'text/html'",
        ),
        (Reply(500, b"oops", content_type="text/plain"), "HTTP 500"),
    ],
    ids=["truncated", "not-a-list", "html", "server-error"],
)
def test_broken_responses_are_clear_errors(server: FakeServer, reply: Reply, message: str) -> None:
    server.add(reply, reply)
    with pytest.raises(FetchError) as caught:
        run(server, since=TODAY)
    assert message in str(caught.value)
