"""The edition and the audit that the delivery fault and crash tests share.

They run ``deliver`` against a ``newsletter.mail.faulty.FaultyServer`` with a fault
schedule (``Faults``): a real edition (the real arXiv listing, real subscribers,
``plan_edition``) is planned by ``plan_readers``, and ``audit`` checks the database
against the server's log once the edition is finished.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import select

from newsletter.db import SessionFactory
from newsletter.delivery.outcomes import DeliverySummary
from newsletter.mail.faulty import FaultyServer
from newsletter.models import (
    OPEN,
    Bounce,
    BounceKind,
    Delivery,
    DeliveryStatus,
    Edition,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from newsletter.papers.catalogue import load_catalogue
from newsletter.papers.ingest import ingest_file
from newsletter.planning.editions import PlanOptions, plan_edition
from newsletter.subscribers.roster import build_input, upsert_subscriber

__all__ = [
    "EDITION",
    "Audit",
    "Row",
    "audit",
    "expected_message_id",
    "plan_readers",
    "reader",
    "snapshot",
    "status_counts",
    "total",
]

EDITION = date(2026, 5, 27)
SENDER_DOMAIN = "example.org"  # of the default sender in config/newsletter.toml
_READER_TOPICS = ("cs.CV", "cs.CL", "cs.AI")


def reader(number: int) -> str:
    return f"reader{number:03d}@example.org"


def plan_readers(
    sessions: SessionFactory, listing: Path, count: int, *, max_papers: int = 3
) -> dict[str, int]:
    """Ingest the listing, add ``count`` readers and plan the edition: email -> delivery id."""
    catalogue = load_catalogue()
    with sessions.begin() as session:
        assert ingest_file(session, listing, today=EDITION).new > 300
        for number in range(count):
            upsert_subscriber(
                session,
                build_input(
                    catalogue,
                    email=reader(number),
                    name=f"Reader {number}",
                    topics=[_READER_TOPICS[number % len(_READER_TOPICS)]],
                    always_send=True,
                ),
            )
    with sessions.begin() as session:
        summary = plan_edition(session, EDITION, options=PlanOptions(max_papers=max_papers))
    assert summary.planned == count, summary
    rows = snapshot(sessions)
    assert {r.status for r in rows.values()} == {DeliveryStatus.PENDING}
    return {email: row.id for email, row in rows.items()}


@dataclass(frozen=True)
class Row:
    """One delivery of the edition as the database holds it."""

    id: int
    email: str
    status: DeliveryStatus
    attempts: int
    message_id: str | None
    last_smtp_code: int | None
    lease_owner: str | None
    subscriber_status: SubscriberStatus


def snapshot(sessions: SessionFactory) -> dict[str, Row]:
    """Every delivery of the edition, keyed by the subscriber's address."""
    with sessions() as session:
        result = session.execute(
            select(
                Delivery.id,
                Subscriber.email,
                Delivery.status,
                Delivery.attempts,
                Delivery.message_id,
                Delivery.last_smtp_code,
                Delivery.lease_owner,
                Subscriber.status,
            )
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .join(Edition, Edition.id == Delivery.edition_id)
            .where(Edition.date == EDITION)
        ).all()
    return {r[1]: Row(*r) for r in result}


def expected_message_id(delivery_id: int) -> str:
    return f"<issue-{EDITION:%Y%m%d}-{delivery_id}@{SENDER_DOMAIN}>"


def status_counts(sessions: SessionFactory) -> Counter[DeliveryStatus]:
    return Counter(row.status for row in snapshot(sessions).values())


def total(summaries: Collection[DeliverySummary]) -> DeliverySummary:
    overall = DeliverySummary()
    for summary in summaries:
        overall.add(summary)
    return overall


@dataclass(frozen=True)
class Audit:
    sent: set[str]
    bounced: set[str]
    suppressed: set[str]
    duplicates: Counter[str]  # Message-ID -> extra copies the server accepted


