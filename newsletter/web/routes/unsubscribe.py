"""Unsubscribe: a page with a button (GET), and RFC 8058 one-click (POST); the page
offers less mail instead (pause, or weekly), and undoing it (subscribe again), each one
POST of its own.

No page reached with an unsubscribe token links to the preferences: that link (a manage
token) grants export, delete and address change, and the unsubscribe URL travels in the
List-Unsubscribe header, to mail providers' servers (README, "Security model")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from starlette.requests import Request
from starlette.responses import Response

from newsletter.models import Frequency, SubscriberStatus, utcnow
from newsletter.subscribers import accounts
from newsletter.tokens import Purpose
from newsletter.web.errors import WebError
from newsletter.web.forms import weekday_choices
from newsletter.web.guards import FormGuard, State, subscriber_for
from newsletter.web.state import WebState

router = APIRouter()

ONE_CLICK = "One-Click"


@router.get("/unsubscribe/{token}")
def unsubscribe_page(request: Request, state: State, token: str) -> Response:
    """Never changes anything: mail scanners fetch every link they see."""
    with state.sessions() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.UNSUBSCRIBE, token)
        context = {
            "email": subscriber.email,
            "subscribed": subscriber.status == SubscriberStatus.ACTIVE,
            "paused": subscriber.paused_at is not None,
            "weekly": subscriber.frequency == Frequency.WEEKLY,
            "weekday_name": dict(weekday_choices())[str(subscriber.send_weekday)],
            "base": f"/unsubscribe/{token}",
            "can_resubscribe": subscriber.status == SubscriberStatus.UNSUBSCRIBED,
        }
    return state.pages.render(request, "unsubscribe.html", context)


# Less mail instead of none. The unsubscribe link grants these too: like unsubscribing,
# they only ever reduce what is sent. The reader gets a page of their own (on this token).

DONE = {
    "paused": (
        "Issues are paused",
        "No more issues go to {email} until you resume them "
        "with the Preferences link of any issue; your choices are kept.",
    ),
    "weekly": (
        "You now get one issue a week",
        "{email} gets one issue a week, on {weekday}, with the best papers of the week.",
    ),
    "back": ("You are subscribed again", "{email} gets issues again, with the choices it had."),
    "not_back": (
        "Not subscribed again",
        "This subscription cannot be restarted from here; please sign up again.",
    ),
}


def _done(request: Request, state: WebState, outcome: str, email: str, weekday: int) -> Response:
    title, text = DONE[outcome]
    weekday_name = dict(weekday_choices())[str(weekday)]
    return state.pages.render(
        request,
        "unsubscribe_done.html",
        {"title": title, "text": text.format(email=email, weekday=weekday_name)},
    )


@router.post("/unsubscribe/{token}/pause", dependencies=FormGuard)
def pause_instead(request: Request, state: State, token: str) -> Response:
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.UNSUBSCRIBE, token)
        accounts.set_paused(session, subscriber, paused=True, now=utcnow())
        email, weekday = subscriber.email, subscriber.send_weekday
    return _done(request, state, "paused", email, weekday)


@router.post("/unsubscribe/{token}/weekly", dependencies=FormGuard)
def weekly_instead(request: Request, state: State, token: str) -> Response:
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.UNSUBSCRIBE, token)
        accounts.switch_to_weekly(subscriber)
        email, weekday = subscriber.email, subscriber.send_weekday
    return _done(request, state, "weekly", email, weekday)


@router.post("/unsubscribe/{token}/resubscribe", dependencies=FormGuard)
def resubscribe(request: Request, state: State, token: str) -> Response:
    """Undo an unsubscribe from the same link: back to the same, once confirmed address,
    with the old choices (``accounts.resubscribe`` records the fresh consent)."""
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.UNSUBSCRIBE, token)
        back = accounts.resubscribe(session, subscriber, now=utcnow())
        active = accounts.status_name(subscriber) in ("active", "paused")
        email, weekday = subscriber.email, subscriber.send_weekday
    return _done(request, state, "back" if back or active else "not_back", email, weekday)


@router.post("/unsubscribe/{token}")
def unsubscribe(
    request: Request,
    state: State,
    token: str,
    one_click: Annotated[str, Form(alias="List-Unsubscribe")] = "",
) -> Response:
    """RFC 8058: the body ``List-Unsubscribe=One-Click`` (urlencoded or multipart) is
    all it takes; no cookie or CSRF token, as a mail provider's server posts it. The
    page's own button posts the same body. 200, no redirect; doing it twice is fine.
    Not under the per-address POST limit: one provider posts for many readers."""
    if one_click != ONE_CLICK:
        raise WebError(
            400,
            "Unsubscribe not understood",
            "Use the button on the unsubscribe page, or your mail program's unsubscribe command.",
        )
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.UNSUBSCRIBE, token)
        accounts.unsubscribe(session, subscriber)
        email = subscriber.email
    return state.pages.render(
        request,
        "unsubscribed.html",
        {
            "email": email,
            "manage_url": None,
            "resubscribe_url": f"/unsubscribe/{token}/resubscribe",
        },
    )
