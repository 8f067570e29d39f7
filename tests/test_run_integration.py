"""``newsletter run`` end to end: the scheduler ingests from a local server replaying the
real recorded arXiv API response, plans the edition for the subscriber whose send hour
has come, and delivers the issue to a local SMTP server (issue 6, "Done when")."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]
from sqlalchemy import func, select

from newsletter.db import SessionFactory
from newsletter.mail.faulty import FaultyServer
from newsletter.models import (
    Delivery,
    DeliveryItem,
    DeliveryStatus,
    Paper,
    SourceState,
    Subscriber,
)
from tests.sources.fakeserver import FakeServer, Reply
from tests.sources.test_arxiv_api import atom_pages
from tests.test_scheduler import (
    Running,
    add_people,
    fast_config,
    server,
    settings_for,
    start,
    wait_for,
)

__all__ = ["server", "start"]

# The recorded feed's newest paper (published 2018-02-07, cs.LO): the newest edition.
NEWEST_TITLE = "Mathematical Logic in Computer Science"
ZONE = "Asia/Tokyo"  # no daylight saving: the local send hour is unambiguous


def planned(sessions: SessionFactory) -> dict[str, tuple[DeliveryStatus, datetime | None]]:
    with sessions() as session:
        rows = session.execute(
            select(Subscriber.email, Delivery.status, Delivery.next_attempt_at).join(
                Delivery, Delivery.subscriber_id == Subscriber.id
            )
        )
        return {email: (status, at) for email, status, at in rows}


def test_run_ingests_from_the_arxiv_api_plans_and_delivers_on_schedule(
    sessions: SessionFactory,
    database_url: str,
    server: FaultyServer,
    start: Callable[..., Running],
    tmp_path: Path,
) -> None:
    # The real recorded feed (10 entries) as three pages of 4, 4 and 2 entries.
    pages = atom_pages([4, 4, 2])
    # A send slot an hour or two from now: the papers ingested now arrive before it. The
    # scheduler's clock starts 20 minutes before the slot (within the planning lookahead),
    # then is moved 10 minutes past it.
    slot = (datetime.now(UTC) + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    now = [slot - timedelta(minutes=20)]

    def clock() -> datetime:
        return now[0]

    hour = slot.astimezone(ZoneInfo(ZONE)).hour
    add_people(
        sessions,
        {
            "logic@example.org": (["cs.LO"], ZONE, hour, "daily"),
            # Same topic, but twelve hours off: neither a slot passed since the papers
            # arrived nor one within the lookahead.
            "later@example.org": (["cs.LO"], ZONE, (hour + 12) % 24, "daily"),
        },
    )
    arxiv = FakeServer()
    try:
        for _ in range(300):  # three pages per ingest run
            arxiv.add(*[Reply(body=page) for page in pages])
        settings = settings_for(
            database_url,
            server,
            sources={
                "arxiv": {
                    "kind": "arxiv_api",
                    "base_url": arxiv.url + "/api/query",
                    "categories": ["cs.LO", "cs.DB"],
                    "page_size": 4,
                    "delay_seconds": 0,
                }
            },
            source_timeout=5.0,
            source_retries=1,
            source_backoff_seconds=0.01,
        )
        running = start(
            settings,
            config=fast_config(ingest=IntervalTrigger(seconds=0.2)),
            clock=clock,
        )
        try:
            wait_for(lambda: running.scheduler.runs["ingest"] >= 1, "an ingest run")
            wait_for(lambda: bool(planned(sessions)), "the plan")
            # Planned for the slot, and held back until it comes.
            assert planned(sessions) == {"logic@example.org": (DeliveryStatus.PENDING, slot)}
            deliver_runs = running.scheduler.runs["deliver"]
            wait_for(
                lambda: running.scheduler.runs["deliver"] >= deliver_runs + 3,
                "three deliver runs before the slot",
            )
            assert server.received == 0
            assert planned(sessions) == {"logic@example.org": (DeliveryStatus.PENDING, slot)}
            now[0] = slot + timedelta(minutes=10)
            wait_for(lambda: server.received >= 1, "the issue at the SMTP server")
            deliver_runs = running.scheduler.runs["deliver"]
            wait_for(
                lambda: running.scheduler.runs["deliver"] >= deliver_runs + 3,
                "three more deliver runs",
            )
        finally:
            running.halt()
    finally:
        arxiv.close()

    # Ingested from the API: the ten recorded papers, with their categories.
    assert arxiv.requests
    first = arxiv.requests[0]
    assert first.path == "/api/query"
    assert first.query["search_query"].startswith("(cat:cs.LO OR cat:cs.DB) AND submittedDate:")
    assert first.query["max_results"] == "4"
    assert [r.query["start"] for r in arxiv.requests[:3]] == ["0", "4", "8"]
    with sessions() as session:
        papers = {p.external_id: p for p in session.scalars(select(Paper))}
    assert len(papers) == 10
    assert papers["1802.03292"].title == NEWEST_TITLE
    assert "cs.LO" in papers["1802.03292"].categories
    assert papers["1501.05039"].title == "Defining Data Science"
    with sessions() as session:
        states = dict(session.execute(select(SourceState.name, SourceState.value)).all())
    assert set(states) == {"arxiv"}  # where the next run resumes, in the database

    # Planned for the subscriber whose hour came, at that hour; not for the other.
    with sessions() as session:
        rows = session.execute(
            select(Subscriber.email, Delivery).join(
                Delivery, Delivery.subscriber_id == Subscriber.id
            )
        ).all()
        assert [email for email, _ in rows] == ["logic@example.org"]
        delivery = rows[0][1]
        assert delivery.status == DeliveryStatus.SENT
        assert delivery.sent_at == slot + timedelta(minutes=10)  # the scheduler's clock
        assert delivery.message_id
        picked = session.scalars(
            select(Paper.external_id)
            .join(DeliveryItem, DeliveryItem.paper_id == Paper.id)
            .where(DeliveryItem.delivery_id == delivery.id)
        ).all()
        assert "1802.03292" in picked
        message_id = delivery.message_id
        assert session.scalar(select(func.count()).select_from(Delivery)) == 1

    # Delivered once, to them, with the Message-ID recorded and the paper's title.
    assert [m.rcpt_tos for m in server.messages] == [["logic@example.org"]]
    message = BytesParser(policy=policy.default).parsebytes(server.messages[0].data)
    assert message["To"].addresses[0].addr_spec == "logic@example.org"
    assert message["Message-ID"] == message_id
    assert not message["Subject"].startswith("[TEST]")
    bodies = [
        part.get_content()
        for part in message.walk()
        if part.get_content_type() in ("text/plain", "text/html")
    ]
    assert len(bodies) == 2
    assert all(NEWEST_TITLE in body for body in bodies)
    assert running.scheduler.errors == {}
    assert running.scheduler.runs["plan"] >= 1
