"""An edition's stored status follows its deliveries across runs.

Subscribers who join after an edition went out are planned into it later; the next
run sends to them. While that run has work left (here: a greylisted newcomer), the
edition is "sending" in the database too (it stayed "sent" before, and only
``newsletter status`` corrected it on display); once all is settled it is "sent".
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from newsletter.db import SessionFactory
from newsletter.mail.faulty import FaultyServer
from newsletter.models import Delivery, DeliveryStatus, EditionStatus, utcnow
from tests.test_delivery import (
    add_subscriber,
    deliveries,
    edition_status,
    plan,
    populated,  # noqa: F401  (the fixture)
    send,
)

NEWCOMER = "erin@example.org"


def test_an_edition_planned_again_after_it_was_sent_is_sending_until_settled(
    populated: SessionFactory, database_url: str
) -> None:
    sessions = populated
    plan(sessions)
    with FaultyServer() as server:
        assert send(sessions, database_url, server).sent == 5
    assert edition_status(sessions) == EditionStatus.SENT

    with sessions.begin() as session:
        add_subscriber(session, NEWCOMER, "Erin Example", ["cs.CL"])
    plan(sessions)
    assert deliveries(sessions)[NEWCOMER].status == DeliveryStatus.PENDING

    with FaultyServer(rcpt_replies={NEWCOMER: "451 4.7.1 try again later"}) as server:
        summary = send(sessions, database_url, server)
    assert (summary.sent, summary.deferred) == (0, 1)
    assert deliveries(sessions)[NEWCOMER].status == DeliveryStatus.RETRY
    assert edition_status(sessions) == EditionStatus.SENDING

    with sessions.begin() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.status == DeliveryStatus.RETRY)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
    with FaultyServer() as server:
        assert send(sessions, database_url, server).sent == 1
    assert edition_status(sessions) == EditionStatus.SENT
