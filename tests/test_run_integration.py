"""``newsletter run`` end to end: the scheduler ingests from a local server replaying the
real recorded arXiv API response, plans the edition for the subscriber whose send hour
has come, and delivers the issue to a local SMTP server (issue 6, "Done when")."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]
from sqlalchemy import func, select

from newsletter.db import SessionFactory
from newsletter.mailcapture import FaultyServer
from newsletter.models import Delivery, DeliveryItem, DeliveryStatus, Paper, Subscriber
from tests.sources.fakeserver import ATOM_FILE, FakeServer, Reply
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


def test_run_ingests_from_the_arxiv_api_plans_and_delivers_on_schedule(
    sessions: SessionFactory,
    database_url: str,
    server: FaultyServer,
    start: Callable[..., Running],
    tmp_path: Path,
) -> None:
    recorded = ATOM_FILE.read_bytes()
    # A send slot an hour or two from now, and a clock ten minutes past it: the papers
    # ingested now arrive before that slot, so the issue is due at the clock's time.
    slot = (datetime.now(UTC) + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    clock = lambda: slot + timedelta(minutes=10)  # noqa: E731
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
        arxiv.add(*[Reply(body=recorded) for _ in range(1000)])  # one per ingest run
        settings = settings_for(
            database_url,
            server,
            sources={
                "arxiv": {
                    "kind": "arxiv_api",
                    "base_url": arxiv.url + "/api/query",
                    "categories": ["cs.LO", "cs.DB"],
                    "page_size": 10,
                    "delay_seconds": 0,
                }
            },
            source_state_file=str(tmp_path / "sources.json"),
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
    assert first.query["max_results"] == "10"
    with sessions() as session:
        papers = {p.external_id: p for p in session.scalars(select(Paper))}
    assert len(papers) == 10
    assert papers["1802.03292"].title == NEWEST_TITLE
    assert "cs.LO" in papers["1802.03292"].categories
    assert papers["1501.05039"].title == "Defining Data Science"
    state = json.loads((tmp_path / "sources.json").read_text(encoding="utf-8"))
    assert set(state) == {"arxiv"}

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
        assert delivery.sent_at == clock()  # sent at the scheduler's clock, not before
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
