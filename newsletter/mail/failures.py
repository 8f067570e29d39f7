"""Account mails that could not be sent: stored where operators look.

The web app answers a sign-up before its confirmation mail goes out (the answer must
not depend on the address), so a refused or unreachable relay is invisible to the
person waiting for the mail. Each such failure is a row here, shown by ``newsletter
status``, the admin area's failures page and /metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
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
