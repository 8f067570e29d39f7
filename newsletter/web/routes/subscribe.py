"""Subscribe (double opt-in) and confirm."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Form
from starlette.requests import Request
from starlette.responses import Response

from newsletter.models import Subscriber, utcnow
from newsletter.subscribers import accounts
from newsletter.tokens import Purpose
from newsletter.web.errors import WebError
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
from newsletter.web.mailer import Mail
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
    now = utcnow()
    with state.sessions.begin() as session:
        accounts.purge_expired_signups(session, now=now)
        outcome, subscriber = accounts.request_signup(session, address, choices, now=now)
        mail = _signup_mail(state, outcome, subscriber)
    # Per address, so nobody can flood a stranger's inbox; over the limit the mail is
    # quietly not sent and the page stays the same.
    if mail is not None and state.limits.allow("mail", address):
        background.add_task(state.mailer.send, mail)
    return state.pages.render(request, "check_email.html", {"email": address})


def _signup_mail(
    state: WebState, outcome: accounts.SignupOutcome, subscriber: Subscriber | None
) -> Mail | None:
    if subscriber is None or outcome == "nothing":
        return None
    if outcome == "already":
        return Mail(
            to=subscriber.email,
            template="already",
            context={"manage_url": state.links.manage_url(subscriber)},
        )
    return Mail(
        to=subscriber.email,
        template="confirm",
        context={"confirm_url": state.links.confirm_url(subscriber)},
    )


def _refuse(outcome: accounts.ConfirmOutcome) -> None:
    if outcome == "expired":
        raise WebError(
            410,
            "This link has expired",
            "Confirmation links work for a week. Please subscribe again to get a new one.",
        )
    if outcome == "invalid":
        raise WebError(
            400,
            "This link no longer works",
            "A newer confirmation mail replaced it, or the sign-up lapsed. Please use the "
            "link in the newest mail, or subscribe again.",
        )


@router.get("/confirm/{token}")
def confirm_page(request: Request, state: State, token: str) -> Response:
    """Show a button: mail scanners open links, so opening one changes nothing."""
    with state.sessions() as session:
        subscriber, data = subscriber_for(session, state, Purpose.CONFIRM, token)
        outcome = accounts.check_signup(subscriber, data.subject, now=utcnow())
        manage_url = state.links.manage_url(subscriber) if outcome == "already" else ""
    _refuse(outcome)
    return state.pages.render(
        request, "confirm.html", {"outcome": outcome, "manage_url": manage_url}
    )


@router.post("/confirm/{token}", dependencies=FormGuard)
def confirm(request: Request, state: State, token: str) -> Response:
    with state.sessions.begin() as session:
        subscriber, data = subscriber_for(session, state, Purpose.CONFIRM, token)
        outcome = accounts.confirm_signup(subscriber, data.subject, now=utcnow())
        manage_url = state.links.manage_url(subscriber)
    _refuse(outcome)
    return state.pages.render(request, "confirmed.html", {"manage_url": manage_url})
