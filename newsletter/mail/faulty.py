"""The one fault-injecting SMTP server of the tests: ``FaultyServer``.

A real SMTP server on 127.0.0.1 (an aiosmtpd ``Controller`` in a thread, built on
``newsletter.mail.capture``) that keeps accepted messages in memory and misbehaves on
purpose, so the delivery code's failure handling is tested against a real SMTP
conversation instead of mocks. Two kinds of faults, freely combined:

**Scripted replies** (constructor keywords), for one exact failure:

- ``mail_replies`` / ``rcpt_replies`` map a sender / recipient address to the full
  reply line sent instead of accepting it (``"550 5.1.1 no such user"``);
- ``data_replies`` maps a recipient to the reply given at the end of DATA when the
  message is addressed to it; the message is then not stored;
- ``drop_on_data`` holds 1-based counts of DATA commands (over the server's lifetime)
  at which the connection is closed without any reply.

**A fault schedule** (``Faults``), for the fault and crash tests of whole editions:

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

Faults of the schedule other than the permanent refusals only hit a recipient's first
``Faults.faulty_attempts`` transactions, so every edition can finish.

Accepted messages are in ``messages``; everything the server did is in ``log`` (one
``Event`` per outcome), and the messages it accepted are counted by Message-ID, which
the newsletter derives from the delivery: a message accepted twice is a duplicate,
and ``unacknowledged_ids`` says which Message-IDs the server accepted without the
client hearing so.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import ssl
import threading
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from newsletter.mail.capture import (
    AUTH_REQUIRED,
    CapturedMessage,
    CaptureServer,
    FreePortController,
    ServerTls,
    TrackedSMTP,
)

__all__ = ["TEMPORARY_REPLIES", "Event", "Faults", "FaultyServer", "message_id_of"]

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
    """What a ``FaultyServer`` does wrong. Addresses are compared in lower case."""

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


class _FaultySMTP(TrackedSMTP):
    """aiosmtpd's SMTP protocol with a DATA command that can hang up before or midway."""

    def __init__(self, handler: FaultyServer, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._faulty_server = handler

    async def smtp_DATA(self, arg: str) -> None:
        envelope = self.envelope
        fault = None
        if envelope is not None and envelope.rcpt_tos and not arg and self.session is not None:
            fault = self._faulty_server._data_command_fault(list(envelope.rcpt_tos))
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


class _FaultyController(FreePortController):
    """A free-port (or fixed-port, to come back) controller speaking ``_FaultySMTP``."""

    protocol_class = _FaultySMTP

    def hang_up_everyone(self) -> None:
        """From the server's own loop: close the port and every client connection."""
        if isinstance(self.server, asyncio.Server):
            self.server.close()
        for transport in list(self._transports):
            transport.close()


class FaultyServer(CaptureServer):
    """An in-memory SMTP server on 127.0.0.1 that injects the scripted replies it is
    given and the faults of ``faults`` (see the module's docstring)."""

    def __init__(
        self,
        faults: Faults | None = None,
        *,
        mail_replies: Mapping[str, str] | None = None,
        rcpt_replies: Mapping[str, str] | None = None,
        data_replies: Mapping[str, str] | None = None,
        drop_on_data: Collection[int] = (),
        tls: ServerTls = "none",
        ssl_context: ssl.SSLContext | None = None,
        credentials: Mapping[str, str] | None = None,
        smtputf8: bool = True,
        pipelining: bool = True,
    ) -> None:
        super().__init__(
            tls=tls,
            ssl_context=ssl_context,
            credentials=credentials,
            smtputf8=smtputf8,
            pipelining=pipelining,
        )
        self.mail_replies = dict(mail_replies or {})
        self.rcpt_replies = dict(rcpt_replies or {})
        self.data_replies = dict(data_replies or {})
        self.drop_on_data = frozenset(drop_on_data)
        self._data_commands = 0
        self._peers: set[object] = set()
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

    controller_class = _FaultyController

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
        """Copy of the messages accepted so far, in arrival order."""
        with self._lock:
            return list(self._messages)

    @property
    def data_commands(self) -> int:
        """Number of DATA transfers completed by clients, including rejected ones."""
        with self._lock:
            return self._data_commands

    @property
    def sessions(self) -> int:
        """Number of distinct client connections that started a transaction."""
        with self._lock:
            return len(self._peers)

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
        if isinstance(controller, _FaultyController):
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
        """Record the connection, then fail as scheduled, or accept or reject the sender."""
        with self._lock:
            self._peers.add(session.peer)
            self._mail_commands += 1
            number = self._mail_commands
            gone = self._gone
        if gone:
            self._record(Event("MAIL", "gone"))
            return self._temporary_reply(server, "MAIL", TEMPORARY_REPLIES[0], None)
        reply = self._random_temporary("MAIL", number)
        if reply is not None:
            return self._temporary_reply(server, "MAIL", reply, None)
        if self._login_missing(session):
            return AUTH_REQUIRED
        scripted = self.mail_replies.get(address)
        if scripted is not None:
            return scripted
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Reject the recipient if it has a scripted or scheduled reply, else accept it."""
        scripted = self.rcpt_replies.get(address)
        if scripted is not None:
            return scripted
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
        """Drop the connection, reject, delay or store the message, as configured."""
        with self._lock:
            self._data_commands += 1
            drop = self._data_commands in self.drop_on_data
        if drop:
            # Closing the transport makes the reply below go nowhere: the client
            # sees the connection vanish after sending the message body.
            if server.transport is not None:
                server.transport.close()
            return "451 4.3.0 connection dropped"
        for address in envelope.rcpt_tos:
            scripted = self.data_replies.get(address)
            if scripted is not None:
                return scripted
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
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            data=data,
            mail_options=tuple(envelope.mail_options),
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
