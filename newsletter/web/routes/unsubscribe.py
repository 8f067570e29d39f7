"""Unsubscribe: a page with a button (GET), and RFC 8058 one-click (POST)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from starlette.requests import Request
from starlette.responses import Response

from newsletter.models import SubscriberStatus
from newsletter.subscribers import accounts
from newsletter.tokens import Purpose
from newsletter.web.errors import WebError
from newsletter.web.guards import State, subscriber_for

router = APIRouter()

ONE_CLICK = "One-Click"


@router.get("/unsubscribe/{token}")
def unsubscribe_page(request: Request, state: State, token: str) -> Response:
    """Never changes anything: mail scanners fetch every link they see."""
    with state.sessions() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.UNSUBSCRIBE, token)
        subscribed = subscriber.status == SubscriberStatus.ACTIVE
        email = subscriber.email
    return state.pages.render(
        request, "unsubscribe.html", {"email": email, "subscribed": subscribed}
    )


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
        manage_url = state.links.manage_url(subscriber)
    return state.pages.render(
        request, "unsubscribed.html", {"email": email, "manage_url": manage_url}
    )
