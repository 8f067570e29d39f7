"""A source run is one transaction: all of it is stored, or (on any failure) nothing."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

import newsletter.papers.fetch
from newsletter.db import SessionFactory
from newsletter.errors import ConfigError
from newsletter.models import Paper
from newsletter.papers.fetch import fetch_source, set_source_state, source_state
from newsletter.papers.ingest import IngestSummary, upsert_papers
from newsletter.papers.sources import PaperRecord
from newsletter.papers.sources.http import FetchError
from tests.sources.fakeserver import HTTP_DATA, OAI_FILE, FakeServer, Reply, server, source_settings
from tests.sources.test_arxiv_api import atom_pages
from tests.sources.test_oai_pmh import oai_page

__all__ = ["server"]

TODAY = date(2026, 5, 27)
XML = "text/xml; charset=utf-8"
KNOWN = PaperRecord(
    external_id="1501.05039",
    version=1,
    title="An older title we already hold",
    abstract="",
    authors=("Yangyong Zhu",),
    categories=("cs.DB",),
    class_codes=(),
    url="https://arxiv.org/abs/1501.05039",
    pdf_url=None,
    comment=None,
    listed_on=date(2015, 1, 20),
)


def _settings(server: FakeServer, database_url: str, tmp_path: Path, **extra: Any) -> Any:
    sources = {
        "arxiv": {
            "kind": "arxiv_api",
            "base_url": server.url + "/api/query",
            "categories": ["cs.CL"],
            "page_size": 5,
            "delay_seconds": 0,
        },
        "oai": {"kind": "oai_pmh", "base_url": server.url + "/oai", "delay_seconds": 0},
    }
    return source_settings(
        sources,
        database_url=database_url,
        **extra,
    )


def _snapshot(sessions: SessionFactory) -> list[tuple[Any, ...]]:
    with sessions() as session:
        rows = session.execute(
            select(Paper.external_id, Paper.title, Paper.version, Paper.listed_on).order_by(
                Paper.external_id
            )
        )
        return [tuple(row) for row in rows]


def _seed(sessions: SessionFactory) -> list[tuple[Any, ...]]:
    with sessions.begin() as session:
        upsert_papers(session, [KNOWN])
        set_source_state(session, "arxiv", "2026-05-01")
        set_source_state(session, "oai", "2026-05-01")
    return _snapshot(sessions)


def _state(sessions: SessionFactory, name: str) -> str | None:
    with sessions() as session:
        return source_state(session, name)


def test_a_run_stores_every_page_and_advances_the_state(
    server: FakeServer, sessions: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    settings = _settings(server, database_url, tmp_path)
    server.add(*[Reply(body=p) for p in atom_pages([5, 5])])
    summary = fetch_source(sessions, settings, "arxiv", since=date(2026, 5, 20), today=TODAY)
    assert (summary.new, summary.updated, summary.unchanged, summary.skipped) == (10, 0, 0, 0)
    assert (summary.fetched, summary.requests, summary.state) == (10, 2, "2026-05-27")
    assert str(summary).startswith("arxiv: 10 fetched, 10 new")
    assert isinstance(summary, IngestSummary)
    assert len(_snapshot(sessions)) == 10
    assert (_state(sessions, "arxiv"), _state(sessions, "oai")) == ("2026-05-27", None)

    server.add(*[Reply(body=p) for p in atom_pages([5, 5])])
    again = fetch_source(sessions, settings, "arxiv", today=date(2026, 5, 28))
    assert (again.new, again.updated, again.unchanged) == (0, 0, 10)
    assert (
        "submittedDate:[202605270000 TO 202605282359]" in server.requests[2].query["search_query"]
    )


def test_the_oai_from_date_is_kept_between_runs(
    server: FakeServer, sessions: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    settings = _settings(server, database_url, tmp_path)
    server.add(Reply(body=OAI_FILE.read_bytes(), content_type=XML))
    first = fetch_source(sessions, settings, "oai", since=date(2013, 3, 25), today=TODAY)
    assert (first.new, first.state) == (1, "2013-04-03")
    server.add(Reply(body=(HTTP_DATA / "oai_no_records.xml").read_bytes(), content_type=XML))
    second = fetch_source(sessions, settings, "oai", today=TODAY)
    assert second.new == 0
    assert [r.query.get("from") for r in server.requests] == ["2013-03-25", "2013-04-03"]


@pytest.mark.parametrize(
    ("source", "replies", "message"),
    [
        (
            "arxiv",
            [
                Reply(body=atom_pages([5, 5])[0]),
                Reply(body=(HTTP_DATA / "atom_truncated.xml").read_bytes()),
            ],
            "not well-formed XML",
        ),
        ("arxiv", [Reply(body=atom_pages([5, 5])[0]), *[Reply(503, b"down")] * 3], "HTTP 503"),
        (
            "arxiv",
            [
                Reply(body=atom_pages([5, 5])[0]),
                Reply(body=(HTTP_DATA / "maintenance.html").read_bytes(), content_type="text/html"),
            ],
            "expected xml content",
        ),
        ("oai", [Reply(body=oai_page("loop"), content_type=XML)] * 2, "the server is looping"),
        (
            "oai",
            [Reply(body=oai_page("t1"), content_type=XML), Reply(body=b"", content_type=XML)],
            "empty response body",
        ),
    ],
    ids=["truncated-page-2", "503-on-page-2", "html-page-2", "looping-token", "empty-page-2"],
)
def test_a_failed_run_changes_nothing(
    server: FakeServer,
    sessions: SessionFactory,
    database_url: str,
    tmp_path: Path,
    source: str,
    replies: list[Reply],
    message: str,
) -> None:
    settings = _settings(server, database_url, tmp_path)
    before = _seed(sessions)
    server.add(*replies)
    with pytest.raises(FetchError, match=message):
        fetch_source(sessions, settings, source, today=TODAY)
    assert len(server.requests) == len(replies)
    assert _snapshot(sessions) == before
    assert _state(sessions, source) == "2026-05-01"


def test_a_database_failure_midway_commits_nothing(
    server: FakeServer,
    sessions: SessionFactory,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(server, database_url, tmp_path)
    before = _seed(sessions)

    def upsert_then_fail(
        session: Session, records: list[PaperRecord], **options: Any
    ) -> IngestSummary:
        # Flushed: the rows are in the transaction.
        summary = upsert_papers(session, records, **options)
        assert summary.new == 9
        raise RuntimeError("the database went away")

    monkeypatch.setattr(newsletter.papers.fetch, "upsert_papers", upsert_then_fail)
    server.add(*[Reply(body=p) for p in atom_pages([5, 5])])
    with pytest.raises(RuntimeError, match="went away"):
        fetch_source(sessions, settings, "arxiv", today=TODAY)
    assert _snapshot(sessions) == before
    assert _state(sessions, "arxiv") == "2026-05-01"


def test_an_unknown_source_is_a_config_error(
    server: FakeServer, sessions: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    settings = _settings(server, database_url, tmp_path)
    with pytest.raises(ConfigError, match="unknown source 'rss'"):
        fetch_source(sessions, settings, "rss", today=TODAY)
    assert server.requests == []
    assert _snapshot(sessions) == []


def test_hugging_face_daily_papers_are_stored_with_their_day(
    server: FakeServer, sessions: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    settings = source_settings(
        {"hf": {"kind": "hf_daily", "base_url": server.url, "delay_seconds": 0}},
        database_url=database_url,
    )
    day = (HTTP_DATA / "hf_daily_papers_2026-05-27.json").read_bytes()
    server.add(Reply(body=day, content_type="application/json"))
    summary = fetch_source(sessions, settings, "hf", since=TODAY, today=TODAY)
    assert (summary.new, summary.skipped) == (3, 1)
    assert "not an arXiv identifier" in str(summary.problems[0])
    assert [row[0] for row in _snapshot(sessions)] == ["2605.26278", "2605.26279", "2605.27011"]
    assert {row[3] for row in _snapshot(sessions)} == {TODAY}
