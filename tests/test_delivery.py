"""Sending an edition end to end: real databases, real SMTP servers (no mocks), real templates.

Every test that uses ``sessions`` runs on SQLite and on PostgreSQL. The edition is
the real arXiv listing of 2026-05-27; the SMTP side is a ``FaultyServer`` that can
reject recipients, reject DATA or drop the connection.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from newsletter.db import SessionFactory
from newsletter.delivery.outbox import claim_batch
from newsletter.delivery.outcomes import DeliverySummary
from newsletter.delivery.run import deliver
from newsletter.errors import SmtpUnavailable, TemplateError
from newsletter.mail.capture import CapturedMessage
from newsletter.mail.faulty import FaultyServer
from newsletter.mail.latex import readable
from newsletter.mail.message import MessageHeaders, build_message
from newsletter.mail.render import RenderedIssue, Renderer
from newsletter.mail.view import SUBJECT_LIMIT, cut_words
from newsletter.models import (
    Bounce,
    Delivery,
    DeliveryItem,
    DeliveryStatus,
    Edition,
    EditionStatus,
    Interest,
    Paper,
    Subscriber,
    SubscriberStatus,
    Suppression,
    utcnow,
)
from newsletter.papers.catalogue import load_catalogue
from newsletter.papers.ingest import ingest_file
from newsletter.planning.editions import PlanOptions, plan_edition
from newsletter.resources import resource_path
from newsletter.settings import Settings
from newsletter.subscribers.roster import build_input, upsert_subscriber
from tests.conftest import make_settings

EDITION = date(2026, 5, 27)
SENDER_ADDRESS = "newsletter@example.org"  # the default sender of config/newsletter.toml

# email -> (name, topics). Five subscribers and batches of two: three batches.
SUBSCRIBERS: dict[str, tuple[str, list[str]]] = {
    "alice@example.org": ("Alice Example", ["cs.CV"]),
    "bob@example.org": ("Bob Example", ["cs.CL"]),
    "carol@example.org": ("Carol Example", ["cs.RO"]),
    "dave@example.org": ("Dave Example", ["cs.CR"]),
    "juergen@example.org": ("Jürgen Müller", ["cs.LG"]),
}
EXPECTED_HEADERS = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
}


# --------------------------------------------------------------------------- helpers


def settings_for(database_url: str, server: FaultyServer | None, **overrides: Any) -> Settings:
    """Settings that send to ``server`` over two connections in batches of two."""
    values: dict[str, Any] = {
        "smtp_host": server.host if server else "127.0.0.1",
        "smtp_port": server.port if server else 25,
        "smtp_connections": 2,
        "send_batch_size": 2,
        "smtp_timeout": 5.0,
        "smtp_slowdown_seconds": 0.01,
    }
    values.update(overrides)
    return make_settings(database_url, **values)


def send(
    sessions: SessionFactory, database_url: str, server: FaultyServer, **kwargs: Any
) -> DeliverySummary:
    return deliver(
        sessions,
        settings=settings_for(database_url, server),
        edition=EDITION,
        workers=1,
        **kwargs,
    )


def free_port() -> int:
    """A port nothing listens on: bound to learn a free number, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def deliveries(sessions: SessionFactory) -> dict[str, Delivery]:
    """Every delivery of the edition, keyed by the subscriber's address."""
    with sessions() as session:
        rows = session.execute(
            select(Subscriber.email, Delivery)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .join(Edition, Edition.id == Delivery.edition_id)
            .where(Edition.date == EDITION)
        ).all()
        return {email: delivery for email, delivery in rows}


def edition_status(sessions: SessionFactory) -> EditionStatus:
    with sessions() as session:
        status = session.scalar(select(Edition.status).where(Edition.date == EDITION))
    assert status is not None
    return status


def set_delivery(sessions: SessionFactory, email: str, **values: Any) -> None:
    """Change one delivery's row directly, as another worker or time passing would."""
    with sessions.begin() as session:
        subscriber_id = select(Subscriber.id).where(Subscriber.email == email).scalar_subquery()
        result = session.execute(
            update(Delivery).where(Delivery.subscriber_id == subscriber_id).values(**values)
        )
        assert result.rowcount == 1  # type: ignore[attr-defined]


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def by_recipient(server: FaultyServer) -> dict[str, list[CapturedMessage]]:
    received: dict[str, list[CapturedMessage]] = {}
    for captured in server.messages:
        assert len(captured.rcpt_tos) == 1, captured.rcpt_tos
        received.setdefault(captured.rcpt_tos[0], []).append(captured)
    return received


def assert_nothing_claimed(rows: dict[str, Delivery]) -> None:
    for email, row in rows.items():
        assert row.status != DeliveryStatus.CLAIMED, email
        assert row.lease_owner is None, email
        assert row.lease_until is None, email


