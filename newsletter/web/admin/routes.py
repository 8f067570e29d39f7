"""The admin area: login, overview with charts, editions, subscribers, test send, preview."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date
from functools import partial
from typing import Annotated

from fastapi import APIRouter, FastAPI, Form, Query
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from newsletter import operators
from newsletter.mail.failures import recent_mail_failures
from newsletter.models import SubscriberStatus, utcnow
from newsletter.subscribers.roster import CSV_COLUMNS, protect_cell
from newsletter.web.admin import auth, charts, imports, logins, people, previews, stats, topics
from newsletter.web.admin.auth import CurrentOperator, LoginRequired, SignedIn
from newsletter.web.admin.page import render as _page
from newsletter.web.forms import whole_number
from newsletter.web.guards import FormGuard, State
from newsletter.web.state import WebState, client_ip

router = APIRouter(prefix="/admin")

STATUSES = [status.value for status in SubscriberStatus]


def install(app: FastAPI) -> None:
    """Add the admin routes, the redirect to the login page they rely on, and the
    login throttle (its counts in the rate limits' storage)."""
    state = app.state.web
    if not isinstance(state, WebState):
        raise RuntimeError("install the admin area into an app built by create_app")
    logins.install(app, logins.LoginThrottle(state.settings.rate_limit_storage))
    app.include_router(router)
    app.include_router(imports.router)
    app.include_router(topics.router)
    app.include_router(people.router)
    app.include_router(previews.router)

    async def to_login(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        return RedirectResponse(auth.login_url(exc.next_url), status_code=303)

    app.add_exception_handler(LoginRequired, to_login)


# Login and logout.


@router.get("/login")
def login_page(request: Request, state: State, next: str = auth.PATH) -> Response:
    if auth.signed_in(request, state) is not None:
        return RedirectResponse(auth.safe_next(next), status_code=303)
    return _page(request, state, "login.html", None, {"next": auth.safe_next(next), "error": ""})


def _check_password(state: WebState, username: str, password: str) -> SignedIn | None:
    # In a worker thread (LoginThrottle.attempt): argon2 takes tens of milliseconds.
    with state.sessions.begin() as session:
        operator = operators.authenticate(session, username, password)
        return auth.signed_in_as(operator) if operator is not None else None


@router.post("/login", dependencies=FormGuard)
async def login(
    request: Request,
    state: State,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=2000)] = "",
    next: Annotated[str, Form(max_length=2000)] = auth.PATH,
) -> Response:
    context = {"next": auth.safe_next(next), "username": username}
    try:
        operator = await logins.throttle_of(request).attempt(
            partial(_check_password, state, username, password),
            account=operators.normalise_username(username),
            address=client_ip(request),
        )
    except logins.LoginRefused as refused:
        response = _page(
            request,
            state,
            "login.html",
            None,
            {**context, "error": refused.message},
            status=refused.status,
        )
        response.headers["Retry-After"] = str(refused.retry_after)
        return response
    if operator is not None:
        response = RedirectResponse(auth.safe_next(next), status_code=303)
        auth.start_session(state, response, operator)
        return response
    return _page(
        request,
        state,
        "login.html",
        None,
        {**context, "error": "That username and password do not match. Please try again."},
        status=401,
    )


@router.post("/logout", dependencies=FormGuard)
def logout(request: Request, state: State) -> Response:
    """End the session: this cookie and every other one of the operator (see ``auth``)."""
    operator = auth.signed_in(request, state)
    if operator is not None:
        with state.sessions.begin() as session:
            operators.end_sessions(session, operator.id)
    response = RedirectResponse(auth.PATH + "/login?out=1", status_code=303)
    auth.end_session(state, response)
    return response


# Figures.


@router.get("")
def overview(request: Request, state: State, operator: CurrentOperator) -> Response:
    with state.sessions() as session:
        deliveries = stats.deliveries_by_status(session)
        subscribers = stats.subscribers_by_status(session)
        per_day = stats.deliveries_per_day(session)
        over_time = stats.subscribers_over_time(session, today=utcnow().date())
        topics = stats.top_topics(session)
        latest = stats.editions(session, limit=1)
        problems = stats.problems(session, now=utcnow())
    queued = deliveries["pending"] + deliveries["claimed"] + deliveries["retry"]
    return _page(
        request,
        state,
        "overview.html",
        operator,
        {
            "deliveries": deliveries,
            "subscribers": subscribers,
            "queued": queued,
            "latest": latest[0] if latest else None,
            "deliveries_chart": charts.deliveries_chart(per_day),
            "subscribers_chart": charts.subscribers_chart(over_time),
            "topics_chart": charts.topics_chart(topics),
            "colours": charts.COLOURS,
            "problems": problems,
        },
    )


@router.get("/editions")
def editions(request: Request, state: State, operator: CurrentOperator) -> Response:
    with state.sessions() as session:
        rows = stats.editions(session)
        failures = stats.recent_failures(session)
        mail_failures = recent_mail_failures(session)
    return _page(
        request,
        state,
        "editions.html",
        operator,
        {
            "editions": rows,
            "failures": failures,
            "mail_failures": mail_failures,
            "outcomes": stats.OUTCOMES,
        },
    )


def _status_filter(status: str) -> str:
    return status if status in STATUSES else ""


@router.get("/subscribers")
def subscribers(
    request: Request,
    state: State,
    operator: CurrentOperator,
    q: Annotated[str, Query(max_length=200)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
    page: Annotated[int, whole_number(1, 100_000), Query(ge=1, le=100_000)] = 1,
    deleted: Annotated[str, Query(max_length=20)] = "",  # the id of a subscriber just deleted
) -> Response:
    search, wanted = q.strip(), _status_filter(status)
    with state.sessions() as session:
        rows, total = stats.subscribers(
            session, search=search, status=wanted, offset=(page - 1) * stats.PAGE_SIZE
        )
        counts = stats.subscribers_by_status(session)
    pages = max(1, -(-total // stats.PAGE_SIZE))
    return _page(
        request,
        state,
        "subscribers.html",
        operator,
        {
            "rows": rows,
            "total": total,
            "q": search,
            "status": wanted,
            "statuses": STATUSES,
            "counts": counts,
            "page": page,
            "pages": pages,
            "deleted": deleted if deleted.isdecimal() else "",
            **imports.form_context(state),
        },
    )


def _csv_cell(value: object) -> str:
    text = "" if value is None else value.isoformat() if isinstance(value, date) else str(value)
    # The import's own columns (newsletter.subscribers.roster.CSV_COLUMNS), status and consent
    # date among them, so an export imports back with everyone's status and consent (what
    # the file has no column for, such as keyword weights, always-send, language and
    # papers per issue, stays as stored, and takes the defaults for new addresses); a cell
    # starting with = + - @
    # is a formula to a spreadsheet, so it is marked as text (the import takes it off).
    return protect_cell(text)


@router.get("/subscribers.csv")
def subscribers_csv(
    state: State,
    operator: CurrentOperator,
    q: Annotated[str, Query(max_length=200)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    rows = stats.all_subscribers(state.sessions, search=q.strip(), status=_status_filter(status))

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow([_csv_cell(getattr(row, column)) for column in CSV_COLUMNS])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    stamp = utcnow().strftime("%Y%m%d")
    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="subscribers-{stamp}.csv"'},
    )