def audit(
    sessions: SessionFactory,
    server: FaultyServer,
    *,
    bounced: Collection[str] = (),
    suppressed: Collection[str] = (),
    summaries: Collection[DeliverySummary] = (),
    allowed_duplicates: Collection[str] | None = None,
) -> Audit:
    """The database against the server's log, once an edition is finished.

    Every delivery is settled; every deliverable reader got their own message (their
    Message-ID) and, unless it is in ``allowed_duplicates`` (default: the messages the
    server accepted without acknowledging), exactly once; every recipient the server
    refused with a 5xx is bounced, suppressed and marked bounced; the outcome counts
    of the database, of the server and of the run summaries agree.
    """
    rows = snapshot(sessions)
    by_status: dict[DeliveryStatus, set[str]] = {}
    for email, row in rows.items():
        by_status.setdefault(row.status, set()).add(email)
        assert row.lease_owner is None, (email, row)
    open_or_failed = {
        s: emails for s, emails in by_status.items() if s in (*OPEN, DeliveryStatus.FAILED)
    }
    assert open_or_failed == {}, open_or_failed
    sent = by_status.get(DeliveryStatus.SENT, set())
    assert by_status.get(DeliveryStatus.BOUNCED, set()) == set(bounced)
    assert by_status.get(DeliveryStatus.SUPPRESSED, set()) == set(suppressed)
    assert sent == set(rows) - set(bounced) - set(suppressed)

    # Every deliverable reader got their own message, and only theirs.
    accepted = server.accepted_by_recipient()
    assert set(accepted) == sent, sorted(set(accepted) ^ sent)
    for email in sent:
        row = rows[email]
        assert row.message_id == expected_message_id(row.id), row
        assert set(accepted[email]) == {row.message_id}, (email, accepted[email])
    ids = server.accepted_ids()
    assert sum(ids.values()) == server.received
    assert set(ids) == {rows[e].message_id for e in sent}
    duplicates = Counter({mid: count - 1 for mid, count in ids.items() if count > 1})
    unacknowledged = server.unacknowledged_ids()
    if allowed_duplicates is None:
        # A resend is only allowed after the server kept a message without saying so.
        for mid, extra in duplicates.items():
            assert extra <= unacknowledged[mid], (mid, extra, unacknowledged)
    else:
        assert set(duplicates) <= set(allowed_duplicates), (duplicates, allowed_duplicates)

    # Every 5xx recipient: bounced with the server's code, suppressed, marked bounced.
    refusals = server.permanent_refusals()
    assert set(refusals) == set(bounced)
    with sessions() as session:
        suppressions = set(session.scalars(select(Suppression.email)))
        bounces = session.execute(
            select(Bounce.email, Bounce.delivery_id, Bounce.kind, Bounce.source, Bounce.code)
        ).all()
    # The bounced are on the list; so may be those suppressed before sending.
    assert set(bounced) <= suppressions <= set(bounced) | set(suppressed)
    assert sorted(bounces) == sorted(
        (e, rows[e].id, BounceKind.HARD, "smtp", refusals[e]) for e in bounced
    )
    for email, row in rows.items():
        if email in bounced:
            assert row.last_smtp_code == refusals[email], row
            assert row.subscriber_status == SubscriberStatus.BOUNCED, row
            # A refused address is never tried again.
            tries = [e for e in server.log if e.rcpt == email]
            assert tries[-1].outcome == "permanent", tries
            assert [e.outcome for e in tries].count("permanent") == 1, tries
        elif email not in suppressed:
            assert row.subscriber_status == SubscriberStatus.ACTIVE, row

    # Outcome counts: database == server == what the runs reported.
    assert len(sent) == len(ids)
    assert len(by_status.get(DeliveryStatus.BOUNCED, ())) == len(refusals)
    if summaries:
        overall = total(summaries)
        assert (overall.sent, overall.bounced, overall.failed, overall.suppressed) == (
            len(sent),
            len(set(bounced)),
            0,
            len(set(suppressed)),
        ), overall
    return Audit(sent, set(bounced), set(suppressed), duplicates)