def add_subscriber(
    session: Any, email: str, name: str, topics: list[str], keywords: list[str] | None = None
) -> None:
    upsert_subscriber(
        session,
        build_input(
            load_catalogue(), email=email, name=name, topics=topics, keywords=keywords or []
        ),
    )


def broken_templates(tmp_path: Path, name: str, change: Callable[[str], str]) -> Path:
    """A copy of the shipped email templates with one file changed."""
    directory = tmp_path / "email"
    shutil.copytree(resource_path("templates") / "email", directory)
    path = directory / name
    path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")
    return directory


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def populated(sessions: SessionFactory, daily_file: Path) -> SessionFactory:
    """The day's papers ingested and the subscribers added (nothing planned yet)."""
    with sessions.begin() as session:
        summary = ingest_file(session, daily_file, today=EDITION)
        assert summary.new > 300
        for email, (name, topics) in SUBSCRIBERS.items():
            add_subscriber(session, email, name, topics)
    return sessions


def plan(sessions: SessionFactory) -> None:
    with sessions.begin() as session:
        summary = plan_edition(session, EDITION, options=PlanOptions())
    assert summary.nothing_new == 0


@dataclass(frozen=True)
class Planned:
    sessions: SessionFactory
    database_url: str
    emails: tuple[str, ...]


# Per database: email -> [(rank, arXiv id, score, terms)] as plan_edition wrote them.
PlanRows = dict[str, list[tuple[int, str, float, list[str]]]]


@pytest.fixture(scope="module")
def plan_cache() -> dict[str, PlanRows]:
    """Plans made once per database, so later tests replay them (ranking is slow-ish)."""
    return {}


def snapshot_plan(sessions: SessionFactory) -> PlanRows:
    rows: PlanRows = {}
    with sessions() as session:
        result = session.execute(
            select(Subscriber.email, DeliveryItem.rank, Paper.external_id)
            .add_columns(DeliveryItem.score, DeliveryItem.terms)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .join(DeliveryItem, DeliveryItem.delivery_id == Delivery.id)
            .join(Paper, Paper.id == DeliveryItem.paper_id)
            .order_by(Delivery.id, DeliveryItem.rank)
        )
        for email, rank, external_id, score, terms in result:
            rows.setdefault(email, []).append((rank, external_id, score, list(terms)))
    return rows


def replay_plan(sessions: SessionFactory, rows: PlanRows) -> None:
    """Write the deliveries plan_edition wrote for the same data, in the same order."""
    with sessions.begin() as session:
        edition = Edition(date=EDITION)
        session.add(edition)
        session.flush()
        papers = dict(session.execute(select(Paper.external_id, Paper.id)).all())
        subscribers = dict(session.execute(select(Subscriber.email, Subscriber.id)).all())
        for email, items in rows.items():
            session.add(
                Delivery(
                    edition_id=edition.id,
                    subscriber_id=subscribers[email],
                    items=[
                        DeliveryItem(
                            rank=rank, paper_id=papers[external_id], score=score, terms=terms
                        )
                        for rank, external_id, score, terms in items
                    ],
                )
            )
            session.flush()


@pytest.fixture
def planned(
    populated: SessionFactory, database_url: str, plan_cache: dict[str, PlanRows]
) -> Planned:
    """The edition planned: one pending delivery per subscriber."""
    cached = plan_cache.get(database_url)
    if cached is None:
        plan(populated)
        plan_cache[database_url] = snapshot_plan(populated)
    else:
        replay_plan(populated, cached)
    rows = deliveries(populated)
    assert set(rows) == set(SUBSCRIBERS)
    assert {r.status for r in rows.values()} == {DeliveryStatus.PENDING}
    return Planned(populated, database_url, tuple(SUBSCRIBERS))


# --------------------------------------------------------------------------- 1, 2: happy path


