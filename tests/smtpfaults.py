"""Real aiosmtpd servers that misbehave on purpose, for the delivery fault and crash tests.

``ChaosServer`` is a real SMTP server on 127.0.0.1 (an aiosmtpd ``Controller`` in a
thread, like ``newsletter.mail.capture``) whose faults are configured by ``Faults``:

- random 421/450/451 replies at MAIL, RCPT and DATA, drawn from a seeded hash of
  (stage, recipient, attempt), so which transaction fails does not depend on the
  order in which concurrent connections arrive (MAIL, which precedes any recipient,
  uses the server's MAIL counter instead); a 421 also closes the connection, as the
  code means;
- 5xx for chosen recipients, at RCPT or at the end of DATA;
- hanging up at the DATA command (before any of the message is sent), during DATA
  (after part of the body arrived), or after DATA was accepted but before the reply
  went out (the one case where a client cannot know the message arrived);
- a reply slower than the client's timeout, at RCPT or at the end of DATA (the
  message is only kept if the client is still there to hear the reply);
- a slow-ish relay (every DATA reply delayed);
- going away abruptly after a number of accepted messages (connections closed and
  the port refused) and coming back on the same port (``come_back``).

Faults other than the permanent refusals only hit a recipient's first
``Faults.faulty_attempts`` transactions, so every edition can finish.

Everything the server did is in ``log`` (one ``Event`` per outcome), and the messages
it accepted are counted by Message-ID, which the newsletter derives from the
delivery: a message accepted twice is a duplicate, and ``unacknowledged_ids`` says
which Message-IDs the server accepted without the client hearing so.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session
from sqlalchemy import select

from newsletter.db import SessionFactory
from newsletter.delivery import DeliverySummary
from newsletter.delivery.suppression import OPEN_STATES
from newsletter.mail.capture import (
    CapturedMessage,
    _BaseServer,
    _FreePortController,
    _TrackedSMTP,
)
from newsletter.models import (
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
    "ChaosServer",
    "Event",
    "Faults",
    "Row",
    "audit",
    "expected_message_id",
    "message_id_of",
    "plan_readers",
    "reader",
    "snapshot",
    "status_counts",
    "total",
]

Stage = Literal["MAIL", "RCPT", "DATA"]
Outcome = Literal[
    "accepted",  # stored, 250 sent
    "accepted_no_reply",  # stored, then hung up (or too slow) before the 250 went out
    "temporary",  # 4xx reply
    "permanent",  # 5xx reply
    "drop_before_data",  # hung up at the DATA command
    "drop_during_data",  # hung up after part of the message body
    "slow",  # reply delayed past the client's timeout
    "gone",  # the server went away in the middle of this transaction
]

# Temporary replies: a 421 closes the connection (RFC 5321 4.2.2), the others do not.
TEMPORARY_REPLIES = (
    "421 4.7.0 Try again later, closing connection",
    "450 4.2.1 Mailbox busy, try again later",
    "451 4.3.0 Temporary local problem, try again later",
)
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)
# Lines of the body the server reads before hanging up "during DATA".
_PARTIAL_LINES = 4
# How long a connection we hung up on may take to notice (it takes microseconds).
_HANG_UP_GRACE = 30.0


def message_id_of(data: bytes) -> str | None:
    """The Message-ID header of a raw message (None if it has none)."""
    header = data.split(b"\r\n\r\n", 1)[0]
    match = _MESSAGE_ID.search(header)
    return match.group(1).decode("ascii", errors="replace") if match else None


def _chance(seed: int, *parts: object) -> float:
    """A number in [0, 1) that depends only on the seed and ``parts``."""
    key = ":".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64


@dataclass(frozen=True, kw_only=True)
class Faults:
    """What a ``ChaosServer`` does wrong. Addresses are compared in lower case."""

    seed: int = 0
    # Stage -> probability of a random 421/450/451 reply there.
    temporary: Mapping[str, float] = field(default_factory=dict)
    # Random and one-off faults hit only a recipient's first N transactions.
    faulty_attempts: int = 2
    # Address -> 5xx reply at RCPT / at the end of DATA (every time).
    permanent_rcpt: Mapping[str, str] = field(default_factory=dict)
    permanent_data: Mapping[str, str] = field(default_factory=dict)
    drop_before_data: Collection[str] = ()
    drop_during_data: Collection[str] = ()
    drop_after_data: Collection[str] = ()  # accepted, then hang up without the reply
    slow_rcpt: Collection[str] = ()
    slow_data: Collection[str] = ()
    slow_seconds: float = 3.0
    # Every end-of-DATA reply waits this long (a slow-ish relay).
    data_delay: float = 0.0
    # Go away (close every connection and the port) once this many messages are stored.
    vanish_after: int | None = None

    def __post_init__(self) -> None:
        unknown = set(self.temporary) - {"MAIL", "RCPT", "DATA"}
        if unknown:
            raise ValueError(f"unknown SMTP stages {sorted(unknown)}")


@dataclass(frozen=True)
class Event:
    """One outcome at the server: what happened, where, to whom, with which message."""

    stage: Stage
    outcome: Outcome
    rcpt: str | None = None
    code: int | None = None
    message_id: str | None = None


class _ChaosSMTP(_TrackedSMTP):
    """aiosmtpd's SMTP protocol with a DATA command that can hang up before or midway."""

    def __init__(self, handler: ChaosServer, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._chaos = handler

    async def smtp_DATA(self, arg: str) -> None:
        envelope = self.envelope
        fault = None
        if envelope is not None and envelope.rcpt_tos and not arg and self.session is not None:
            fault = self._chaos._data_command_fault(list(envelope.rcpt_tos))
        if fault == "drop_during_data":
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            for _ in range(_PARTIAL_LINES):
                await self._reader.readuntil(b"\r\n")
        if fault is not None:
            if self.transport is not None:
                self.transport.close()
            # Read nothing more (the rest of the body is not a command): the lost
            # connection cancels this task.
            await asyncio.sleep(_HANG_UP_GRACE)
            return
        await super().smtp_DATA(arg)


class _ChaosController(_FreePortController):
    """A free-port (or fixed-port, to come back) controller speaking ``_ChaosSMTP``."""

    protocol_class = _ChaosSMTP

    def hang_up_everyone(self) -> None:
        """From the server's own loop: close the port and every client connection."""
        if isinstance(self.server, asyncio.Server):
            self.server.close()
        for transport in list(self._transports):
            transport.close()


class ChaosServer(_BaseServer):
    """An in-memory SMTP server on 127.0.0.1 that injects the faults of ``faults``."""

    def __init__(self, faults: Faults | None = None) -> None:
        super().__init__()
        self.faults = faults or Faults()
        f = self.faults
        self._permanent_rcpt = {k.lower(): v for k, v in f.permanent_rcpt.items()}
        self._permanent_data = {k.lower(): v for k, v in f.permanent_data.items()}
        self._sets = {
            name: frozenset(a.lower() for a in getattr(f, name))
            for name in (
                "drop_before_data",
                "drop_during_data",
                "drop_after_data",
                "slow_rcpt",
                "slow_data",
            )
        }
        self._messages: list[CapturedMessage] = []
        self._log: list[Event] = []
        self._attempts: Counter[str] = Counter()
        self._mail_commands = 0
        self._gone = False
        self.vanished = threading.Event()
        self.starts = 0

    # ------------------------------------------------------------------ lifecycle

    controller_class = _ChaosController

    def start(self) -> None:
        """Start on a free port, or on the port it had before (to come back)."""
        super().start()
        with self._lock:
            self._gone = False
        self.vanished.clear()
        self.starts += 1

    def come_back(self) -> None:
        """Stop whatever is left of the server and start it again on the same port."""
        port = self.port
        self.stop()
        self.start()
        assert self.port == port

    # ------------------------------------------------------------------ what it saw

    @property
    def messages(self) -> list[CapturedMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def log(self) -> list[Event]:
        with self._lock:
            return list(self._log)

    def accepted_ids(self) -> Counter[str]:
        """How many times the server accepted each Message-ID."""
        counts: Counter[str] = Counter()
        for message in self.messages:
            counts[message_id_of(message.data) or "<none>"] += 1
        return counts

    def accepted_by_recipient(self) -> dict[str, Counter[str]]:
        """Recipient -> Message-IDs accepted for them, with counts."""
        received: dict[str, Counter[str]] = {}
        for message in self.messages:
            for rcpt in message.rcpt_tos:
                received.setdefault(rcpt.lower(), Counter())[
                    message_id_of(message.data) or "<none>"
                ] += 1
        return received

    def unacknowledged_ids(self) -> Counter[str]:
        """Message-IDs accepted without the client hearing the 250 (duplicates allowed)."""
        return Counter(
            e.message_id or "<none>" for e in self.log if e.outcome == "accepted_no_reply"
        )

    def permanent_refusals(self) -> dict[str, int]:
        """Recipient -> the 5xx code the server refused them with."""
        return {e.rcpt: e.code for e in self.log if e.outcome == "permanent" and e.rcpt and e.code}

    def outcomes(self) -> Counter[str]:
        return Counter(e.outcome for e in self.log)

    # ------------------------------------------------------------------ decisions

    def _record(self, event: Event) -> None:
        with self._lock:
            self._log.append(event)

    def _attempt(self, rcpt: str) -> int:
        with self._lock:
            return self._attempts[rcpt]

    def _faulty(self, rcpt: str) -> bool:
        return self._attempt(rcpt) <= self.faults.faulty_attempts

    def _random_temporary(self, stage: Stage, key: object) -> str | None:
        probability = self.faults.temporary.get(stage, 0.0)
        if probability <= 0 or _chance(self.faults.seed, stage, key) >= probability:
            return None
        pick = _chance(self.faults.seed, stage, key, "code")
        return TEMPORARY_REPLIES[int(pick * len(TEMPORARY_REPLIES))]

    def _data_command_fault(self, rcpts: list[str]) -> Outcome | None:
        """Whether to hang up at this DATA command, and how; logs it."""
        rcpt = rcpts[0].lower()
        if not self._faulty(rcpt):
            return None
        for outcome in ("drop_before_data", "drop_during_data"):
            if rcpt in self._sets[outcome]:
                self._record(Event("DATA", outcome, rcpt))
                return outcome
        return None

    def _temporary_reply(
        self, server: SMTPServer, stage: Stage, reply: str, rcpt: str | None
    ) -> str:
        self._record(Event(stage, "temporary", rcpt, int(reply[:3])))
        if reply.startswith("421") and server.transport is not None:
            # Scheduled now, run after the reply is written: say 421, then hang up.
            asyncio.get_running_loop().call_soon(server.transport.close)
        return reply

    def _vanish(self) -> None:
        """Go away at once: every connection closed, the port refused (in the loop)."""
        with self._lock:
            self._gone = True
        controller = self._controller
        if isinstance(controller, _ChaosController):
            controller.hang_up_everyone()
        self.vanished.set()

    # ------------------------------------------------------------------ SMTP hooks

    async def handle_MAIL(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        with self._lock:
            self._mail_commands += 1
            number = self._mail_commands
            gone = self._gone
        if gone:
            self._record(Event("MAIL", "gone"))
            return self._temporary_reply(server, "MAIL", TEMPORARY_REPLIES[0], None)
        reply = self._random_temporary("MAIL", number)
        if reply is not None:
            return self._temporary_reply(server, "MAIL", reply, None)
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        rcpt = address.lower()
        with self._lock:
            self._attempts[rcpt] += 1
            attempt = self._attempts[rcpt]
        permanent = self._permanent_rcpt.get(rcpt)
        if permanent is not None:
            self._record(Event("RCPT", "permanent", rcpt, int(permanent[:3])))
            return permanent
        if attempt <= self.faults.faulty_attempts:
            reply = self._random_temporary("RCPT", f"{rcpt}:{attempt}")
            if reply is not None:
                return self._temporary_reply(server, "RCPT", reply, rcpt)
            if rcpt in self._sets["slow_rcpt"]:
                self._record(Event("RCPT", "slow", rcpt))
                # The client gives up first and hangs up, which cancels this sleep.
                await asyncio.sleep(self.faults.slow_seconds)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        rcpt = envelope.rcpt_tos[0].lower()
        data = envelope.original_content or b""
        message_id = message_id_of(data)
        attempt = self._attempt(rcpt)
        faulty = attempt <= self.faults.faulty_attempts
        if self.faults.data_delay:
            await asyncio.sleep(self.faults.data_delay)
        if faulty:
            reply = self._random_temporary("DATA", f"{rcpt}:{attempt}")
            if reply is not None:
                return self._temporary_reply(server, "DATA", reply, rcpt)
            if rcpt in self._sets["slow_data"]:
                self._record(Event("DATA", "slow", rcpt, message_id=message_id))
                # Kept only if the client is still listening after the delay.
                await asyncio.sleep(self.faults.slow_seconds)
        permanent = self._permanent_data.get(rcpt)
        if permanent is not None:
            self._record(Event("DATA", "permanent", rcpt, int(permanent[:3]), message_id))
            return permanent
        captured = CapturedMessage(
            mail_from=envelope.mail_from or "", rcpt_tos=list(envelope.rcpt_tos), data=data
        )
        hang_up = faulty and rcpt in self._sets["drop_after_data"]
        with self._lock:
            gone = self._gone
            if not gone:
                self._messages.append(captured)
                self._received += 1
                self._log.append(
                    Event(
                        "DATA",
                        "accepted_no_reply" if hang_up else "accepted",
                        rcpt,
                        250,
                        message_id,
                    )
                )
            stored = self._received
        if gone:
            self._record(Event("DATA", "gone", rcpt, message_id=message_id))
            if server.transport is not None:
                server.transport.close()
            return "421 4.3.2 Service shutting down"
        if hang_up and server.transport is not None:
            # Accepted and kept, but the client never hears so: it must retry.
            server.transport.close()
        vanish_after = self.faults.vanish_after
        if vanish_after is not None and stored == vanish_after:
            # This reply is written synchronously after we return; everyone else is
            # cut off now, and nothing more is stored until the server comes back.
            asyncio.get_running_loop().call_soon(self._vanish)
            with self._lock:
                self._gone = True
        return "250 OK"


# ====================================================================== editions and audits
#
# What the fault and crash tests share: a real edition (the real arXiv listing, real
# subscribers, plan_edition), and the audit of the database against the server's log.

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
    server: ChaosServer,
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
        s: emails for s, emails in by_status.items() if s in (*OPEN_STATES, DeliveryStatus.FAILED)
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
