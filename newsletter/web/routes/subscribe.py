"""Subscribe (double opt-in) and confirm."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Form
from starlette.requests import Request
from starlette.responses import Response

from newsletter.models import utcnow
from newsletter.subscribers import accounts
from newsletter.tokens import Purpose
from newsletter.web import actions
from newsletter.web.forms import (
    DEFAULT_SEND_HOUR,
    DEFAULT_WEEKDAY,
    FormError,
    parse_choices,
    parse_email,
    split_keywords,
    timezones,
    weekday_choices,
)
from newsletter.web.guards import FormGuard, State, subscriber_for
from newsletter.web.state import WebState, client_ip

router = APIRouter()

Text = Annotated[str, Form()]
Texts = Annotated[list[str] | None, Form()]


def form_context(state: WebState, values: dict[str, Any]) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "email": "",
        "topics": [],
        "keywords": "",
        "frequency": "daily",
        "timezone": "UTC",
        "send_hour": str(DEFAULT_SEND_HOUR),
        "weekday": str(DEFAULT_WEEKDAY),
    }
    defaults.update(values)
    return {
        "catalogue": sorted(state.catalogue.values(), key=lambda t: t.name),
        "timezones": timezones(),
        "weekdays": weekday_choices(),
        "form": defaults,
        "error": None,
    }


# HEAD too: uptime monitors probe the front page with it.
@router.api_route("/", methods=["GET", "HEAD"])
@router.api_route("/subscribe", methods=["GET", "HEAD"])
def subscribe_page(request: Request, state: State) -> Response:
    return state.pages.render(request, "subscribe.html", form_context(state, {}))


@router.post("/subscribe", dependencies=FormGuard)
def subscribe(
    request: Request,
    state: State,
    background: BackgroundTasks,
    email: Text = "",
    topics: Texts = None,
    keywords: Text = "",
    frequency: Text = "daily",
    timezone: Text = "UTC",
    send_hour: Text = str(DEFAULT_SEND_HOUR),
    weekday: Text = str(DEFAULT_WEEKDAY),
) -> Response:
    """Record the sign-up and mail a link; the page is the same for every address."""
    state.limits.require("subscribe", client_ip(request))
    typed = {
        "email": email[:320],
        "topics": (topics or [])[:100],
        "keywords": keywords[:4000],
        "frequency": frequency[:16],
        "timezone": timezone[:64],
        "send_hour": send_hour[:4],
        "weekday": weekday[:4],
    }
    try:
        address = parse_email(email)
        choices = parse_choices(
            state.catalogue,
            topics=topics or [],
            keywords=split_keywords(keywords),
            weights=None,
            frequency=frequency,
            timezone=timezone,
            send_hour=send_hour,
            weekday=weekday,
        )
    except FormError as exc:
        context = form_context(state, typed) | {"error": str(exc)}
        return state.pages.render(request, "subscribe.html", context, status=400)
    actions.sign_up(state, background, address, choices)
    return state.pages.render(request, "check_email.html", {"email": address})


@router.get("/confirm/{token}")
def confirm_page(request: Request, state: State, token: str) -> Response:
    """Show a button: mail scanners open links, so opening one changes nothing."""
    with state.sessions() as session:
        subscriber, data = subscriber_for(session, state, Purpose.CONFIRM, token)
        outcome = accounts.check_signup(subscriber, data.subject, now=utcnow())
        manage_url = state.links.manage_url(subscriber) if outcome == "already" else ""
    actions.refuse_confirmation(outcome)
    return state.pages.render(
        request, "confirm.html", {"outcome": outcome, "manage_url": manage_url}
    )


@router.post("/confirm/{token}", dependencies=FormGuard)
def confirm(request: Request, state: State, token: str) -> Response:
    confirmation = actions.confirm(state, token)
    return state.pages.render(request, "confirmed.html", {"manage_url": confirmation.manage_url})
