"""The JSON API: what a subscriber does on the web pages, for programs, under ``/api/v1``.

Every operation calls what the page for it calls (``accounts``, ``forms`` for the
validation, ``guards`` for token → subscriber, the same rate limits), so the pages
and the API cannot disagree. The app's OpenAPI document (``/api/openapi.json``)
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

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Path
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from newsletter.i18n import LOCALES
from newsletter.models import Subscriber, utcnow
from newsletter.subscribers import accounts
from newsletter.tokens import InvalidToken, Purpose
from newsletter.web.errors import WebError
from newsletter.web.forms import (
    DEFAULT_SEND_HOUR,
    DEFAULT_WEEKDAY,
    MAX_EMAIL,
    MAX_KEYWORD_LENGTH,
    MAX_KEYWORDS,
    MAX_PAPERS,
    WEIGHTS,
    FormError,
    parse_choices,
    parse_email,
    whole_number,
)
from newsletter.web.guards import State, posts_allowed, subscriber_for
from newsletter.web.routes.feedback import MAX_RANK
from newsletter.web.routes.feedback import _item as feedback_item
from newsletter.web.routes.manage import _status as subscriber_status
from newsletter.web.routes.subscribe import _refuse as refuse_confirmation
from newsletter.web.routes.subscribe import _signup_mail as signup_mail
from newsletter.web.state import client_ip

log = logging.getLogger(__name__)

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
# Generous bounds on list lengths: ``forms`` says what is really allowed, these
# only keep a request from making the validation do silly amounts of work.
_MAX_TOPICS = 200
_MAX_KEYWORD_ITEMS = 4 * MAX_KEYWORDS


# --- errors -------------------------------------------------------------------------------


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ApiErrorBody(BaseModel):
    """Every error of the API looks like this."""

    status: int
    title: str
    message: str
    errors: list[ErrorItem] = Field(default_factory=list)


def _error(
    status: int,
    title: str,
    message: str,
    errors: Sequence[ErrorItem] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ApiErrorBody(status=status, title=title, message=message, errors=list(errors))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def invalid_input(message: str) -> WebError:
    return WebError(422, "Invalid request", message)


def _validation_items(exc: RequestValidationError) -> list[ErrorItem]:
    # Only the location, message and type: pydantic's ``input`` would echo what was
    # sent, and its ``ctx`` may hold objects JSON cannot carry.
    items = []
    for error in exc.errors():
        loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
        items.append(
            ErrorItem(loc=loc, msg=str(error.get("msg", "")), type=str(error.get("type", "")))
        )
    return items


def _validation_message(items: Sequence[ErrorItem]) -> str:
    parts = [f"{'.'.join(str(p) for p in item.loc) or 'request'}: {item.msg}" for item in items]
    shown = "; ".join(parts[:3])
    more = f" (and {len(parts) - 3} more)" if len(parts) > 3 else ""
    return f"The request is not valid. {shown}{more}." if shown else "The request is not valid."


def error_response(exc: Exception) -> JSONResponse:
    """The JSON answer for an exception raised while serving an API path."""
    if isinstance(exc, WebError):
        return _error(exc.status, exc.title, exc.message)
    if isinstance(exc, InvalidToken):
        reason = str(exc).capitalize() + "." if str(exc) else "This link is not valid."
        return _error(
            400, "Invalid token", f"{reason} Use the token from the newest mail, all of it."
        )
    if isinstance(exc, RequestValidationError):
        items = _validation_items(exc)
        return _error(422, "Invalid request", _validation_message(items), items)
    if isinstance(exc, HTTPException):
        try:
            title = HTTPStatus(exc.status_code).phrase
        except ValueError:
            title = "Error"
        message = {
            404: "There is no such operation; see /api/openapi.json.",
            405: "This operation does not take that method; see /api/openapi.json.",
        }.get(exc.status_code)
        if message is None:
            detail = exc.detail if isinstance(exc.detail, str) else ""
            message = (
                f"{detail}." if detail and detail != title else "The request cannot be served."
            )
        return _error(exc.status_code, title, message, headers=exc.headers)
    return _error(
        500,
        "Something went wrong on our side",
        "Nothing was changed. Please try again in a few minutes.",
    )


Handler = Callable[[Request, Exception], Response | Awaitable[Response]]


def _json_for_api(page: Handler | None) -> Handler:
    """An exception handler: JSON under ``/api/``, ``page`` (the HTML one) elsewhere."""

    async def handle(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/") or page is None:
            if not isinstance(
                exc, WebError | InvalidToken | RequestValidationError | HTTPException
            ):
                log.error(
                    "unhandled error on %s %s", request.method, request.url.path, exc_info=exc
                )
            return error_response(exc)
        answer = page(request, exc)
        return await answer if inspect.isawaitable(answer) else answer

    return handle


def install(app: FastAPI) -> None:
    """Add the API to ``app``, after its page handlers (those go on serving the pages).

    The app's OpenAPI document describes this router's operations and nothing else.
    """
    app.include_router(router)
    for kind in (WebError, InvalidToken, HTTPException, RequestValidationError, Exception):
        app.add_exception_handler(kind, _json_for_api(app.exception_handlers.get(kind)))

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


def _plain_text(value: str) -> str:
    """No control characters (a newline included) and no lone surrogates: text a database
    of either kind stores as it is."""
    if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ValueError("must not contain control characters")
    return value


def _text(limit: int, **kwargs: Any) -> Any:
    return Field(max_length=limit, **kwargs)


Text = Annotated[str, AfterValidator(_plain_text)]
Token = Annotated[
    str,
    Path(description="The signed token from a link in a mail (the last part of its path)."),
]


# --- models -------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeywordChoice(_Model):
    phrase: Annotated[Text, _text(MAX_KEYWORD_LENGTH, min_length=1)]
    weight: float = Field(
        default=1.0,
        description="How much it counts beside a topic (1): 0.5, 1 or 2.",
        json_schema_extra={"enum": [float(w) for w in sorted(set(WEIGHTS.values()))]},
    )


class KeywordWeight(BaseModel):
    phrase: str
    weight: float


FrequencyName = Literal["daily", "weekly"]
SendHour = Annotated[
    int, whole_number(0, 23), Field(ge=0, le=23, description="Local hour the issue is sent.")
]
SendWeekday = Annotated[
    int,
    whole_number(0, 6),
    Field(ge=0, le=6, description="Day a weekly issue is sent: 0 = Monday ... 6 = Sunday."),
]
MaxPapers = Annotated[int, whole_number(1, MAX_PAPERS), Field(ge=1, le=MAX_PAPERS)]
TopicIds = Annotated[
    list[Annotated[Text, _text(64)]],
    Field(max_length=_MAX_TOPICS, description="Topic ids from the catalogue, e.g. cs.CL."),
]
Timezone = Annotated[Text, _text(64, description="An IANA time zone, e.g. Europe/Berlin.")]


class SubscribeRequest(_Model):
    email: Annotated[Text, _text(MAX_EMAIL)]
    topics: TopicIds = []
    keywords: Annotated[
        list[Annotated[Text, _text(MAX_KEYWORD_LENGTH)]], Field(max_length=_MAX_KEYWORD_ITEMS)
    ] = []
    frequency: FrequencyName = "daily"
    timezone: Timezone = "UTC"
    send_hour: SendHour = DEFAULT_SEND_HOUR
    send_weekday: SendWeekday = DEFAULT_WEEKDAY


class Accepted(BaseModel):
    status: Literal["check_email"]
    message: str


class Confirmed(BaseModel):
    status: Literal["confirmed", "already"]
    manage_token: str = Field(description="The token for /api/v1/subscribers/{token}/...")


class PreferencesUpdate(_Model):
    """The whole set of choices (what is left out takes its default, as on the page)."""

    topics: TopicIds = []
    keywords: Annotated[list[KeywordChoice], Field(max_length=_MAX_KEYWORD_ITEMS)] = []
    frequency: FrequencyName = "daily"
    timezone: Timezone = "UTC"
    send_hour: SendHour = DEFAULT_SEND_HOUR
    send_weekday: Annotated[
        SendWeekday | None,
        Field(description="Day a weekly issue is sent, 0 = Monday; left out, it stays."),
    ] = None
    max_papers: MaxPapers | None = None
    always_send: bool = False
    language: Annotated[
        Annotated[Text, _text(8)] | None,
        Field(description=f"One of {', '.join(sorted(LOCALES))}; left out, it stays."),
    ] = None


class Preferences(BaseModel):
    status: str = Field(description="active, paused, pending, unsubscribed or bounced")
    email: str
    pending_email: str | None
    topics: list[str]
    keywords: list[KeywordWeight]
    frequency: str
    timezone: str
    send_hour: int
    send_weekday: int = Field(description="0 = Monday ... 6 = Sunday (weekly issues).")
    max_papers: int | None
    always_send: bool
    language: str


class Vote(_Model):
    vote: Literal["more", "less"]


class FeedbackRecorded(BaseModel):
    vote: Literal["more", "less"]
    rank: int
    paper: str = Field(description="The paper's id at its source, e.g. an arXiv id.")
    title: str
    url: str


class Unsubscribed(BaseModel):
    status: Literal["unsubscribed"]


# --- operations ---------------------------------------------------------------------------

_ERROR_TEXTS = {
    400: "Tampered, expired, revoked or wrong-purpose token.",
    404: "No such paper in that issue.",
    410: "The sign-up expired; subscribe again.",
    415: "Not a JSON body.",
    422: "Invalid input; the message says what to fix.",
    429: "Too many requests from this address.",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": ApiErrorBody, "description": _ERROR_TEXTS[status]} for status in statuses
    }


router = APIRouter(prefix=PREFIX, tags=["subscriber"])


def _preferences(subscriber: Subscriber) -> Preferences:
    return Preferences(
        status=subscriber_status(subscriber),
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
    responses=_errors(415, 422, 429),
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
    now = utcnow()
    with state.sessions.begin() as session:
        accounts.purge_expired_signups(session, now=now)
        outcome, subscriber = accounts.request_signup(session, address, choices, now=now)
        mail = signup_mail(state, outcome, subscriber)
    if mail is not None and state.limits.allow("mail", address):
        background.add_task(state.mailer.send, mail)
    return Accepted(
        status="check_email",
        message="If this address can receive mail, a confirmation link is on its way to it.",
    )


@router.post(
    "/confirm/{token}",
    dependencies=Writes,
    response_model=Confirmed,
    responses=_errors(400, 410, 415, 422, 429),
)
def confirm(state: State, token: Token) -> Confirmed:
    """Confirm a sign-up with the token of the confirmation mail's link; idempotent."""
    with state.sessions.begin() as session:
        subscriber, data = subscriber_for(session, state, Purpose.CONFIRM, token)
        outcome = accounts.confirm_signup(subscriber, data.subject, now=utcnow())
        manage_token = state.links.manage_token(subscriber)
    refuse_confirmation(outcome)
    return Confirmed(
        status="already" if outcome == "already" else "confirmed", manage_token=manage_token
    )


