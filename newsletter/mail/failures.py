"""Account mails that could not be sent: stored where operators look.

The web app answers a sign-up before its confirmation mail goes out (the answer must
not depend on the address), so a refused or unreachable relay is invisible to the
person waiting for the mail. Each such failure is a row here, shown by ``newsletter
status``, the admin area's failures page and /metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from newsletter.models import AccountMailFailure

_MAX_REASON = 2000


@dataclass(frozen=True)
class MailFailure:
    template: str
    email: str
    code: int | None
    reason: str
    at: datetime


def record_mail_failure(
    session: Session, *, template: str, email: str, code: int | None, reason: str, now: datetime
) -> None:
    """Store one account mail that did not go out, and why."""
    session.add(
        AccountMailFailure(
            template=template[:32],
            email=email[:320],
            code=code,
            reason=reason[:_MAX_REASON] or "unknown",
            created_at=now,
        )
    )


def recent_mail_failures(session: Session, *, limit: int = 10) -> list[MailFailure]:
    """The newest account-mail failures, newest first."""
    rows = session.scalars(
        select(AccountMailFailure)
        .order_by(AccountMailFailure.created_at.desc(), AccountMailFailure.id.desc())
        .limit(limit)
    )
    return [MailFailure(r.template, r.email, r.code, r.reason, r.created_at) for r in rows]


def mail_failures_since(session: Session, since: datetime) -> int:
    """How many account mails failed since ``since``."""
    return (
        session.scalar(
            select(func.count())
            .select_from(AccountMailFailure)
            .where(AccountMailFailure.created_at >= since)
        )
        or 0
    )


KEEP = timedelta(days=90)  # long enough to help someone who asks, not for ever


def forget_mail_failures(session: Session, email: str) -> None:
    """Drop the failures of one address ("delete my data" leaves nothing behind)."""
    session.execute(delete(AccountMailFailure).where(AccountMailFailure.email == email))


def purge_mail_failures(session: Session, *, now: datetime) -> int:
    """Drop failures older than ``KEEP``; return how many went."""
    result = session.execute(
        delete(AccountMailFailure).where(AccountMailFailure.created_at < now - KEEP)
    )
    return int(getattr(result, "rowcount", 0) or 0)
