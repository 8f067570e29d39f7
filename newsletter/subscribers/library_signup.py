"""A library given with a sign-up (issue 16): staged on the unconfirmed record, used
once the address is confirmed.

Only a record nobody has confirmed takes it (a new address, or one whose sign-up is
still pending): that record is nobody's data, and if it is never confirmed
``accounts.purge_expired_signups`` deletes it after ``SIGNUP_TTL`` with its staged
library (the foreign keys cascade). An active, unsubscribed or bounced address keeps its
library as it is: anyone can type an address into the form, so a sign-up must not change
a reader's data before they confirm (returning readers import on their preferences page).
The page after the form is the same in every case, and so is the request's work: the
libraries are staged after the answer (a background task), nothing is matched or fetched
before the confirmation, and each sign-up's libraries replace the earlier ones and come
with a new link, so a link confirms the library it was mailed for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from newsletter.models import LibraryImport, Subscriber, SubscriberStatus
from newsletter.subscribers.library import IMPORTED, preview, problem_rows, resolve
from newsletter.subscribers.library_formats import ParsedLibrary


@dataclass(frozen=True)
class SignupLibrary:
    """One library of the sign-up form (the file, or the pasted list), parsed."""

    source: str  # the file's name, or "pasted list"
    parsed: ParsedLibrary
    # What the form's next page says: ``library.preview``, and how many papers are left.
    report: list[dict[str, str]] = field(init=False)
    papers: int = field(init=False)

    def __post_init__(self) -> None:
        report = preview(self.parsed)
        wheres = {e.where for e in self.parsed.entries}
        dropped = sum(r["where"] in wheres and r["outcome"] != IMPORTED for r in report)
        object.__setattr__(self, "report", report)
        object.__setattr__(self, "papers", len(self.parsed.entries) - dropped)


STAGED = "staged"  # an import waiting for its sign-up's confirmation


def claim_for_signup(subscriber: Subscriber | None, *, now: datetime) -> int | None:
    """Ready the record the sign-up found or created to take this sign-up's libraries:
    its id, or None when nobody may (a confirmed reader's data is theirs). The sign-up
    gets a new link, so the library is part of what that link confirms: a stranger who
    posts the same address again with another library cannot ride an earlier link."""
    if (
        subscriber is None
        or subscriber.status != SubscriberStatus.PENDING
        or subscriber.confirmed_at is not None
    ):
        return None
    subscriber.signup_at = now
    return subscriber.id


def stage(session: Session, subscriber_id: int, libraries: Sequence[SignupLibrary]) -> None:
    """Store the sign-up's libraries on the unconfirmed record, unresolved, in place of
    any an earlier sign-up of it left (so repeated sign-ups never pile up imports).
    Nothing is matched or fetched until the address is confirmed (``activate``): the
    work a request does is the same whoever the address belongs to."""
    session.execute(
        delete(LibraryImport).where(
            LibraryImport.subscriber_id == subscriber_id, LibraryImport.status == STAGED
        )
    )
    for library in libraries:
        session.add(
            LibraryImport(
                subscriber_id=subscriber_id,
                source=library.source[:200],
                status=STAGED,
                entries=[e.as_json() for e in library.parsed.entries],
                report=problem_rows(library.parsed.problems),
                attempts=0,
            )
        )


def activate(session: Session, subscriber: Subscriber) -> int:
    """On confirmation: the sign-up's libraries become imports, matched against the
    stored papers at once; what needs the arXiv API waits for the seeding job."""
    staged = list(
        session.scalars(
            select(LibraryImport)
            .where(LibraryImport.subscriber_id == subscriber.id, LibraryImport.status == STAGED)
            .order_by(LibraryImport.id)
        )
    )
    for imp in staged:
        imp.status = "pending"
        resolve(session, imp, fetch=None)
    return len(staged)
