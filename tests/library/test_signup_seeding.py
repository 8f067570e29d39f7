"""Seeding on sign-up, end to end (issue 16): a reader signs up through the real web app
with a BibTeX file built from the shared listings, confirms, the seeding job fetches
what the database lacks from a local server replaying a recorded arXiv reply, and their
first issue ranks their library's topic first, saying "from your library". Also: a
sign-up never confirmed takes its library with it when it lapses. Both databases."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import selectinload

from newsletter.db import SessionFactory
from newsletter.mail.capture import MaildirServer
from newsletter.mail.view import issue_view
from newsletter.models import (
    Delivery,
    DeliveryItem,
    LibraryImport,
    LibrarySeed,
    Paper,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from newsletter.service import Service
from newsletter.settings import Settings
from newsletter.subscribers.accounts import SIGNUP_TTL, purge_expired_signups
from newsletter.subscribers.library import seed_pending
from newsletter.tokens import Tokens
from newsletter.web.app import create_app
from newsletter.web.options import WebOptions
from tests.conftest import DAILY, TEST_SECRET, make_settings
from tests.library.atom import RECORDED
from tests.library.listing import bibtex_entries
from tests.sources.fakeserver import FakeServer, Reply
from tests.web.helpers import csrf_from, read_mail

SEED_DAY, EDITION = date(2026, 5, 26), date(2026, 5, 27)
TOPIC = "cs.IT"  # information theory: about 2% of the listings
FETCHED = "1501.05039"  # in the recorded arXiv reply, not in the listings


def bibtex_from_listing(count: int) -> str:
    """``count`` real cs.IT papers of the seed day as a reference manager writes them,
    one of them twice, an arXiv paper the database lacks, and an entry with nothing to
    go by."""
    entries = bibtex_entries(SEED_DAY, TOPIC, count)
    return (
        "\n".join(entries)
        + "\n"
        + entries[0].replace("@article{paper0", "@article{again")
        + f"\n@misc{{fetched, eprint = {{{FETCHED}}}, archivePrefix = {{arXiv}}}}\n"
        + "\n@misc{empty, note = {to read}}\n"
    )


@pytest.fixture
def fake_arxiv() -> Iterator[FakeServer]:
    server = FakeServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def maildir(tmp_path: Path) -> Iterator[tuple[Path, MaildirServer]]:
    with MaildirServer(tmp_path / "maildir") as server:
        yield tmp_path / "maildir", server


@pytest.fixture
def settings(
    engine: Engine,
    database_url: str,
    fake_arxiv: FakeServer,
    maildir: tuple[Path, MaildirServer],
) -> Settings:
    _, server = maildir
    return make_settings(
        database_url,
        smtp_host=server.host,
        smtp_port=server.port,
        public_url="http://testserver",
        semantic=False,
        sources={
            "arxiv": {
                "kind": "arxiv_api",
                "base_url": f"{fake_arxiv.url}/api/query",
                "categories": ["cs.IT"],
                "delay_seconds": 0,
            }
        },
        source_retries=0,
        source_backoff_seconds=0,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    options = WebOptions(
        subscribe_per_ip="1000/minute", mails_per_address="1000/minute", posts_per_ip="1000/minute"
    )
    with TestClient(create_app(settings, options=options)) as test_client:
        yield test_client


def _sign_up(client: TestClient, address: str, library: bytes, *, name: str, keywords: str) -> str:
    token = csrf_from(client.get("/subscribe"))
    response = client.post(
        "/subscribe",
        data={
            "csrf_token": token,
            "email": address,
            "keywords": keywords,
            "frequency": "daily",
            "timezone": "UTC",
            "send_hour": "7",
        },
        files={"library_file": (name, library, "application/octet-stream")},
    )
    assert response.status_code == 200, response.text
    page: str = response.text
    return page


def _text(page: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", "", page).split())


def test_a_library_given_at_sign_up_makes_the_first_issue_personal(
    settings: Settings,
    client: TestClient,
    sessions: SessionFactory,
    fake_arxiv: FakeServer,
    maildir: tuple[Path, MaildirServer],
) -> None:
    service = Service.open(settings)
    try:
        for day in (SEED_DAY, EDITION):
            service.ingest(DAILY / f"{day}.jsonl", today=day)
    finally:
        service.close()
    # The form wants a topic or a keyword: one no paper of the edition holds, so only
    # the library can shape this issue.
    library = bibtex_from_listing(6).encode()
    page = _text(
        _sign_up(client, "ada@example.org", library, name="references.bib", keywords="xylophone")
    )

    assert "Check your inbox" in page
    assert "references.bib: 7 papers to import, 2 lines not." in page
    assert "@misc{empty}: not imported: no arXiv id, DOI or title" in page
    assert "@article{again}: skipped: the same paper as line 1" in page
    assert fake_arxiv.requests == []  # nothing fetched in the request
    # Staged, untouched until the address is confirmed: nothing matched, no seed yet.
    with sessions() as session:
        imp = session.scalars(select(LibraryImport)).one()
        assert imp.status == "staged"
        assert len(imp.entries) == 9  # as read: the duplicate and the empty one too
        assert session.scalar(select(func.count(LibrarySeed.id))) == 0

    # Until the address is confirmed the job leaves the library alone: a stranger's
    # sign-up never makes the service fetch from the arXiv API.
    assert seed_pending(settings, sessions) is None
    assert fake_arxiv.requests == []

    folder, _ = maildir
    [mail] = read_mail(folder)
    link = mail.link("/confirm/")
    confirmed = client.post(link, data={"csrf_token": csrf_from(client.get(link))})
    assert "You are subscribed" in confirmed.text
    # Confirmed: matched against the stored papers, the one missing id left to the job.
    with sessions() as session:
        imp = session.scalars(select(LibraryImport)).one()
        assert imp.status == "pending"
        assert [e["arxiv_id"] for e in imp.entries] == [FETCHED]
        assert session.scalar(select(func.count(LibrarySeed.id))) == 6

    fake_arxiv.add(Reply(body=RECORDED.read_bytes()))
    summary = seed_pending(settings, sessions)  # the scheduler's job

    assert summary is not None
    assert (summary.done, summary.waiting) == (1, 0)
    assert [r.query.get("id_list") for r in fake_arxiv.requests] == [FETCHED]
    manage = re.search(r'href="http://testserver(/manage/[^"]+)"', confirmed.text)
    assert manage is not None
    report = _text(client.get(f"{manage.group(1)}/library").text)
    assert "references.bib: 7 imported, 2 not." in report
    assert "7 papers from your library shape your issues" in report

    service = Service.open(settings)
    try:
        service.plan(EDITION)
    finally:
        service.close()
    with sessions() as session:
        delivery = session.scalars(
            select(Delivery).options(selectinload(Delivery.items).selectinload(DeliveryItem.paper))
        ).one()
        picks = [item.paper for item in sorted(delivery.items, key=lambda i: i.rank)]
        listed = session.scalars(select(Paper.categories).where(Paper.listed_on == EDITION)).all()
        seeds = set(session.scalars(select(LibrarySeed.arxiv_id)))
        view = issue_view(delivery, settings=settings, tokens=Tokens(TEST_SECRET))
    assert FETCHED in seeds
    assert not {p.external_id for p in picks} & seeds  # papers they hold are not offered
    assert all(TOPIC in p.categories for p in picks[:3]), [p.categories for p in picks]
    assert not any("xylophone" in f"{p.title} {p.abstract}".lower() for p in picks)
    share = sum(TOPIC in p.categories for p in picks) / len(picks)
    assert share >= 4 * sum(TOPIC in c for c in listed) / len(listed)
    whys = [w.text for card in view.papers[:3] for w in getattr(card, "why", ())]
    assert any(w.endswith("from your library") for w in whys), whys


def test_a_sign_up_never_confirmed_takes_its_library_with_it(
    client: TestClient, sessions: SessionFactory
) -> None:
    with sessions.begin() as session:
        session.add(
            Paper(
                external_id="2605.00001",
                title="A stored paper",
                abstract="An abstract.",
                url="https://arxiv.org/abs/2605.00001",
                listed_on=SEED_DAY,
                content_listed_on=SEED_DAY,
            )
        )
    _sign_up(client, "bo@example.org", b"2605.00001\n2605.99999\n", name="a.txt", keywords="x")
    _sign_up(client, "cy@example.org", b"2605.00001\n", name="b.txt", keywords="x")
    with sessions() as session:
        assert session.scalar(select(func.count(LibraryImport.id))) == 2
        assert session.scalar(select(func.count(LibrarySeed.id))) == 0  # staged only
    lapsed = utcnow() - SIGNUP_TTL - timedelta(minutes=1)
    with sessions.begin() as session:
        session.execute(
            update(Subscriber)
            .where(Subscriber.email == "bo@example.org")
            .values(signup_at=lapsed, created_at=lapsed)
        )

    with sessions.begin() as session:  # what the scheduler's purge (and any sign-up) runs
        assert purge_expired_signups(session, now=utcnow()) == 1

    with sessions() as session:
        left = session.scalars(select(Subscriber)).one()
        assert (left.email, left.status) == ("cy@example.org", SubscriberStatus.PENDING)
        assert [i.subscriber_id for i in session.scalars(select(LibraryImport))] == [left.id]
