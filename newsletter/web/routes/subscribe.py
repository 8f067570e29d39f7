"""Subscribe (double opt-in) and confirm."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Form
from starlette.requests import Request
from starlette.responses import Response

from newsletter.i18n import LOCALES, normalise_locale
from newsletter.models import utcnow
from newsletter.papers.catalogue import topic_groups
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
    timezone_groups,
    timezones,
    weekday_choices,
)
from newsletter.web.guards import FormGuard, State, subscriber_for
from newsletter.web.state import WebState, client_ip

router = APIRouter()

Text = Annotated[str, Form()]
Texts = Annotated[list[str] | None, Form()]


def browser_language(request: Request) -> str:
    """The reader's first language we have mails in (Accept-Language), else English."""
    for part in request.headers.get("accept-language", "")[:200].split(","):
        language = part.split(";", 1)[0].strip().replace("_", "-").split("-", 1)[0].lower()
        if language in LOCALES:
            return language
    return normalise_locale(None)


def form_context(
    state: WebState, values: dict[str, Any], *, error: FormError | None = None
) -> dict[str, Any]:
    """The sign-up page's context: ``values`` typed so far, the error (if any) and its field."""
    defaults: dict[str, Any] = {
        "email": "",
        "topics": [],
        "keywords": "",
        "frequency": "daily",
        "timezone": "UTC",
        "send_hour": str(DEFAULT_SEND_HOUR),
        "weekday": str(DEFAULT_WEEKDAY),
        "language": "en",
    }
    defaults.update(values)
    return {
        "topic_groups": topic_groups(state.catalogue),
        "timezone_groups": timezone_groups(),
        "known_zones": frozenset(timezones()),
        "weekdays": weekday_choices(),
        "languages": sorted(LOCALES.items()),
        "form": defaults,
        "error": str(error) if error else None,
        "error_field": error.field if error else None,
    }


# HEAD too: uptime monitors probe the front page with it.
@router.api_route("/", methods=["GET", "HEAD"])
@router.api_route("/subscribe", methods=["GET", "HEAD"])
def subscribe_page(request: Request, state: State) -> Response:
    context = form_context(state, {"language": browser_language(request)})
    return state.pages.render(request, "subscribe.html", context)


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
    language: Text = "",
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
        "language": language if language in LOCALES else "en",
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
            language=language[:8],
        )
    except FormError as exc:
        context = form_context(state, typed, error=exc)
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
