"""Unsubscribe: a page with a button (GET), and RFC 8058 one-click (POST); the page
offers less mail instead (pause, or weekly), each one POST of its own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from newsletter.models import Frequency, SubscriberStatus, utcnow
from newsletter.subscribers import accounts
from newsletter.tokens import Purpose
from newsletter.web.errors import WebError
from newsletter.web.forms import weekday_choices
from newsletter.web.guards import FormGuard, State, subscriber_for

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
            "manage_url": f"/manage/{state.links.manage_token(subscriber)}",
        }
    return state.pages.render(request, "unsubscribe.html", context)


# Less mail instead of none. The unsubscribe link grants these too: like unsubscribing,
# they only ever reduce what is sent. The reader lands on their preferences.


@router.post("/unsubscribe/{token}/pause", dependencies=FormGuard)
def pause_instead(state: State, token: str) -> Response:
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.UNSUBSCRIBE, token)
        accounts.set_paused(session, subscriber, paused=True, now=utcnow())
        manage_token = state.links.manage_token(subscriber)
    return RedirectResponse(f"/manage/{manage_token}?done=paused", status_code=303)


@router.post("/unsubscribe/{token}/weekly", dependencies=FormGuard)
def weekly_instead(state: State, token: str) -> Response:
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.UNSUBSCRIBE, token)
        accounts.switch_to_weekly(subscriber)
        manage_token = state.links.manage_token(subscriber)
    return RedirectResponse(f"/manage/{manage_token}?done=weekly", status_code=303)


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
        manage_url = f"/manage/{state.links.manage_token(subscriber)}"
    return state.pages.render(
        request, "unsubscribed.html", {"email": email, "manage_url": manage_url}
    )
