"""The delivery engine against real SMTP servers that misbehave on purpose.

Each test plans a real edition (the arXiv listing of 2026-05-27, a few dozen readers),
runs ``deliver`` against a ``FaultyServer`` (newsletter/mail/faulty.py) configured with a
seeded set of faults, and audits the database against the server's own log: every
deliverable reader got exactly one message (counted by Message-ID at the server),
every recipient the server refused with a 5xx is bounced and suppressed, nothing is
left claimed or failed, and the counts of the database, the server and the run
summaries agree. The only resend allowed is of a message the server accepted without
the client hearing so. Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from newsletter.db import SessionFactory
from newsletter.delivery.outcomes import DeliverySummary
from newsletter.delivery.run import deliver
from newsletter.errors import SmtpUnavailable
from newsletter.mail.faulty import Faults, FaultyServer
from newsletter.models import (
    OPEN,
    Delivery,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
    utcnow,
)
from newsletter.settings import Settings
from tests.conftest import make_settings
from tests.smtpfaults import (
    EDITION,
    audit,
    plan_readers,
    reader,
    snapshot,
    status_counts,
    total,
)

TEMPORARY_CODES = {421, 450, 451}


def settings_for(database_url: str, server: FaultyServer, **overrides: Any) -> Settings:
    """Quick retries and pauses, a few connections, small batches."""
    values: dict[str, Any] = {
        "smtp_host": server.host,
        "smtp_port": server.port,
        "smtp_connections": 3,
        "send_batch_size": 8,
        "smtp_timeout": 5.0,
        "smtp_message_timeout": 10.0,
        "retry_base_seconds": 0.05,
        "smtp_slowdown_seconds": 0.01,
        "max_attempts": 12,
        "lease_seconds": 60,
    }
    values.update(overrides)
    return make_settings(database_url, **values)


def run(sessions: SessionFactory, settings: Settings, *, wait: bool = False) -> DeliverySummary:
    return deliver(sessions, settings=settings, edition=EDITION, workers=1, wait=wait)


def finish(sessions: SessionFactory, settings: Settings) -> DeliverySummary:
    """Run ``deliver`` until nothing is open, as a scheduler would: each later call
    picks up the retries that have come due since (``wait=True`` does this in one
    call, as the going-away test uses it)."""
    summaries = []
    deadline = time.monotonic() + 90
    while True:
        summaries.append(run(sessions, settings))
        due = next_due(sessions)
        if due is None:
            return total(summaries)
        assert time.monotonic() < deadline, status_counts(sessions)
        time.sleep(min(max(due, 0.01), 2.0))


def next_due(sessions: SessionFactory) -> float | None:
    """Seconds until the first open delivery is due again (None: nothing is open)."""
    with sessions() as session:
        rows = session.execute(
            select(Delivery.status, Delivery.next_attempt_at, Delivery.lease_until).where(
                Delivery.status.in_(OPEN)
            )
        ).all()
    if not rows:
        return None
    now = utcnow()
    moments = [lease if status == DeliveryStatus.CLAIMED else due for status, due, lease in rows]
    return min((m - now).total_seconds() if m is not None else 0.0 for m in moments)


def attributed_faults(server: FaultyServer, email: str) -> int:
    """Failed transactions the server can pin on one recipient (RCPT and DATA stage)."""
    failed = ("temporary", "drop_before_data", "drop_during_data", "slow", "accepted_no_reply")
    return sum(1 for e in server.log if e.rcpt == email and e.outcome in failed)


def assert_attempts_cover_the_faults(sessions: SessionFactory, server: FaultyServer) -> None:
    """Every transaction that failed at the server cost its delivery an attempt."""
    for email, row in snapshot(sessions).items():
        if row.status == DeliveryStatus.SENT:
            assert row.attempts >= 1 + attributed_faults(server, email), (row, server.log)


# --------------------------------------------------------------------------- 4xx


@pytest.mark.parametrize("seed", [3, 11])
def test_random_temporary_replies_at_mail_rcpt_and_data_are_retried_until_sent(
    sessions: SessionFactory, database_url: str, daily_file: Path, seed: int
) -> None:
    plan_readers(sessions, daily_file, 36)
    faults = Faults(seed=seed, temporary={"MAIL": 0.1, "RCPT": 0.2, "DATA": 0.2})
    with FaultyServer(faults) as server:
        summary = finish(sessions, settings_for(database_url, server))
        result = audit(sessions, server, summaries=[summary])

    temporary = [e for e in server.log if e.outcome == "temporary"]
    # The faults really happened, at every stage and with every code.
    assert {e.stage for e in temporary} == {"MAIL", "RCPT", "DATA"}
    assert {e.code for e in temporary} == TEMPORARY_CODES
    assert summary.retried >= len([e for e in temporary if e.stage != "MAIL"])
    assert result.duplicates == {}
    assert len(result.sent) == 36
    assert_attempts_cover_the_faults(sessions, server)


# --------------------------------------------------------------------------- 5xx


def test_permanent_refusals_are_bounced_suppressed_and_never_tried_again(
    sessions: SessionFactory, database_url: str, daily_file: Path
) -> None:
    plan_readers(sessions, daily_file, 30)
    at_rcpt = {reader(n): "550 5.1.1 No such user here" for n in (1, 7, 12)}
    at_data = {reader(n): "554 5.7.1 Message refused" for n in (4, 20)}
    listed = reader(25)
    with sessions.begin() as session:
        # Suppressed after planning (a complaint came in): never sent, never contacted.
        session.add(Suppression(email=listed, reason="complaint"))
    faults = Faults(
        seed=5, temporary={"RCPT": 0.2, "DATA": 0.2}, permanent_rcpt=at_rcpt, permanent_data=at_data
    )
    with FaultyServer(faults) as server:
        settings = settings_for(database_url, server)
        first = finish(sessions, settings)
        audit(
            sessions,
            server,
            bounced=set(at_rcpt) | set(at_data),
            suppressed={listed},
            summaries=[first],
        )
        assert all(e.rcpt != listed for e in server.log)
        assert {r for r, _ in first.failures} >= set(at_rcpt) | set(at_data)

        # Running again sends nothing and changes nothing.
        before = snapshot(sessions)
        received = server.received
        again = run(sessions, settings)
        assert (again.sent, again.bounced, again.retried, again.failed) == (0, 0, 0, 0)
        assert server.received == received
        assert snapshot(sessions) == before

    rows = snapshot(sessions)
    for email, reply in {**at_rcpt, **at_data}.items():
        assert rows[email].last_smtp_code == int(reply[:3])
        assert rows[email].subscriber_status == SubscriberStatus.BOUNCED


def test_bounce_limit_above_one_bounces_the_delivery_but_keeps_the_subscriber(
    sessions: SessionFactory, database_url: str, daily_file: Path
) -> None:
    plan_readers(sessions, daily_file, 12)
    refused = reader(3)
    faults = Faults(permanent_rcpt={refused: "550 5.1.1 No such user here"})
    with FaultyServer(faults) as server:
        summary = finish(sessions, settings_for(database_url, server, bounce_limit=2))
        received = server.accepted_by_recipient()
    rows = snapshot(sessions)
    assert summary.bounced == 1
    assert summary.sent == 11
    assert rows[refused].status == DeliveryStatus.BOUNCED
    assert rows[refused].last_smtp_code == 550
    # One hard bounce of two allowed: not suppressed yet, still subscribed.
    assert rows[refused].subscriber_status == SubscriberStatus.ACTIVE
    with sessions() as session:
        assert session.get(Suppression, refused) is None
    assert refused not in received
    assert all(len(ids) == 1 for ids in received.values())


# --------------------------------------------------------------------------- hang-ups


def test_hang_ups_before_and_during_data_are_retried_without_any_duplicate(
    sessions: SessionFactory, database_url: str, daily_file: Path
) -> None:
    plan_readers(sessions, daily_file, 30)
    before = {reader(n) for n in (0, 5, 9, 17, 28)}
    during = {reader(n) for n in (2, 6, 13, 21, 29)}
    faults = Faults(drop_before_data=before, drop_during_data=during, faulty_attempts=2)
    with FaultyServer(faults) as server:
        summary = finish(sessions, settings_for(database_url, server))
        result = audit(sessions, server, summaries=[summary])

    outcomes = server.outcomes()
    assert outcomes["drop_before_data"] == 2 * len(before)
    assert outcomes["drop_during_data"] == 2 * len(during)
    # The server never kept a message it did not acknowledge: no resend at all.
    assert server.unacknowledged_ids() == {}
    assert result.duplicates == {}
    rows = snapshot(sessions)
    for email in before | during:
        assert rows[email].attempts >= 3, rows[email]
    assert_attempts_cover_the_faults(sessions, server)


def test_hang_up_after_data_was_accepted_is_the_only_resend(
    sessions: SessionFactory, database_url: str, daily_file: Path
) -> None:
    plan_readers(sessions, daily_file, 30)
    lost_reply = {reader(n) for n in (3, 8, 19, 26)}
    during = {reader(n) for n in (4, 11, 22)}
    faults = Faults(drop_after_data=lost_reply, drop_during_data=during, faulty_attempts=1)
    with FaultyServer(faults) as server:
        summary = finish(sessions, settings_for(database_url, server))
        result = audit(sessions, server, summaries=[summary])
        unacknowledged = server.unacknowledged_ids()

    rows = snapshot(sessions)
    expected = {rows[email].message_id for email in lost_reply}
    # Exactly the messages whose reply was lost came twice, recognisably the same.
    assert set(unacknowledged) == expected
    assert result.duplicates == dict.fromkeys(expected, 1)
    assert summary.sent == 30
    assert summary.retried >= len(lost_reply) + len(during)


# --------------------------------------------------------------------------- slow replies


@pytest.mark.parametrize(
    "timeouts",
    [
        pytest.param({"smtp_timeout": 0.5}, id="per-operation"),
        pytest.param({"smtp_timeout": 5.0, "smtp_message_timeout": 0.6}, id="per-message"),
    ],
)
def test_replies_slower_than_the_timeout_are_given_up_and_retried(
    sessions: SessionFactory, database_url: str, daily_file: Path, timeouts: dict[str, float]
) -> None:
    plan_readers(sessions, daily_file, 18)
    slow_rcpt = {reader(n) for n in (1, 10)}
    slow_data = {reader(n) for n in (4, 15)}
    faults = Faults(slow_rcpt=slow_rcpt, slow_data=slow_data, slow_seconds=4.0, faulty_attempts=1)
    with FaultyServer(faults) as server:
        summary = finish(sessions, settings_for(database_url, server, **timeouts))
        result = audit(sessions, server, summaries=[summary])

    slow = [e for e in server.log if e.outcome == "slow"]
    assert sorted(e.rcpt or "" for e in slow) == sorted(slow_rcpt | slow_data)
    # The client hung up before the slow replies came, so the server kept nothing
    # it was too slow to acknowledge: each reader has one copy.
    assert result.duplicates == {}
    rows = snapshot(sessions)
    for email in slow_rcpt | slow_data:
        assert rows[email].attempts == 2, rows[email]


# --------------------------------------------------------------------------- going away


def test_relay_that_goes_away_mid_edition_and_comes_back_on_the_same_port(
    sessions: SessionFactory, database_url: str, daily_file: Path
) -> None:
    plan_readers(sessions, daily_file, 40)
    faults = Faults(data_delay=0.005, vanish_after=12)
    with FaultyServer(faults) as server:
        port = server.port
        # wait=True below sleeps until the worker's own leases run out: keep them short.
        settings = settings_for(database_url, server, lease_seconds=2)
        with pytest.raises(SmtpUnavailable):
            run(sessions, settings)
        assert server.vanished.is_set()
        # What the relay accepted before it went is recorded as sent, nothing is
        # left claimed, and the rest waits.
        rows = snapshot(sessions)
        sent = {e for e, r in rows.items() if r.status == DeliveryStatus.SENT}
        assert sent == set(server.accepted_by_recipient())
        assert len(sent) == 12
        assert all(r.lease_owner is None for r in rows.values())
        assert {r.status for e, r in rows.items() if e not in sent} <= {
            DeliveryStatus.PENDING,
            DeliveryStatus.RETRY,
        }
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection((server.host, port), timeout=2),
        ):
            pass

        server.come_back()
        assert server.port == port
        second = run(sessions, settings, wait=True)
        audit(sessions, server)
    assert second.sent == 40 - 12
    assert server.starts == 2


def test_relay_unreachable_from_the_start_leaves_everything_pending(
    sessions: SessionFactory, database_url: str, daily_file: Path
) -> None:
    plan_readers(sessions, daily_file, 10)
    server = FaultyServer()
    server.start()
    server.stop()  # a port that was just in use and now refuses
    try:
        settings = settings_for(database_url, server)
        with pytest.raises(SmtpUnavailable):
            run(sessions, settings)
        rows = snapshot(sessions)
        assert {r.status for r in rows.values()} == {DeliveryStatus.PENDING}
        assert {r.attempts for r in rows.values()} == {0}
        assert all(r.lease_owner is None for r in rows.values())

        server.start()  # back on the same port
        summary = finish(sessions, settings)
        audit(sessions, server, summaries=[summary])
    finally:
        server.stop()


# --------------------------------------------------------------------------- all at once


@pytest.mark.parametrize("seed", [1])
def test_every_fault_at_once_still_sends_each_reader_exactly_one_issue(
    sessions: SessionFactory, database_url: str, daily_file: Path, seed: int
) -> None:
    """Random 4xx everywhere, 5xx, hang-ups of every kind and slow replies together."""
    count = 60
    plan_readers(sessions, daily_file, count)
    rng = random.Random(seed)
    picked = rng.sample(range(count), 22)
    pick = iter(picked)

    def some(n: int) -> set[str]:
        return {reader(next(pick)) for _ in range(n)}

    at_rcpt, at_data = some(3), some(2)
    before, during, after = some(3), some(3), some(3)
    slow_rcpt, slow_data = some(2), some(2)
    listed, unsubscribed = some(1), some(1)
    with sessions.begin() as session:
        for email in listed:
            session.add(Suppression(email=email, reason="complaint"))
        session.execute(
            update(Subscriber)
            .where(Subscriber.email.in_(unsubscribed))
            .values(status=SubscriberStatus.UNSUBSCRIBED)
        )
    faults = Faults(
        seed=seed,
        temporary={"MAIL": 0.08, "RCPT": 0.15, "DATA": 0.15},
        permanent_rcpt=dict.fromkeys(at_rcpt, "550 5.1.1 No such user here"),
        permanent_data=dict.fromkeys(at_data, "552 5.2.2 Mailbox full for good"),
        drop_before_data=before,
        drop_during_data=during,
        drop_after_data=after,
        slow_rcpt=slow_rcpt,
        slow_data=slow_data,
        slow_seconds=4.0,
        faulty_attempts=2,
    )
    with FaultyServer(faults) as server:
        settings = settings_for(database_url, server, smtp_connections=4, smtp_timeout=1.0)
        summary = finish(sessions, settings)
        result = audit(
            sessions,
            server,
            bounced=at_rcpt | at_data,
            suppressed=listed | unsubscribed,
            summaries=[summary],
        )

    rows = snapshot(sessions)
    assert set(result.duplicates) <= {rows[e].message_id for e in after}
    assert len(result.sent) == count - 5 - 2
    outcomes = server.outcomes()
    for outcome in ("temporary", "permanent", "drop_before_data", "drop_during_data", "slow"):
        assert outcomes[outcome] > 0, outcomes
    assert 0 < outcomes["accepted_no_reply"] <= 2 * len(after)
    assert_attempts_cover_the_faults(sessions, server)
    assert status_counts(sessions)[DeliveryStatus.SENT] == len(result.sent)
    with sessions() as session:
        for email in unsubscribed:
            subscriber = session.query(Subscriber).filter_by(email=email).one()
            assert subscriber.status == SubscriberStatus.UNSUBSCRIBED
            delivery = session.query(Delivery).filter_by(subscriber_id=subscriber.id).one()
            assert delivery.attempts == 0
