"""A library given with a sign-up (issue 16): stored on the pending subscriber at once.

Only a record nobody has confirmed yet takes it (a new address, or one whose sign-up is
still pending): that record is nobody's data, and if it is never confirmed
``accounts.purge_expired_signups`` deletes it after ``SIGNUP_TTL``, its library imports
and seeds with it (the foreign keys cascade). An active, unsubscribed or bounced
address keeps its library as it is: anyone can type an address into the form, so a
sign-up must not change a reader's data before they confirm (returning readers import
on their preferences page). The page after the form is the same in every case.

Nothing is fetched here: ``library.new_import`` matches what is stored and leaves the
arXiv ids the database lacks to the seeding job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from newsletter.models import LibraryImport, Subscriber, SubscriberStatus
from newsletter.subscribers.library import IMPORTED, new_import, preview
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


def attach_to_signup(
    session: Session, subscriber: Subscriber | None, libraries: Sequence[SignupLibrary]
) -> list[LibraryImport]:
    """Store ``libraries`` on ``subscriber`` (whom the sign-up found or created) when
    nobody has confirmed that record yet; none (an empty list) otherwise."""
    if (
        subscriber is None
        or subscriber.status != SubscriberStatus.PENDING
        or subscriber.confirmed_at is not None
    ):
        return []
    return [new_import(session, subscriber, lib.parsed, source=lib.source) for lib in libraries]
