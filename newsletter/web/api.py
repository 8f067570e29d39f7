"""The JSON API: what a subscriber does on the web pages, for programs, under ``/api/v1``.

Every operation calls what the page for it calls (``newsletter.web.actions`` for
sign-up, confirmation and the rated paper, ``accounts`` for the rest, ``forms`` for the
validation, ``guards`` for token → subscriber, the same rate limits), so the pages
and the API cannot disagree. The bodies are in ``api_models``, the error answers in
``api_errors``. The app's OpenAPI document (``/api/openapi.json``)
describes this API only; the HTML pages are left out of it.

No CSRF token: the API is authenticated by the signed token in each path (the
tokens the mails carry), never by a cookie, so a page on another site has no
ambient credential to ride on. It takes JSON bodies only, and a form content type
(the kind a cross-site HTML form can post without a CORS preflight) is refused
with 415 before anything is read or changed.

Errors are JSON for every path under ``/api/``: ``{"status", "title", "message",
"errors"}``. Tampered, expired, revoked or wrong-purpose tokens get a 400 that
says nothing about any subscriber; invalid input gets a 422 whose message says
what to fix; over a rate limit, a 429. ``install`` wires this into the app.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Path
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException
from starlette.requests import Request

from newsletter.i18n import LOCALES
from newsletter.models import Subscriber, utcnow
from newsletter.subscribers import accounts
from newsletter.tokens import InvalidToken, Purpose
from newsletter.web import actions
from newsletter.web.actions import MAX_RANK
from newsletter.web.api_errors import invalid_input, json_for_api, responses
from newsletter.web.api_models import (
    Accepted,
    Confirmed,
    FeedbackRecorded,
    KeywordWeight,
    Preferences,
    PreferencesUpdate,
    SubscribeRequest,
    Token,
    Unsubscribed,
    Vote,
)
from newsletter.web.errors import WebError
from newsletter.web.forms import WEIGHTS, FormError, parse_choices, parse_email, whole_number
from newsletter.web.guards import State, posts_allowed, subscriber_for
from newsletter.web.state import client_ip

PREFIX = "/api/v1"
API_VERSION = "1"
_API_DESCRIPTION = (
    "Every operation but subscribe takes a signed token from a link in a mail, in its "
    "path: confirm, manage (`/subscribers/{token}/...`), feedback or unsubscribe; a "
    "token of another purpose is refused. Bodies are JSON only. Errors are "
    "`{status, title, message, errors}`."
)
OPENAPI_URL = "/api/openapi.json"
_JSON_TYPES = ("application/json",)


def install(app: FastAPI) -> None:
    """Add the API to ``app``, after its page handlers (those go on serving the pages).

    The app's OpenAPI document describes this router's operations and nothing else.
    """
    app.include_router(router)
    for kind in (WebError, InvalidToken, HTTPException, RequestValidationError, Exception):
        app.add_exception_handler(kind, json_for_api(app.exception_handlers.get(kind)))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(
                title=f"{app.title} API",
                version=API_VERSION,
                summary="Sign up, confirm, preferences, pause, feedback, unsubscribe, export.",
                description=_API_DESCRIPTION,
                routes=router.routes,
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


# --- guards -------------------------------------------------------------------------------


async def json_only(request: Request) -> None:
    """JSON bodies only: any other declared content type (forms above all) gets 415."""
    declared = request.headers.get("content-type")
    if declared is None:
        return
    media = declared.split(";", 1)[0].strip().lower()
    if media in _JSON_TYPES or (media.startswith("application/") and media.endswith("+json")):
        return
    raise WebError(
        415, "Unsupported media type", "This API takes JSON bodies only (application/json)."
    )


# Every write: JSON only, and the per-address POST budget of the pages.
Writes = [Depends(json_only), Depends(posts_allowed)]


# --- operations ---------------------------------------------------------------------------

router = APIRouter(prefix=PREFIX, tags=["subscriber"])


def _preferences(subscriber: Subscriber) -> Preferences:
    return Preferences(
        status=accounts.status_name(subscriber),
        email=subscriber.email,
        pending_email=subscriber.pending_email,
        topics=[i.topic_id for i in subscriber.interests if i.topic_id],
        keywords=[
            KeywordWeight(phrase=i.keywords, weight=i.weight)
            for i in subscriber.interests
            if i.keywords
        ],
        frequency=subscriber.frequency.value,
        timezone=subscriber.timezone,
        send_hour=subscriber.send_hour,
        send_weekday=subscriber.send_weekday,
        max_papers=subscriber.max_papers,
        always_send=subscriber.always_send,
        language=subscriber.locale,
    )


def _weight_key(weight: float) -> str:
    """The form's name for a weight (an unknown one stays unknown, for ``forms`` to refuse)."""
    return next((key for key, value in WEIGHTS.items() if value == weight), str(weight))


