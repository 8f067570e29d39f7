"""The relay's bad news, kept where operators look: a relay that cannot be reached, or
that defers or refuses mail.

A refused or deferred message leaves its reply on its delivery, but a relay that is
down changes no delivery at all (every claimed one goes back untouched), and a
delivery's reply carries no time. So each delivery run that meets an unreachable relay,
and each batch of outcomes with deferrals or refusals that a worker stores, adds one
row to ``relay_errors`` (a batch stored twice, after a commit whose connection died,
adds one: ``outcomes.record``); ``newsletter status``, the admin dashboard and /metrics
show the newest. Rows older than ``KEEP`` are dropped as new ones come.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from newsletter.db import SessionFactory, retry_stale
from newsletter.models import RelayError, utcnow

KEEP = timedelta(days=14)
_MAX_REPLY = 1000
_CODE = re.compile(r"(?<!\d)([245]\d\d)(?!\d)")

UNREACHABLE = "unreachable"  # no session: connection, TLS or login failed
DEFERRED = "deferred"  # a whole batch deferred (4xx, dropped connections): retried later
REFUSED = "refused"  # a whole batch refused for good (5xx)
RECIPIENTS = "recipients"  # some went out, some were deferred or refused: those addresses'
# Kinds that say the relay itself is not taking mail (not one address it refuses).
RELAY_DOWN = (UNREACHABLE, DEFERRED, REFUSED)


class _Result(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def code(self) -> int | None: ...
    @property
    def reply(self) -> str: ...


@dataclass(frozen=True)
class LastRelayError:
    """The newest relay error, and how many rows arrived in the last 24 hours."""

    at: datetime
    kind: str
    code: int | None
    reply: str
    deliveries: int
    last_24h: int

    @property
    def text(self) -> str:
        return f"{self.code} {self.reply}" if self.code else self.reply


def record_relay_error(
    session: Session,
    *,
    kind: str,
    reply: str,
    code: int | None = None,
    deliveries: int = 0,
    now: datetime,
) -> None:
    """Store one relay error (the caller commits) and forget those older than ``KEEP``."""
    session.execute(delete(RelayError).where(RelayError.created_at < now - KEEP))
    session.add(
        RelayError(
            kind=kind,
            code=code,
            reply=(reply or "no reply")[:_MAX_REPLY],
            deliveries=deliveries,
            created_at=now,
        )
    )


def note_outcomes(
    session: Session,
    results: Sequence[_Result],
    *,
    now: datetime,
    recipients: Sequence[str] | None = None,
) -> None:
    """One row for a batch of SMTP outcomes that holds deferrals or refusals (the last
    of them speaks for the batch); nothing when every message went out.

    A batch says the relay itself is not taking mail (``deferred``/``refused``) only when
    nothing in it went out and it turned away at least two different recipients with
    the same reply code. Which outcomes share a batch depends on timing, so one reader's
    greylisting (or a 550 and a 451 for two readers) recorded alone must not read as a
    relay that is down (``recipients``); a relay that cannot be reached at all is
    ``note_unreachable``'s. ``recipients`` (parallel to ``results``) tells repeated
    deliveries to one address apart; without it each result counts as its own.
    """
    # A permanent failure without a code is a message that could not be built: ours.
    bad = [
        (index, r)
        for index, r in enumerate(results)
        if r.status == "temporary" or (r.code and r.status != "sent")
    ]
    if not bad:
        return
    last = bad[-1][1]
    addresses = {recipients[index].lower() if recipients is not None else index for index, _ in bad}
    codes = {r.code for _, r in bad}
    relay_level = (
        not any(r.status == "sent" for r in results) and len(addresses) >= 2 and len(codes) == 1
    )
    kind = RECIPIENTS
    if relay_level:
        kind = REFUSED if last.status == "permanent" else DEFERRED
    record_relay_error(
        session, kind=kind, code=last.code, reply=last.reply, deliveries=len(bad), now=now
    )


def note_unreachable(sessions: SessionFactory, message: str) -> None:
    """Record that a delivery run could not reach the relay (in a transaction of its own:
    the run's own work is already committed or given back). Run once more on a new
    connection if the pooled one died while the run's workers were busy, as the run's
    closing edition update is (an engine made without pre-ping meets the dead one; in
    the rare case that the first COMMIT went through, the run is noted twice)."""
    found = _CODE.search(message)

    def note() -> None:
        with sessions.begin() as session:
            record_relay_error(
                session,
                kind=UNREACHABLE,
                code=int(found.group(1)) if found else None,
                reply=message,
                now=utcnow(),
            )

    retry_stale(note)


def last_relay_error(session: Session, *, now: datetime) -> LastRelayError | None:
    """The newest relay error, or None when there is none in the last ``KEEP``."""
    row = session.scalars(
        select(RelayError).order_by(RelayError.created_at.desc(), RelayError.id.desc()).limit(1)
    ).one_or_none()
    if row is None:
        return None
    recent = session.scalar(
        select(func.count())
        .select_from(RelayError)
        .where(RelayError.created_at >= now - timedelta(days=1))
    )
    return LastRelayError(
        at=row.created_at,
        kind=row.kind,
        code=row.code,
        reply=row.reply,
        deliveries=row.deliveries,
        last_24h=int(recent or 0),
    )


def relay_failing(error: LastRelayError | None, last_sent: datetime | None) -> bool:
    """Whether the relay is failing: its newest word is an error about itself (not
    about some recipients) and nothing was accepted after it."""
    return (
        error is not None
        and error.kind in RELAY_DOWN
        and (last_sent is None or error.at > last_sent)
    )
