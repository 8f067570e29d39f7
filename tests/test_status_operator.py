"""What operators see when things go wrong (issue 15, item 8): an edition is "sent" only
when nothing is left to send, editions stuck in sending, the relay's last error (down or
refusing) in ``newsletter status`` (80 columns), its JSON and /metrics."""

from __future__ import annotations

import json
import socket
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from newsletter import status as stats
from newsletter.cli import app
from newsletter.db import SessionFactory
from newsletter.delivery.compose import Outgoing
from newsletter.delivery.outcomes import DeliverySummary, record
from newsletter.delivery.relay_errors import (
    KEEP,
    UNREACHABLE,
    last_relay_error,
    note_outcomes,
    record_relay_error,
    relay_failing,
)
from newsletter.delivery.run import deliver
from newsletter.delivery.smtp import SendResult
from newsletter.errors import SmtpUnavailable
from newsletter.models import (
    Bounce,
    Delivery,
    DeliveryStatus,
    Edition,
    EditionStatus,
    RelayError,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from tests.conftest import TEST_SECRET, make_settings


def edition_with(
    session: Session,
    day: date,
    statuses: list[DeliveryStatus],
    *,
    stored: EditionStatus = EditionStatus.SENDING,
    due: datetime | None = None,
    sent_at: datetime | None = None,
    prefix: str = "reader",
) -> Edition:
    """An edition with one delivery per status (each to a subscriber of its own)."""
    edition = Edition(date=day, status=stored)
    session.add(edition)
    session.flush()
    for n, status in enumerate(statuses):
        subscriber = Subscriber(
            email=f"{prefix}{n}-{day.isoformat()}@example.org", status=SubscriberStatus.ACTIVE
        )
        session.add(subscriber)
        session.flush()
        session.add(
            Delivery(
                edition_id=edition.id,
                subscriber_id=subscriber.id,
                status=status,
                next_attempt_at=due,
                created_at=due or utcnow(),
                sent_at=sent_at if status == DeliveryStatus.SENT else None,
                lease_until=due if status == DeliveryStatus.CLAIMED else None,
                last_smtp_code=451 if status == DeliveryStatus.RETRY else None,
                last_smtp_reply="4.7.1 Try again later" if status == DeliveryStatus.RETRY else None,
            )
        )
    session.flush()
    return edition


@pytest.mark.both_databases
def test_an_edition_with_a_delivery_to_retry_is_not_shown_as_sent(
    sessions: SessionFactory,
) -> None:
    # Stored as sent (deliveries were planned into it after it went out), one to retry.
    with sessions.begin() as session:
        edition_with(
            session,
            date(2026, 5, 27),
            [DeliveryStatus.SENT, DeliveryStatus.RETRY],
            stored=EditionStatus.SENT,
        )
        edition_with(session, date(2026, 5, 26), [DeliveryStatus.SENT], stored=EditionStatus.SENT)
    with sessions() as session:
        rows = {row.day: row.status for row in stats.editions(session)}
    assert rows == {date(2026, 5, 27): "sending", date(2026, 5, 26): "sent"}


@pytest.mark.both_databases
def test_stuck_editions_are_those_overdue_with_nothing_sent_meanwhile(
    sessions: SessionFactory,
) -> None:
    now = utcnow()
    long_ago = now - timedelta(hours=2)
    with sessions.begin() as session:
        # Due two hours ago, nothing sent since: stuck (a worker died holding one too).
        edition_with(
            session,
            date(2026, 5, 25),
            [DeliveryStatus.PENDING, DeliveryStatus.RETRY, DeliveryStatus.CLAIMED],
            due=long_ago,
        )
        # Overdue too, but issues of it went out a minute ago: a worker is on it.
        edition_with(
            session,
            date(2026, 5, 26),
            [DeliveryStatus.PENDING, DeliveryStatus.SENT],
            due=long_ago,
            sent_at=now - timedelta(minutes=1),
        )
        # Due only five minutes ago: not stuck yet.
        edition_with(
            session, date(2026, 5, 27), [DeliveryStatus.PENDING], due=now - timedelta(minutes=5)
        )
    with sessions() as session:
        stuck = stats.stuck_editions(session, now=now)
    assert [(row.day, row.overdue, row.last_sent) for row in stuck] == [
        (date(2026, 5, 25), 3, None)
    ]
    assert abs(stuck[0].due_since - long_ago) < timedelta(seconds=1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.both_databases
def test_a_relay_that_is_down_is_recorded_by_the_delivery_run(
    sessions: SessionFactory, database_url: str
) -> None:
    with sessions.begin() as session:
        edition_with(session, date(2026, 5, 27), [DeliveryStatus.PENDING])
    settings = make_settings(database_url, smtp_host="127.0.0.1", smtp_port=_free_port())
    with pytest.raises(SmtpUnavailable):
        deliver(sessions, settings=settings)
    with sessions() as session:
        error = last_relay_error(session, now=utcnow())
        figures = stats.status(session, now=utcnow())
        delivery = session.scalars(select(Delivery)).one()
    assert error is not None
    assert error.kind == UNREACHABLE
    assert "unavailable" in error.reply
    assert error.last_24h == 1
    assert delivery.status == DeliveryStatus.PENDING  # nothing changed on the delivery
    assert figures.relay_failing


@pytest.mark.sqlite_only
def test_deferrals_and_refusals_are_noted_once_per_batch(sessions: SessionFactory) -> None:
    now = utcnow()
    with sessions.begin() as session:
        note_outcomes(session, [SendResult(status="sent", code=250, reply="ok")], now=now)
        # A message that could not be built is our failure, not the relay's.
        note_outcomes(
            session, [SendResult(status="permanent", code=None, reply="message not built")], now=now
        )
        assert session.scalar(select(RelayError.id)) is None
        note_outcomes(
            session,
            [
                SendResult(status="temporary", code=451, reply="4.7.1 greylisted"),
                SendResult(status="sent", code=250, reply="ok"),
                SendResult(status="permanent", code=550, reply="5.1.1 no such user"),
            ],
            now=now,
        )
        # Older than KEEP goes when a new one comes.
        record_relay_error(session, kind="deferred", reply="old", now=now - KEEP * 2)
        record_relay_error(session, kind="deferred", reply="newer", now=now - timedelta(hours=1))
    with sessions() as session:
        rows = session.scalars(select(RelayError).order_by(RelayError.created_at)).all()
        error = last_relay_error(session, now=now)
    # Some went out: the relay works, some recipients were turned away.
    assert [(r.kind, r.reply) for r in rows] == [
        ("deferred", "newer"),
        ("recipients", "5.1.1 no such user"),
    ]
    assert rows[1].deliveries == 2
    assert error is not None
    assert error.text == "550 5.1.1 no such user"
    assert not relay_failing(error, None)  # about two addresses, not the relay
    with sessions.begin() as session:
        later = now + timedelta(seconds=1)
        note_outcomes(
            session,
            [SendResult(status="temporary", code=421, reply="4.3.2 shutting down")] * 3,
            now=later,
        )
    with sessions() as session:
        down = last_relay_error(session, now=later)
    assert down is not None
    assert down.kind == "deferred"
    assert relay_failing(down, now)  # nothing accepted after it
    assert not relay_failing(down, later + timedelta(seconds=1))


@pytest.mark.sqlite_only
def test_a_batch_that_turned_away_one_reader_alone_is_not_a_relay_down(
    sessions: SessionFactory,
) -> None:
    """Which outcomes are recorded together depends on timing: a greylisted reader's
    two deliveries, or a 550 and a 451 for two readers, in a batch of their own, are
    about those readers (this made the admin browser test flaky: 'Needs attention')."""
    now = utcnow()
    greylisted = SendResult(status="temporary", code=451, reply="4.7.1 greylisted")
    refused = SendResult(status="permanent", code=550, reply="5.1.1 no such user")
    with sessions.begin() as session:
        note_outcomes(session, [greylisted, greylisted], recipients=["a@x.org", "A@x.org"], now=now)
        note_outcomes(
            session,
            [refused, greylisted],
            recipients=["gone@x.org", "a@x.org"],
            now=now + timedelta(seconds=1),
        )
    with sessions() as session:
        kinds = session.scalars(select(RelayError.kind).order_by(RelayError.created_at)).all()
        error = last_relay_error(session, now=now + timedelta(seconds=1))
    assert kinds == ["recipients", "recipients"]
    assert not relay_failing(error, None)
    # Two different readers turned away with one code, nothing accepted: the relay.
    with sessions.begin() as session:
        note_outcomes(
            session,
            [greylisted, greylisted],
            recipients=["a@x.org", "b@x.org"],
            now=now + timedelta(seconds=2),
        )
    with sessions() as session:
        error = last_relay_error(session, now=now + timedelta(seconds=2))
    assert error is not None
    assert error.kind == "deferred"
    assert relay_failing(error, None)


_LATER = SendResult(status="temporary", code=451, reply="4.3.0 try later")
_NO_USER = SendResult(status="permanent", code=550, reply="5.1.1 no such user")


@pytest.mark.both_databases
@pytest.mark.parametrize(
    ("replies", "kind", "stored"),
    [
        # Deferrals alone: only the retries' rowcount tells a first run from a rerun.
        ([_LATER, _LATER], "deferred", [(DeliveryStatus.RETRY, 1)] * 2),
        (
            [_LATER, _LATER, _NO_USER],
            "recipients",  # two readers deferred and one refused: not the relay
            [(DeliveryStatus.RETRY, 1), (DeliveryStatus.RETRY, 1), (DeliveryStatus.BOUNCED, 1)],
        ),
    ],
    ids=["deferred", "deferred-and-bounced"],
)
def test_a_batch_of_outcomes_stored_twice_notes_the_relay_once(
    sessions: SessionFactory,
    database_url: str,
    replies: list[SendResult],
    kind: str,
    stored: list[tuple[DeliveryStatus, int]],
) -> None:
    """A worker stores its outcomes once more on a new connection when the first
    connection died, which may be after its COMMIT went through (``retry_stale``):
    the deliveries and the bounce are stored once, and so is the relay's word (it
    was noted twice, and the dashboard counted two relay errors)."""
    settings = make_settings(database_url)
    with sessions.begin() as session:
        edition = edition_with(session, date(2026, 5, 28), [DeliveryStatus.CLAIMED] * len(replies))
        deliveries = session.scalars(
            select(Delivery).where(Delivery.edition_id == edition.id).order_by(Delivery.id)
        ).all()
        ids = [(d.id, d.subscriber.email) for d in deliveries]
    outcomes = [
        (Outgoing(delivery_id=i, recipient=email, message_id=f"<{i}@x>", message=b""), reply)
        for (i, email), reply in zip(ids, replies, strict=True)
    ]
    rows = []
    tallies = []
    for _ in range(2):  # the first run committed; the second is the retry
        tally = DeliverySummary()
        with sessions.begin() as session:
            record(session, outcomes, owner=None, now=utcnow(), settings=settings, summary=tally)
        tallies.append(tally)
        with sessions() as session:
            rows.append(session.scalars(select(RelayError.kind)).all())
    with sessions() as session:
        bounces = session.scalars(select(Bounce.delivery_id)).all()
        states = session.execute(
            select(Delivery.status, Delivery.attempts)
            .where(Delivery.edition_id == edition.id)
            .order_by(Delivery.id)
        ).all()
    assert rows == [[kind], [kind]]  # noted by the first run, not again by the retry
    assert bounces == [i for (i, _), reply in zip(ids, replies, strict=True) if reply is _NO_USER]
    assert [tuple(row) for row in states] == stored
    # The worker keeps the tally of the run that returned: the retry's, the same.
    bounced = replies.count(_NO_USER)
    for tally in tallies:
        assert (tally.retried, tally.bounced) == (len(replies) - bounced, bounced)


LONG_REPLY = (
    "4.7.0 Our system has detected an unusual rate of unsolicited mail originating from "
    "your IP address; to protect our users from spam, mail sent from your IP address has "
    "been temporarily rate limited. Please visit https://support.example.com/mail/?p=Unsol"
    "icitedRateLimitError_________________________________ to review our guidelines."
)


@pytest.mark.both_databases
def test_status_fits_80_columns_with_many_editions_and_long_errors(
    sessions: SessionFactory, database_url: str
) -> None:
    now = utcnow()
    with sessions.begin() as session:
        for offset in range(6):
            edition_with(
                session,
                date(2026, 5, 20) + timedelta(days=offset),
                [DeliveryStatus.SENT] * 3
                + [DeliveryStatus.RETRY, DeliveryStatus.FAILED, DeliveryStatus.PENDING],
                due=now - timedelta(hours=3),
                sent_at=now - timedelta(hours=2),
                prefix="a-rather-long-local-part-for-an-address" + "x" * 20,
            )
        record_relay_error(
            session,
            kind=UNREACHABLE,
            reply="SMTP server relay.example.org:587 " + LONG_REPLY,
            now=now,
        )
        for delivery in session.scalars(select(Delivery)):
            if delivery.status == DeliveryStatus.RETRY:
                delivery.last_smtp_reply = LONG_REPLY
    env = {"NEWSLETTER_DATABASE_URL": database_url, "NEWSLETTER_SECRET_KEY": TEST_SECRET}
    result = CliRunner().invoke(app, ["status"], env={**env, "COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    too_wide = [line for line in lines if len(line) > 80]
    assert too_wide == []
    text = result.stdout
    assert "Relay" in text
    assert "unreachable" in text
    assert "rate limited" in text
    assert "Stuck in sending" in text
    assert "2026-05-25" in text
    data = json.loads(CliRunner().invoke(app, ["status", "--json"], env=env).stdout)
    assert data["relay"]["failing"] is True  # nothing accepted since the error
    assert data["relay"]["last_error"]["kind"] == UNREACHABLE
    assert len(data["stuck_editions"]) == 6