@router.post(
    "/subscribe",
    status_code=202,
    dependencies=Writes,
    response_model=Accepted,
    responses=responses(415, 422, 429),
)
def subscribe(
    request: Request, state: State, background: BackgroundTasks, body: SubscribeRequest
) -> Accepted:
    """Sign up (double opt-in): a confirmation mail goes to the address.

    The answer is the same for a new, pending, subscribed or refused address."""
    state.limits.require("subscribe", client_ip(request))
    try:
        address = parse_email(body.email)
        choices = parse_choices(
            state.catalogue,
            topics=body.topics,
            keywords=body.keywords,
            weights=None,
            frequency=body.frequency,
            timezone=body.timezone,
            send_hour=str(body.send_hour),
            weekday=str(body.send_weekday),
        )
    except FormError as exc:
        raise invalid_input(str(exc)) from None
    actions.sign_up(state, background, address, choices)
    return Accepted(
        status="check_email",
        message="If this address can receive mail, a confirmation link is on its way to it.",
    )


@router.post(
    "/confirm/{token}",
    dependencies=Writes,
    response_model=Confirmed,
    responses=responses(400, 410, 415, 422, 429),
)
def confirm(state: State, token: Token) -> Confirmed:
    """Confirm a sign-up with the token of the confirmation mail's link; idempotent."""
    confirmation = actions.confirm(state, token)
    return Confirmed(
        status="already" if confirmation.outcome == "already" else "confirmed",
        manage_token=confirmation.manage_token,
    )


@router.get(
    "/subscribers/{token}/preferences",
    response_model=Preferences,
    responses=responses(400, 422),
)
def get_preferences(state: State, token: Token) -> Preferences:
    """The subscriber's choices and status (manage token)."""
    with state.sessions() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        return _preferences(subscriber)


@router.put(
    "/subscribers/{token}/preferences",
    dependencies=Writes,
    response_model=Preferences,
    responses=responses(400, 415, 422, 429),
)
def put_preferences(state: State, token: Token, body: PreferencesUpdate) -> Preferences:
    """Replace the subscriber's choices (manage token)."""
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        try:
            if body.language is not None and body.language not in LOCALES:
                raise FormError("Please pick a language from the list.")
            choices = parse_choices(
                state.catalogue,
                topics=body.topics,
                keywords=[k.phrase for k in body.keywords],
                weights=[_weight_key(k.weight) for k in body.keywords],
                frequency=body.frequency,
                timezone=body.timezone,
                send_hour=str(body.send_hour),
                weekday=str(
                    subscriber.send_weekday if body.send_weekday is None else body.send_weekday
                ),
                max_papers=str(body.max_papers) if body.max_papers is not None else "",
                always_send=body.always_send,
            )
        except FormError as exc:
            raise invalid_input(str(exc)) from None
        accounts.apply_choices(subscriber, choices)
        if body.language is not None:
            subscriber.locale = body.language
        session.flush()
        return _preferences(subscriber)


def _set_paused(state: State, token: str, *, paused: bool) -> Preferences:
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        accounts.set_paused(session, subscriber, paused=paused, now=utcnow())
        return _preferences(subscriber)


@router.post(
    "/subscribers/{token}/pause",
    dependencies=Writes,
    response_model=Preferences,
    responses=responses(400, 415, 422, 429),
)
def pause(state: State, token: Token) -> Preferences:
    """Pause the issues (the ones not sent yet are cancelled); idempotent."""
    return _set_paused(state, token, paused=True)


@router.post(
    "/subscribers/{token}/resume",
    dependencies=Writes,
    response_model=Preferences,
    responses=responses(400, 415, 422, 429),
)
def resume(state: State, token: Token) -> Preferences:
    """Resume the issues; idempotent."""
    return _set_paused(state, token, paused=False)


@router.get(
    "/subscribers/{token}/export",
    response_model=dict[str, Any],
    responses=responses(400, 422),
)
def export(state: State, token: Token) -> dict[str, Any]:
    """Everything stored about the subscriber (manage token)."""
    with state.sessions() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        return accounts.export_data(session, subscriber)


@router.post(
    "/feedback/{token}/{rank}",
    dependencies=Writes,
    response_model=FeedbackRecorded,
    responses=responses(400, 404, 415, 422, 429),
)
def feedback(
    state: State,
    token: Token,
    rank: Annotated[
        int,
        whole_number(1, MAX_RANK),
        Path(ge=1, le=MAX_RANK, description="The paper's place in the issue."),
    ],
    body: Vote,
) -> FeedbackRecorded:
    """More or less like the paper at ``rank`` of an issue (feedback token); the last vote wins."""
    with state.sessions.begin() as session:
        subscriber, item, value = actions.rated_item(session, state, token, str(rank), body.vote)
        accounts.record_feedback(session, subscriber, item.paper_id, value, now=utcnow())
        paper = item.paper
        return FeedbackRecorded(
            vote=body.vote,
            rank=item.rank,
            paper=paper.external_id,
            title=paper.title,
            url=paper.url,
        )


@router.post(
    "/unsubscribe/{token}",
    dependencies=Writes,
    response_model=Unsubscribed,
    responses=responses(400, 415, 422, 429),
)
def unsubscribe(state: State, token: Token) -> Unsubscribed:
    """Unsubscribe with the token of a List-Unsubscribe link; idempotent.

    Under the POST budget like every write here (the pages' RFC 8058 one-click POST is
    exempt, as one mail provider posts for many readers; API clients are not that)."""
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.UNSUBSCRIBE, token)
        accounts.unsubscribe(session, subscriber)
    return Unsubscribed(status="unsubscribed")
