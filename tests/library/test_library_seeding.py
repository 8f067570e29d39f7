"""Resolving library imports into seeds, and seeds in the profile (real database)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from newsletter.db import SessionFactory
from newsletter.models import (
    Feedback,
    LibraryImport,
    LibrarySeed,
    Paper,
    Subscriber,
    SubscriberStatus,
)
from newsletter.planning.profile_vectors import SEED_FRESH, load_ratings
from newsletter.settings import Settings
from newsletter.subscribers import library
from newsletter.subscribers.library import MAX_ATTEMPTS, new_import, resolve, seed_pending
from newsletter.subscribers.library_formats import REPORTED_PROBLEMS, parse_library
from tests.conftest import make_settings
from tests.library.atom import error_feed
from tests.sources.fakeserver import FakeServer, Reply

pytestmark = pytest.mark.sqlite_only

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.fixture
def fake_arxiv() -> Iterator[FakeServer]:
    server = FakeServer()
    try:
        yield server
    finally:
        server.close()


def _settings(database_url: str, server: FakeServer) -> Settings:
    return make_settings(
        database_url,
        sources={
            "arxiv": {
                "kind": "arxiv_api",
                "base_url": f"{server.url}/api/query",
                "categories": ["cs.LG"],
                "delay_seconds": 0,
            }
        },
        source_retries=0,
        source_backoff_seconds=0,
    )


def _subscriber(sessions: SessionFactory, email: str = "ada@example.org") -> int:
    with sessions.begin() as session:
        subscriber = Subscriber(email=email, status=SubscriberStatus.ACTIVE)
        session.add(subscriber)
        session.flush()
        return subscriber.id


def _paper(session: object, external_id: str, title: str) -> Paper:
    paper = Paper(
        external_id=external_id,
        title=title,
        abstract="An abstract.",
        url=f"https://arxiv.org/abs/{external_id}",
        listed_on=date(2026, 5, 1),
        content_listed_on=date(2026, 5, 1),
    )
    session.add(paper)  # type: ignore[attr-defined]
    return paper


def _import(sessions: SessionFactory, subscriber_id: int, text: str) -> int:
    with sessions.begin() as session:
        subscriber = session.get_one(Subscriber, subscriber_id)
        return new_import(session, subscriber, parse_library(text.encode()), source="t").id


def test_the_api_down_is_retried_later_and_the_reader_told(
    sessions: SessionFactory, database_url: str, fake_arxiv: FakeServer
) -> None:
    subscriber_id = _subscriber(sessions)
    import_id = _import(sessions, subscriber_id, "1501.05039\n1503.01162\n")
    settings = _settings(database_url, fake_arxiv)
    fake_arxiv.add(Reply(status=503, body=b"unavailable"))

    summary = seed_pending(settings, sessions)

    assert summary is not None
    assert (summary.done, summary.waiting) == (0, 1)
    with sessions() as session:
        imp = session.get_one(LibraryImport, import_id)
        assert (imp.status, imp.attempts, len(imp.entries)) == ("pending", 1, 2)
        assert imp.last_error is not None
        assert "HTTP 503" in imp.last_error
        assert imp.next_attempt_at is not None
        assert imp.next_attempt_at > datetime.now(UTC) + timedelta(minutes=14)
    # Not due yet: no request at all.
    assert seed_pending(settings, sessions) is None
    assert len(fake_arxiv.requests) == 1


def test_after_the_last_attempt_entries_with_a_title_are_kept_and_the_rest_reported(
    sessions: SessionFactory, database_url: str, fake_arxiv: FakeServer
) -> None:
    subscriber_id = _subscriber(sessions)
    bib = (
        "@article{a, title={A paper of my own}, eprint={2601.00001}, archivePrefix={arXiv}}\n"
        "@article{b, eprint={2601.00002}, archivePrefix={arXiv}}\n"
    )
    import_id = _import(sessions, subscriber_id, bib)
    fake_arxiv.add(*[Reply(status=500, body=b"")] * 3)
    fetcher_settings = _settings(database_url, fake_arxiv)
    from newsletter.subscribers.library_arxiv import ArxivFetcher

    fetcher = ArxivFetcher(fetcher_settings, today=NOW.date())
    try:
        with sessions.begin() as session:
            imp = session.get_one(LibraryImport, import_id)
            imp.attempts = MAX_ATTEMPTS - 1
            resolve(session, imp, fetch=fetcher, now=NOW)
            assert imp.status == "done"
            outcomes = [(r["where"], r["outcome"], r["reason"]) for r in imp.report]
    finally:
        fetcher.close()
    assert outcomes == [
        ("line 1", "imported", "from its own title (arXiv unreachable)"),
        (
            "line 2",
            "not imported",
            f"the arXiv API could not be reached after {MAX_ATTEMPTS} tries",
        ),
    ]


@pytest.mark.both_databases  # title matching in SQL (lower()) and JSON columns
def test_duplicates_against_the_library_and_another_readers_doi_stays_private(
    sessions: SessionFactory,
) -> None:
    ada, bob = _subscriber(sessions), _subscriber(sessions, "bob@example.org")
    with sessions.begin() as session:
        _paper(session, "2605.00001", "Sparse Attention, Revisited")
    _import(sessions, ada, "2605.00001\n")
    _import(
        sessions,
        bob,
        '[{"title": "Bob\'s confidential draft", "abstract": "Secret.", "DOI": "10.1000/XYZ.1"}]',
    )
    second = _import(
        sessions,
        ada,
        "@article{x, title={Sparse attention revisited}}\n"
        "@article{y, doi={10.1000/xyz.1}}\n"
        "@article{z, title={}}\n"
        "@article{w, doi={10.1000/own.2}, title={Ada's own}}\n"
        "@article{v, doi={10.1000/OWN.2}}\n",
    )
    with sessions() as session:
        imp = session.get_one(LibraryImport, second)
        rows = [(r["where"], r["outcome"], r["reason"]) for r in imp.report]
        seeds = session.scalars(select(LibrarySeed).where(LibrarySeed.subscriber_id == ada))
        mine = sorted((s.title, s.abstract) for s in seeds)
    assert rows == [
        ("line 1", "skipped", "already in your library"),
        (
            "line 2",
            "not imported",
            "a DOI alone, with no title to go by (only arXiv DOIs are looked up; "
            "give the BibTeX entry instead)",
        ),
        ("line 3", "not imported", "no arXiv id, DOI or title"),
        ("line 4", "imported", "from its own title"),
        ("line 5", "skipped", "the same paper as line 4"),
    ]
    assert mine == [("Ada's own", ""), ("Sparse Attention, Revisited", "An abstract.")]
    assert "confidential" not in str(imp.report)
    assert imp.status == "done"


@pytest.mark.both_databases
def test_seeds_do_not_decay_until_the_readers_own_ratings_outnumber_them(
    sessions: SessionFactory,
) -> None:
    subscriber_id = _subscriber(sessions)
    with sessions.begin() as session:
        papers = [_paper(session, f"2605.0000{i}", f"Paper {i}") for i in range(4)]
        session.flush()
        for paper in papers[:2]:
            session.add(
                LibrarySeed(
                    subscriber_id=subscriber_id,
                    paper_id=paper.id,
                    title=paper.title,
                    title_key=paper.title.lower(),
                    created_at=NOW,
                )
            )
        session.add(LibrarySeed(subscriber_id=subscriber_id, title="Own text", title_key="own"))
        subscriber = session.get_one(Subscriber, subscriber_id)
        ratings = load_ratings(session, [subscriber])
        assert sorted(when for _, _, _, when in ratings.events) == [SEED_FRESH, SEED_FRESH]
        assert [title for _, title, _ in ratings.seed_texts] == ["Own text"]
        assert ratings.rated_pairs([subscriber_id]) == {(subscriber_id, p.id) for p in papers[:2]}
        # Three ratings of their own against three seeds: the seeds now age.
        for paper in [papers[2], papers[3], papers[0]]:
            session.add(Feedback(subscriber_id=subscriber_id, paper_id=paper.id, value=-1))
        session.flush()
        ratings = load_ratings(session, [subscriber])
    seeded = [(p, v, when) for _, p, v, when in ratings.events if v == 1]
    # The seed the reader rated themselves counts once, as they rated it.
    assert [(p, when) for p, _, when in seeded] == [(papers[1].id, NOW)]


def test_ids_the_api_refuses_are_reported_at_once_not_retried(
    sessions: SessionFactory, database_url: str, fake_arxiv: FakeServer
) -> None:
    subscriber_id = _subscriber(sessions)
    import_id = _import(sessions, subscriber_id, "2601.99999\n")
    fake_arxiv.add(Reply(body=error_feed("incorrect id format for 2601.99999")))
    summary = seed_pending(_settings(database_url, fake_arxiv), sessions)
    assert summary is not None
    assert summary.done == 1
    with sessions() as session:
        imp = session.get_one(LibraryImport, import_id)
        assert (imp.status, imp.attempts, imp.last_error) == ("done", 0, None)
        assert [r["reason"] for r in imp.report] == [
            "the arXiv API refused the query: incorrect id format for 2601.99999"
        ]


def test_the_stored_report_lists_the_first_bad_lines_and_counts_the_rest(
    sessions: SessionFactory,
) -> None:
    subscriber_id = _subscriber(sessions)
    import_id = _import(sessions, subscriber_id, "2401.01234\n" + "x\n" * 450)
    with sessions() as session:
        report = session.get_one(LibraryImport, import_id).report
    assert len(report) == REPORTED_PROBLEMS + 1
    assert report[0]["where"] == "line 2"
    last = report[-1]
    assert last["where"] == f"line {REPORTED_PROBLEMS + 2}"
    assert last["reason"].startswith("and 249 more lines after this one were not imported")


def test_a_full_library_reports_the_entries_over_the_limit(
    sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(library, "MAX_SEEDS", 3)
    subscriber_id = _subscriber(sessions)
    with sessions.begin() as session:
        _paper(session, "2605.00001", "Sparse Attention, Revisited")
    _import(sessions, subscriber_id, '[{"title": "One"}, {"title": "Two"}]')
    second = _import(
        sessions,
        subscriber_id,
        '[{"title": "Three"}, {"title": "Four"}, {"number": "arXiv:2605.00001"},'
        ' {"number": "arXiv:2605.09999"}]',
    )
    with sessions() as session:
        imp = session.get_one(LibraryImport, second)
        rows = [(r["where"], r["outcome"], r["reason"]) for r in imp.report]
        count = len(session.scalars(select(LibrarySeed.id)).all())
    full = "your library is full (3 papers): not added"
    assert rows == [
        ("entry 1", "imported", "from its own title"),
        ("entry 2", "not imported", full),
        ("entry 3", "not imported", full),
        ("entry 4", "not imported", full),  # not queued for arXiv either
    ]
    assert count == 3
    assert imp.entries == []
    assert imp.status == "done"


def test_the_report_names_papers_without_their_latex(sessions: SessionFactory) -> None:
    subscriber_id = _subscriber(sessions)
    with sessions.begin() as session:
        _paper(session, "2605.00002", r"Sparse $\alpha$-Attention, \emph{Revisited}")
    import_id = _import(sessions, subscriber_id, "2605.00002\n")
    with sessions() as session:
        (row,) = session.get_one(LibraryImport, import_id).report
    assert row["reason"] == "“Sparse α-Attention, Revisited”"
