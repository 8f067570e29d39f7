"""Test send and preview in the admin area.

The preview is shown inside the admin frame: the page says whose issue it is and what
their status is (a paused or unsubscribed reader would not get it), and the issue's
own HTML (email HTML, inline styles) sits in a sandboxed ``srcdoc`` frame, so no second
request and no framing of an app page is needed. Both forms offer the days that have
papers or an edition, newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Form, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from newsletter.delivery.preview import preview
from newsletter.delivery.testsend import send_test_issue
from newsletter.errors import NewsletterError
from newsletter.models import Edition, Paper
from newsletter.subscribers import accounts
from newsletter.subscribers.casework import find_subscriber
from newsletter.web.admin.auth import CurrentOperator
from newsletter.web.admin.page import render
from newsletter.web.guards import FormGuard, State
from newsletter.web.state import WebState

router = APIRouter(prefix="/admin")

# The preview page's own policy: the admin page's, plus the inline styles and remote
# images of the email HTML in its srcdoc frame (which inherits the page's policy).
# No script anywhere.
PREVIEW_CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
DAYS_OFFERED = 30


@dataclass(frozen=True)
class EditionDay:
    """A day that can be previewed or test-sent: it has papers, an edition, or both."""

    day: date
    papers: int
    planned: bool

    @property
    def label(self) -> str:
        what = [f"{self.papers} papers" if self.papers else "no new papers"]
        if self.planned:
            what.append("edition planned")
        return f"{self.day.isoformat()} ({', '.join(what)})"


def edition_days(session: Session, *, limit: int = DAYS_OFFERED) -> list[EditionDay]:
    """The newest days with papers listed or an edition planned, newest first."""
    papers = dict(
        session.execute(
            select(Paper.listed_on, func.count())
            .group_by(Paper.listed_on)
            .order_by(Paper.listed_on.desc())
            .limit(limit)
        ).all()
    )
    planned = set(session.scalars(select(Edition.date).order_by(Edition.date.desc()).limit(limit)))
    days = sorted(set(papers) | planned, reverse=True)[:limit]
    return [EditionDay(day, int(papers.get(day, 0)), day in planned) for day in days]


def _days(state: WebState) -> list[EditionDay]:
    with state.sessions() as session:
        return edition_days(session)


def _words(text: str) -> list[str]:
    return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]


def _edition(text: str) -> date | None:
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise NewsletterError(f"{text!r} is not a date (YYYY-MM-DD)") from None


@dataclass(frozen=True)
class Whose:
    """The subscriber a preview is for, as the preview page shows them."""

    id: int
    email: str
    status: str
    note: str


NOTES = {
    "active": "Gets this issue at their send hour.",
    "paused": "Paused: would not get this issue until they resume.",
    "pending": "Has not confirmed the sign-up yet: gets no issue until then.",
    "unsubscribed": "Unsubscribed: gets no issue.",
    "bounced": "Their address bounced: gets no issue until the suppression is lifted.",
}


def _whose(state: WebState, email: str) -> Whose | None:
    with state.sessions() as session:
        subscriber = find_subscriber(session, email)
        if subscriber is None:
            return None
        status = accounts.status_name(subscriber)
        return Whose(subscriber.id, subscriber.email, status, NOTES.get(status, ""))


@router.get("/test-send")
def send_test_page(
    request: Request,
    state: State,
    operator: CurrentOperator,
    as_email: Annotated[str, Query(alias="as", max_length=320)] = "",
) -> Response:
    return render(
        request,
        state,
        "test_send.html",
        operator,
        {
            "form": {"as_email": as_email},
            "error": "",
            "result": "",
            "topics": sorted(state.catalogue),
            "days": _days(state),
        },
    )


@router.post("/test-send", dependencies=FormGuard)
def send_test(
    request: Request,
    state: State,
    operator: CurrentOperator,
    to: Annotated[str, Form(max_length=320)] = "",
    as_email: Annotated[str, Form(max_length=320)] = "",
    topics: Annotated[str, Form(max_length=2000)] = "",
    keywords: Annotated[str, Form(max_length=2000)] = "",
    edition: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    form = {
        "to": to,
        "as_email": as_email,
        "topics": topics,
        "keywords": keywords,
        "edition": edition,
    }
    error = result = ""
    try:
        if not to.strip():
            raise NewsletterError("give the address the test issue should go to")
        result = send_test_issue(
            state.settings,
            to=to.strip(),
            as_email=as_email.strip() or None,
            topics=_words(topics),
            keywords=[k.strip() for k in keywords.splitlines() if k.strip()],
            edition=_edition(edition),
        )
    except NewsletterError as exc:
        error = str(exc)
    return render(
        request,
        state,
        "test_send.html",
        operator,
        {
            "form": form,
            "error": error,
            "result": result,
            "topics": sorted(state.catalogue),
            "days": _days(state),
        },
        status=400 if error else 200,
    )


@router.get("/preview")
def preview_page(
    request: Request,
    state: State,
    operator: CurrentOperator,
    as_email: Annotated[str, Query(alias="as", max_length=320)] = "",
    edition: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    error = html = ""
    whose = None
    if as_email.strip():
        try:
            html = preview(state.settings, as_email=as_email.strip(), edition=_edition(edition))
        except NewsletterError as exc:
            error = str(exc)
        whose = _whose(state, as_email.strip())
    response = render(
        request,
        state,
        "preview.html",
        operator,
        {
            "as_email": as_email,
            "edition": edition,
            "error": error,
            "whose": whose,
            # Links open outside the sandboxed frame (in a new tab).
            "issue_html": '<base target="_blank">' + html if html else "",
            "days": _days(state),
        },
        status=400 if error else 200,
    )
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    return response