def test_every_delivery_is_sent_once_with_a_well_formed_message(planned: Planned) -> None:
    sessions = planned.sessions
    with sessions() as session:
        items = {  # titles as the issue shows them (LaTeX made readable, issue 15.1)
            email: [
                readable(title)
                for (title,) in session.execute(
                    select(Paper.title)
                    .join(DeliveryItem, DeliveryItem.paper_id == Paper.id)
                    .where(DeliveryItem.delivery_id == delivery.id)
                    .order_by(DeliveryItem.rank)
                )
            ]
            for email, delivery in deliveries(sessions).items()
        }
    before = utcnow()
    with FaultyServer() as server:
        summary = send(sessions, planned.database_url, server)
        received = by_recipient(server)
        assert server.sessions <= 2
    after = utcnow()

    assert (summary.sent, summary.failed, summary.deferred, summary.suppressed) == (5, 0, 0, 0)
    assert summary.failures == []
    assert sorted(received) == sorted(planned.emails)
    assert all(len(messages) == 1 for messages in received.values())

    rows = deliveries(sessions)
    message_ids = []
    for email, row in rows.items():
        (captured,) = received[email]
        assert captured.mail_from == SENDER_ADDRESS
        assert captured.rcpt_tos == [email]
        header_block = captured.data.split(b"\r\n\r\n", 1)[0]
        assert header_block.isascii()
        message = parse(captured.data)

        assert row.status == DeliveryStatus.SENT
        assert row.sent_at is not None
        assert before <= row.sent_at <= after
        assert row.attempts == 1
        assert row.last_smtp_code == 250
        assert row.lease_owner is None
        assert row.lease_until is None
        assert row.message_id == message["Message-ID"]
        message_ids.append(message["Message-ID"])

        # Exactly the expected headers, each once.
        assert sorted(message.keys()) == sorted(EXPECTED_HEADERS)
        assert message["From"].addresses[0].addr_spec == SENDER_ADDRESS
        (to,) = message["To"].addresses
        assert to.addr_spec == email
        assert to.display_name == SUBSCRIBERS[email][0]
        # Led by the top paper's title (issue 15.1), as readable text, cut at a word.
        assert message["Subject"] == cut_words(items[email][0], SUBJECT_LIMIT)
        assert message["Date"].datetime is not None
        assert before - timedelta(seconds=1) <= message["Date"].datetime <= after
        assert message["List-Id"] == "Paper Newsletter <newsletter.localhost>"

        unsubscribe = message["List-Unsubscribe"]
        assert "=?" not in unsubscribe
        assert unsubscribe.startswith("<http://localhost:8000/unsubscribe/")
        assert unsubscribe.endswith(">")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = unsubscribe[1:-1]

        assert message.get_content_type() == "multipart/alternative"
        parts = list(message.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        text = parts[0].get_content()
        html = parts[1].get_content()
        assert isinstance(text, str)
        assert isinstance(html, str)
        # The body is this subscriber's issue: their papers, in rank order, and their links.
        positions = [text.index(title) for title in items[email]]
        assert positions == sorted(positions)
        assert f"Unsubscribe: {url}" in text
        assert url in html
        assert email in text

    assert len(set(message_ids)) == len(message_ids) == 5
    assert edition_status(sessions) == EditionStatus.SENT


def test_rerun_sends_nothing_more(planned: Planned) -> None:
    sessions = planned.sessions
    with FaultyServer() as server:
        first = send(sessions, planned.database_url, server)
        assert first.sent == 5
        count = len(server.messages)
        rows_before = {
            email: (r.status, r.attempts, r.sent_at, r.message_id)
            for email, r in deliveries(sessions).items()
        }

        second = send(sessions, planned.database_url, server)

        assert len(server.messages) == count == 5
        assert server.data_commands == 5
    assert (second.sent, second.failed, second.deferred, second.suppressed) == (0, 0, 0, 0)
    rows_after = {
        email: (r.status, r.attempts, r.sent_at, r.message_id)
        for email, r in deliveries(sessions).items()
    }
    assert rows_after == rows_before
    assert edition_status(sessions) == EditionStatus.SENT


# --------------------------------------------------------------------------- 3, 4: rejections


def test_permanent_rejection_bounces_one_delivery_and_sends_the_rest(planned: Planned) -> None:
    sessions = planned.sessions
    code, reply = 550, "no such user"
    with FaultyServer(rcpt_replies={"bob@example.org": "550 5.1.1 no such user"}) as server:
        summary = send(sessions, planned.database_url, server)
        received = by_recipient(server)

    assert summary.bounced == 1
    assert summary.failed == 0
    assert summary.sent == 4
    assert summary.deferred == 0
    ((failed_to, failed_reply),) = summary.failures
    assert failed_to == "bob@example.org"
    assert failed_reply.startswith(str(code))
    assert reply in failed_reply
    assert sorted(received) == sorted(e for e in planned.emails if e != "bob@example.org")

    rows = deliveries(sessions)
    bob = rows.pop("bob@example.org")
    assert bob.status == DeliveryStatus.BOUNCED
    assert bob.last_smtp_code == code
    assert bob.last_smtp_reply is not None
    assert reply in bob.last_smtp_reply
    assert bob.attempts == 1
    assert bob.sent_at is None
    assert bob.lease_owner is None
    assert bob.lease_until is None
    assert {r.status for r in rows.values()} == {DeliveryStatus.SENT}
    # A 5xx is a hard bounce: the address is suppressed and its subscriber bounced.
    with sessions() as session:
        assert session.get(Suppression, "bob@example.org") is not None
        bob_subscriber = session.scalars(
            select(Subscriber).where(Subscriber.email == "bob@example.org")
        ).one()
        assert bob_subscriber.status == SubscriberStatus.BOUNCED
        (bounce,) = session.scalars(select(Bounce)).all()
        assert (bounce.email, bounce.code, bounce.source) == ("bob@example.org", 550, "smtp")
    # Nothing is left to do for this edition: a bounce is final.
    assert edition_status(sessions) == EditionStatus.SENT


def test_temporary_rejection_is_retried_after_its_backoff(planned: Planned) -> None:
    sessions = planned.sessions
    url = planned.database_url
    # Dave's delivery has already been deferred seven times: the eighth failure is final.
    set_delivery(sessions, "dave@example.org", attempts=7)
    faults = {
        "carol@example.org": "451 4.7.1 try again later",
        "dave@example.org": "451 4.7.1 still greylisted",
    }
    with FaultyServer(rcpt_replies=faults) as server:
        started = utcnow()
        first = send(sessions, url, server)
        assert (first.sent, first.failed, first.deferred) == (3, 1, 1)
        assert first.failures == [("dave@example.org", "451 4.7.1 still greylisted")]
        dave = deliveries(sessions)["dave@example.org"]
        assert dave.status == DeliveryStatus.FAILED
        assert dave.attempts == 8
        assert dave.last_smtp_code == 451
        carol = deliveries(sessions)["carol@example.org"]
        assert carol.status == DeliveryStatus.RETRY
        assert carol.attempts == 1
        assert carol.last_smtp_code == 451
        assert carol.last_smtp_reply is not None
        assert "try again later" in carol.last_smtp_reply
        assert carol.lease_owner is None
        assert carol.lease_until is None
        assert carol.sent_at is None
        assert carol.next_attempt_at is not None
        # backoff(1) is five minutes give or take 20 %.
        assert started + timedelta(minutes=3) < carol.next_attempt_at
        assert carol.next_attempt_at < utcnow() + timedelta(minutes=7)
        assert edition_status(sessions) == EditionStatus.SENDING

        # A second run right away leaves the deferred delivery alone.
        second = send(sessions, url, server)
        assert (second.sent, second.failed, second.deferred) == (0, 0, 0)
        assert server.data_commands == 3
        assert "carol@example.org" not in by_recipient(server)
        assert deliveries(sessions)["carol@example.org"].attempts == 1

    # Time passes and the relay recovers.
    set_delivery(sessions, "carol@example.org", next_attempt_at=utcnow() - timedelta(seconds=1))
    with FaultyServer() as recovered:
        third = send(sessions, url, recovered)
        assert [m.rcpt_tos for m in recovered.messages] == [["carol@example.org"]]
    assert (third.sent, third.failed, third.deferred) == (1, 0, 0)
    carol = deliveries(sessions)["carol@example.org"]
    assert carol.status == DeliveryStatus.SENT
    assert carol.attempts == 2
    assert carol.last_smtp_code == 250
    assert deliveries(sessions)["dave@example.org"].status == DeliveryStatus.FAILED
    assert edition_status(sessions) == EditionStatus.SENT


# --------------------------------------------------------------------------- 5, 6: outages


def test_unreachable_server_raises_and_leaves_every_delivery_pending(planned: Planned) -> None:
    sessions = planned.sessions
    port = free_port()
    settings = settings_for(planned.database_url, None, smtp_port=port)

    with pytest.raises(SmtpUnavailable, match=f"127.0.0.1:{port}"):
        deliver(sessions, settings=settings, edition=EDITION, workers=1)

    rows = deliveries(sessions)
    assert_nothing_claimed(rows)
    for email, row in rows.items():
        assert row.status == DeliveryStatus.PENDING, email
        assert row.attempts == 0, email
        assert row.next_attempt_at is None, email
        assert row.sent_at is None, email
    assert edition_status(sessions) != EditionStatus.SENT


class VanishingServer(FaultyServer):
    """Accepts ``accept`` messages, then goes away: stops listening and drops every
    connection at its next command, as a relay does when it is shut down."""

    def __init__(self, accept: int) -> None:
        super().__init__()
        self.accept = accept

    async def handle_MAIL(
        self,
        server: Any,
        session: Any,
        envelope: Any,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.received >= self.accept:
            controller = self._controller
            if controller is not None and controller.server is not None:
                controller.server.close()  # no new connections
            if server.transport is not None:
                server.transport.close()
            return "421 4.3.2 shutting down"
        return await super().handle_MAIL(server, session, envelope, address, mail_options)


def test_relay_vanishing_mid_edition_loses_nothing(planned: Planned) -> None:
    """The relay goes away after a message; the rest waits for the next run."""
    sessions = planned.sessions
    with VanishingServer(accept=1) as server:
        with pytest.raises(SmtpUnavailable, match=f"127.0.0.1:{server.port}"):
            send(sessions, planned.database_url, server)
        received = by_recipient(server)

    rows = deliveries(sessions)
    assert_nothing_claimed(rows)
    sent = {email for email, row in rows.items() if row.status == DeliveryStatus.SENT}
    assert sent == set(received)
    # Two connections: one may have passed MAIL just before the relay went away.
    assert len(sent) in (1, 2)
    for email, row in rows.items():
        if email not in sent:
            assert row.status in (DeliveryStatus.PENDING, DeliveryStatus.RETRY), email
            assert row.attempts <= 1, email
    assert edition_status(sessions) == EditionStatus.SENDING

    # Everything still pending goes out once the relay is back (and the backoff is over).
    with sessions.begin() as session:
        session.execute(update(Delivery).values(next_attempt_at=None))
    with FaultyServer() as recovered:
        summary = send(sessions, planned.database_url, recovered)
        resent = by_recipient(recovered)
    assert summary.sent == len(planned.emails) - len(sent)
    assert sorted(resent) == sorted(set(planned.emails) - sent)
    assert edition_status(sessions) == EditionStatus.SENT


def test_connection_dropped_during_data_is_retried_not_lost(planned: Planned) -> None:
    sessions = planned.sessions
    with FaultyServer(drop_on_data={1}) as server:
        summary = send(sessions, planned.database_url, server)
        received = by_recipient(server)
        assert server.data_commands == 5

    assert (summary.sent, summary.failed, summary.deferred) == (4, 0, 1)
    rows = deliveries(sessions)
    assert_nothing_claimed(rows)
    (dropped,) = [email for email, row in rows.items() if row.status != DeliveryStatus.SENT]
    assert sorted(received) == sorted(e for e in planned.emails if e != dropped)
    row = rows[dropped]
    # The server never accepted it: it must not be marked sent, and must not be lost.
    assert row.status == DeliveryStatus.RETRY
    assert row.attempts == 1
    assert row.last_smtp_code is None
    assert row.sent_at is None
    assert row.next_attempt_at is not None
    assert row.next_attempt_at > utcnow()
    assert edition_status(sessions) == EditionStatus.SENDING

    set_delivery(sessions, dropped, next_attempt_at=utcnow() - timedelta(seconds=1))
    with FaultyServer() as recovered:
        retry = send(sessions, planned.database_url, recovered)
        assert [m.rcpt_tos for m in recovered.messages] == [[dropped]]
    assert retry.sent == 1
    # The retry carries the same Message-ID, so a receiver can recognise a duplicate.
    assert deliveries(sessions)[dropped].message_id == row.message_id
    assert edition_status(sessions) == EditionStatus.SENT


# --------------------------------------------------------------------------- 7: templates


def test_template_that_does_not_compile_stops_before_anything_is_claimed(
    planned: Planned, tmp_path: Path
) -> None:
    directory = broken_templates(
        tmp_path, "issue.mjml", lambda source: source.replace("</mj-body>", "")
    )
    sessions = planned.sessions
    with FaultyServer() as server:
        with pytest.raises(TemplateError, match=r"issue\.mjml") as caught:
            send(sessions, planned.database_url, server, renderer=Renderer(directory))
        assert server.messages == []
        assert server.sessions == 0
    assert str(directory / "issue.mjml") in str(caught.value)

    rows = deliveries(sessions)
    assert_nothing_claimed(rows)
    assert {r.status for r in rows.values()} == {DeliveryStatus.PENDING}
    assert {r.attempts for r in rows.values()} == {0}
    assert edition_status(sessions) == EditionStatus.PLANNED


def test_template_with_an_undefined_variable_leaves_nothing_claimed_or_sent(
    planned: Planned, tmp_path: Path
) -> None:
    # issue.txt is rendered last: the subject and HTML of the first issue already worked.
    name = "issue.txt"
    directory = broken_templates(
        tmp_path,
        name,
        lambda source: source.replace("{{ edition_label }}", "{{ edition_label }} {{ nope }}"),
    )
    sessions = planned.sessions
    with FaultyServer() as server:
        with pytest.raises(TemplateError, match="nope") as caught:
            send(sessions, planned.database_url, server, renderer=Renderer(directory))
        assert server.messages == []
        assert server.data_commands == 0
    assert name in str(caught.value)

    rows = deliveries(sessions)
    assert_nothing_claimed(rows)
    assert {r.status for r in rows.values()} == {DeliveryStatus.PENDING}
    assert {r.attempts for r in rows.values()} == {0}
    assert edition_status(sessions) != EditionStatus.SENT


# --------------------------------------------------------------------------- 8, 9: state


def test_suppressed_and_unsubscribed_at_send_time_get_nothing(planned: Planned) -> None:
    sessions = planned.sessions
    with sessions.begin() as session:
        session.add(Suppression(email="alice@example.org", reason="complaint"))
        dave = session.scalars(select(Subscriber).where(Subscriber.email == "dave@example.org"))
        dave.one().status = SubscriberStatus.UNSUBSCRIBED

    with FaultyServer() as server:
        summary = send(sessions, planned.database_url, server)
        received = by_recipient(server)

    assert (summary.sent, summary.suppressed, summary.failed) == (3, 2, 0)
    assert sorted(received) == ["bob@example.org", "carol@example.org", "juergen@example.org"]
    rows = deliveries(sessions)
    assert_nothing_claimed(rows)
    for email in ("alice@example.org", "dave@example.org"):
        assert rows[email].status == DeliveryStatus.SUPPRESSED
        assert rows[email].sent_at is None
        assert rows[email].attempts == 0
    assert edition_status(sessions) == EditionStatus.SENT


def test_expired_lease_is_reclaimed_and_a_live_one_is_left_alone(planned: Planned) -> None:
    sessions = planned.sessions
    now = utcnow()
    live_until = now + timedelta(minutes=10)
    set_delivery(
        sessions,
        "alice@example.org",
        status=DeliveryStatus.CLAIMED,
        lease_owner="dead-worker:1",
        lease_until=now - timedelta(minutes=1),
    )
    set_delivery(
        sessions,
        "bob@example.org",
        status=DeliveryStatus.CLAIMED,
        lease_owner="busy-worker:2",
        lease_until=live_until,
    )

    with FaultyServer() as server:
        summary = send(sessions, planned.database_url, server)
        received = by_recipient(server)

    assert summary.sent == 4
    assert "alice@example.org" in received
    assert "bob@example.org" not in received
    rows = deliveries(sessions)
    alice, bob = rows["alice@example.org"], rows["bob@example.org"]
    assert alice.status == DeliveryStatus.SENT
    assert alice.lease_owner is None
    assert alice.lease_until is None
    assert bob.status == DeliveryStatus.CLAIMED
    assert bob.lease_owner == "busy-worker:2"
    assert bob.lease_until == live_until
    assert bob.attempts == 0
    assert bob.sent_at is None
    # The live claim is another sender's work in progress: the edition is not done.
    assert edition_status(sessions) == EditionStatus.SENDING


def test_concurrent_claims_never_hand_out_the_same_delivery(planned: Planned) -> None:
    """Two senders claiming at the same moment must get disjoint batches.

    The first claim is held open (not committed) while a second sender claims; the
    first then commits. Whoever claims second must not be handed the first one's rows.
    """
    sessions = planned.sessions
    with sessions() as session:
        edition_id = session.scalar(select(Edition.id).where(Edition.date == EDITION))
    assert edition_id is not None
    lease = timedelta(minutes=10)
    second: list[int] = []
    errors: list[BaseException] = []

    def claim_second() -> None:
        try:
            with sessions.begin() as session:
                second.extend(
                    claim_batch(
                        session,
                        edition_id=edition_id,
                        owner="second",
                        now=utcnow(),
                        lease=lease,
                        limit=2,
                    )
                )
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    with sessions.begin() as session:
        first = claim_batch(
            session, edition_id=edition_id, owner="first", now=utcnow(), lease=lease, limit=2
        )
        assert len(first) == 2
        thread = threading.Thread(target=claim_second)
        thread.start()
        thread.join(timeout=0.5)  # the second sender is now reading, or waiting on a lock
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert errors == []
    assert len(second) == 2
    assert set(first).isdisjoint(second), (first, second)
    with sessions() as session:
        owners = dict(
            session.execute(
                select(Delivery.id, Delivery.lease_owner).where(Delivery.id.in_(first))
            ).all()
        )
    assert owners == dict.fromkeys(first, "first")


# --------------------------------------------------------------------------- 10: injection


def test_non_ascii_names_and_header_injection_in_paper_titles_are_harmless(
    sessions: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    feed = tmp_path / "2026-05-27-extra.jsonl"
    evil = {
        "id": "2605.99901v1",
        "title": "Evil\r\nBcc: victim@example.org",
        "summary": "Zebrafish quasar telemetry. " * 5,
        "authors": ["Mallory Injector"],
        "categories": ["cs.CV"],
    }
    decoy = {
        "id": "2605.99902v1",
        "title": "Notes on aquaria",
        "summary": "We keep zebrafish and watch a quasar, among many other unrelated topics "
        "such as graphs, compilers, networks, proofs, databases and robots.",
        "authors": ["Dee Coy"],
        "categories": ["cs.CV"],
    }
    feed.write_text(json.dumps(evil) + "\n" + json.dumps(decoy) + "\n", encoding="utf-8")
    with sessions.begin() as session:
        assert ingest_file(session, feed, today=EDITION).new == 2
        paper = session.scalars(select(Paper).where(Paper.external_id == "2605.99901")).one()
        assert paper.title == "Evil Bcc: victim@example.org"  # ingest keeps one line
        add_subscriber(session, "zoe@example.org", "Zoë Ñandú", [], ["zebrafish quasar"])
        add_subscriber(session, "juergen@example.org", "Jürgen Müller", [], ["quasar telemetry"])
    plan(sessions)
    with sessions() as session:
        tops = session.execute(
            select(Subscriber.email, Paper.external_id)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .join(DeliveryItem, DeliveryItem.delivery_id == Delivery.id)
            .join(Paper, Paper.id == DeliveryItem.paper_id)
            .where(DeliveryItem.rank == 0)
        ).all()
    assert sorted(tops) == [
        ("juergen@example.org", "2605.99901"),
        ("zoe@example.org", "2605.99901"),
    ]

    with FaultyServer() as server:
        first = send(sessions, database_url, server)
        assert first.sent == 2
        (juergen,) = by_recipient(server)["juergen@example.org"]
        (zoe,) = by_recipient(server)["zoe@example.org"]

        message = parse(juergen.data)
        (to,) = message["To"].addresses
        assert to.display_name == "Jürgen Müller"
        assert to.addr_spec == "juergen@example.org"
        assert message["Subject"].startswith("Evil Bcc: victim@example.org")  # one line
        assert zoe.rcpt_tos == ["zoe@example.org"]
        assert parse(zoe.data)["To"].addresses[0].display_name == "Zoë Ñandú"

        # Another source could store raw line breaks, and a name could be written past
        # the validation of build_input: the message layer must cope on its own.
        with sessions.begin() as session:
            session.execute(
                update(Paper)
                .where(Paper.external_id == "2605.99901")
                .values(title="Evil\r\nBcc: victim@example.org\r\n\r\nbody")
            )
            session.execute(
                update(Subscriber)
                .where(Subscriber.email == "zoe@example.org")
                .values(name="Zoë\r\nBcc: victim@example.org Ñandú")
            )
            session.execute(update(Delivery).values(status=DeliveryStatus.PENDING))
        second = send(sessions, database_url, server)
        assert second.sent == 2
        messages = server.messages

    assert len(messages) == 4
    assert [m.rcpt_tos for m in messages if "victim@example.org" in m.rcpt_tos] == []
    for captured in messages:
        assert captured.data.split(b"\r\n\r\n", 1)[0].isascii()
        message = parse(captured.data)
        assert sorted(message.keys()) == sorted(EXPECTED_HEADERS)
        assert "Bcc" not in message
        assert message.defects == []
        assert "\n" not in message["Subject"]
        assert "\n" not in str(message["To"])

    last = {m.rcpt_tos[0]: parse(m.data) for m in messages[2:]}
    assert "Evil Bcc: victim@example.org body" in last["zoe@example.org"]["Subject"]
    (to,) = last["zoe@example.org"]["To"].addresses
    assert to.display_name == "Zoë Bcc: victim@example.org Ñandú"
    assert to.addr_spec == "zoe@example.org"


def _headers(**changes: str) -> MessageHeaders:
    values: dict[str, Any] = {
        "sender": "Paper Newsletter <newsletter@example.org>",
        "to_address": "reader@example.org",
        "to_name": "Jürgen Müller",
        "message_id": "<issue-20260527-1@example.org>",
        "list_id": "papers.example.org",
        "list_name": "Paper Newsletter",
        "unsubscribe_url": "https://papers.example.org/unsubscribe/abc.def",
        "date": datetime(2026, 5, 27, 7, 0, tzinfo=UTC),
    }
    values.update(changes)
    return MessageHeaders(**values)


def test_build_message_keeps_injected_line_breaks_out_of_the_headers() -> None:
    rendered = RenderedIssue(
        subject="Today\r\nBcc: x@example.org",
        html="<p>Hello</p>",
        text="Hello\r\nBcc: y@example.org\r\n",
    )
    data = build_message(
        rendered,
        _headers(to_name="Eve\r\nBcc: z@example.org", list_name="List\nBcc: w@example.org"),
    )
    assert data.split(b"\r\n\r\n", 1)[0].isascii()
    message = parse(data)
    assert sorted(message.keys()) == sorted(EXPECTED_HEADERS)
    assert "Bcc" not in message
    assert message["Subject"] == "Today Bcc: x@example.org"
    assert message["To"].addresses[0].display_name == "Eve Bcc: z@example.org"
    assert message["To"].addresses[0].addr_spec == "reader@example.org"
    assert message["List-Id"] == "List Bcc: w@example.org <papers.example.org>"
    assert message["List-Unsubscribe"] == "<https://papers.example.org/unsubscribe/abc.def>"


def test_build_message_refuses_an_unsubscribe_url_with_a_line_break() -> None:
    rendered = RenderedIssue(subject="Today", html="<p>Hello</p>", text="Hello\n")
    with pytest.raises(ValueError, match="URL not safe"):
        build_message(
            rendered,
            _headers(unsubscribe_url="https://papers.example.org/u\r\nBcc: x@example.org"),
        )


# --------------------------------------------------------------------------- addresses


INTERNATIONAL = {"idn@bücher.de": "idn@xn--bcher-kva.de", "üser@example.org": "üser@example.org"}


@pytest.fixture
def international(populated: SessionFactory) -> SessionFactory:
    """The five readers plus two at internationalised addresses, and one whose stored
    domain has no ASCII form (as an old import could leave it), all planned."""
    with populated.begin() as session:
        for address in INTERNATIONAL:
            add_subscriber(session, address, "Ünïcode Reader", ["cs.CL"])
        session.add(
            Subscriber(
                email="broken@bü_cher.de",
                status=SubscriberStatus.ACTIVE,
                interests=[Interest(topic_id="cs.CL")],
            )
        )
    plan(populated)
    return populated


@pytest.mark.parametrize("smtputf8", [False, True], ids=["relay-without-smtputf8", "smtputf8"])
def test_internationalised_addresses_are_sent_or_fail_alone(
    international: SessionFactory, database_url: str, smtputf8: bool
) -> None:
    with FaultyServer(smtputf8=smtputf8) as server:
        summary = send(international, database_url, server)
        received = by_recipient(server)

    rows = deliveries(international)
    # The domain goes out in its ASCII form, to any relay, in the envelope and in To.
    [idn] = received["idn@xn--bcher-kva.de"]
    assert parse(idn.data)["To"].addresses[0].addr_spec == "idn@xn--bcher-kva.de"
    assert rows["idn@bücher.de"].status == DeliveryStatus.SENT
    # A non-ASCII local part needs SMTPUTF8: sent with it, or failed alone with why.
    user = rows["üser@example.org"]
    if smtputf8:
        [message] = received["üser@example.org"]
        assert "SMTPUTF8" in message.mail_options
        # RFC 6532: the header carries the address as UTF-8.
        utf8 = Parser(policy=policy.default).parsestr(message.data.decode("utf-8"))
        assert utf8["To"].addresses[0].addr_spec == "üser@example.org"
        assert user.status == DeliveryStatus.SENT
    else:
        assert "üser@example.org" not in received
        assert user.status == DeliveryStatus.FAILED
        assert "SMTPUTF8" in (user.last_smtp_reply or "")
    # An address that cannot be written at all fails alone, with the reason.
    broken = rows["broken@bü_cher.de"]
    assert broken.status == DeliveryStatus.FAILED
    assert "has no ASCII form" in (broken.last_smtp_reply or "")
    assert broken.lease_owner is None
    # Nobody else is held up.
    for email in SUBSCRIBERS:
        assert rows[email].status == DeliveryStatus.SENT, email
        assert len(received[email]) == 1
    assert summary.sent == len(SUBSCRIBERS) + 1 + smtputf8
    assert summary.failed == 2 - smtputf8
    failed = {to for to, _ in summary.failures}
    assert "broken@bü_cher.de" in failed
    assert_nothing_claimed(rows)


def test_an_internationalised_sender_domain_still_reaches_a_relay_without_smtputf8(
    planned: Planned,
) -> None:
    """The sender, return path and links are written in their ASCII form, so no message
    needs SMTPUTF8 because of them (before, every delivery failed for good)."""
    with FaultyServer(smtputf8=False) as server:
        settings = settings_for(
            planned.database_url,
            server,
            from_address="Nachrichten <news@bücher.de>",
            public_url="https://bücher.de",
            return_path="bounces@bücher.de",
            verp=True,
            unsubscribe_mailto="abmelden@bücher.de",
        )
        summary = deliver(planned.sessions, settings=settings, edition=EDITION, workers=1)
        received = by_recipient(server)
    assert summary.sent == len(SUBSCRIBERS)
    assert summary.failed == 0
    [message] = received["alice@example.org"]
    assert message.mail_from.startswith("bounces+")
    assert message.mail_from.endswith("@xn--bcher-kva.de")
    parsed = parse(message.data)
    assert parsed["From"].addresses[0].addr_spec == "news@xn--bcher-kva.de"
    assert "https://xn--bcher-kva.de/unsubscribe/" in parsed["List-Unsubscribe"]