@router.get(
    "/subscribers/{token}/preferences",
    response_model=Preferences,
    responses=_errors(400, 422),
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
    responses=_errors(400, 415, 422, 429),
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
    responses=_errors(400, 415, 422, 429),
)
def pause(state: State, token: Token) -> Preferences:
    """Pause the issues (the ones not sent yet are cancelled); idempotent."""
    return _set_paused(state, token, paused=True)


@router.post(
    "/subscribers/{token}/resume",
    dependencies=Writes,
    response_model=Preferences,
    responses=_errors(400, 415, 422, 429),
)
def resume(state: State, token: Token) -> Preferences:
    """Resume the issues; idempotent."""
    return _set_paused(state, token, paused=False)


@router.get(
    "/subscribers/{token}/export",
    response_model=dict[str, Any],
    responses=_errors(400, 422),
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
    responses=_errors(400, 404, 415, 422, 429),
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
        subscriber, item, value = feedback_item(session, state, token, str(rank), body.vote)
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
    responses=_errors(400, 415, 422, 429),
)
def unsubscribe(state: State, token: Token) -> Unsubscribed:
    """Unsubscribe with the token of a List-Unsubscribe link; idempotent.

    Under the POST budget like every write here (the pages' RFC 8058 one-click POST is
    exempt, as one mail provider posts for many readers; API clients are not that)."""
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.UNSUBSCRIBE, token)
        accounts.unsubscribe(session, subscriber)
    return Unsubscribed(status="unsubscribed")
