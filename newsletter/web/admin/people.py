"""One subscriber's page in the admin area, and what an operator can do there:
unsubscribe, delete their data, resend the confirmation mail, lift a suppression.

Every action is a POST with the admin's CSRF token, recorded with the operator's name
(``newsletter.subscribers.casework``, shared with ``newsletter subscribers``), and
answered with a redirect back to the page (post/redirect/get), which says what was done.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from newsletter.models import Subscriber, utcnow
from newsletter.subscribers import casework
from newsletter.web.admin.auth import CurrentOperator
from newsletter.web.admin.page import render
from newsletter.web.errors import not_found
from newsletter.web.guards import FormGuard, State
from newsletter.web.mailer import Mail

router = APIRouter(prefix="/admin/subscribers")

# What the page says after an action (the query names a message, never carries text).
DONE = {
    "unsubscribed": "Unsubscribed. Issues not sent yet are cancelled.",
    "not-subscribed": "Nothing changed: they were not subscribed.",
    "confirmation-sent": "A new confirmation mail is on its way.",
    "confirmation-failed": "The confirmation mail could not be sent: see the failures on the "
    "Editions page.",
    "lifted": "The suppression is lifted; the reason is recorded below.",
    "not-suppressed": "Nothing changed: the address was not suppressed.",
}


def _page_url(subscriber_id: int, done: str) -> str:
    return f"/admin/subscribers/{subscriber_id}?done={done}"


def _load(session: Session, subscriber_id: int) -> Subscriber:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise not_found("There is no such subscriber (any more).")
    return subscriber


def _show(
    request: Request,
    state: State,
    operator: CurrentOperator,
    subscriber_id: int,
    *,
    done: str = "",
    error: str = "",
    status: int = 200,
) -> Response:
    with state.sessions() as session:
        record = casework.subscriber_record(session, _load(session, subscriber_id))
    return render(
        request,
        state,
        "subscriber.html",
        operator,
        {"r": record, "done": DONE.get(done, ""), "error": error},
        status=status,
    )


@router.get("/{subscriber_id:int}")
def subscriber_page(
    request: Request,
    state: State,
    operator: CurrentOperator,
    subscriber_id: int,
    done: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    return _show(request, state, operator, subscriber_id, done=done)


@router.post("/{subscriber_id:int}/unsubscribe", dependencies=FormGuard)
def unsubscribe(
    state: State,
    operator: CurrentOperator,
    subscriber_id: int,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    with state.sessions.begin() as session:
        changed = casework.unsubscribe(
            session,
            _load(session, subscriber_id),
            operator=operator.username,
            reason=reason,
            now=utcnow(),
        )
    return RedirectResponse(
        _page_url(subscriber_id, "unsubscribed" if changed else "not-subscribed"), status_code=303
    )


@router.post("/{subscriber_id:int}/delete", dependencies=FormGuard)
def delete(
    request: Request,
    state: State,
    operator: CurrentOperator,
    subscriber_id: int,
    confirm: Annotated[str, Form(max_length=10)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    if confirm != "yes":
        return _show(
            request,
            state,
            operator,
            subscriber_id,
            error="Tick the box to confirm: deleting cannot be undone.",
            status=400,
        )
    with state.sessions.begin() as session:
        subscriber = _load(session, subscriber_id)
        casework.delete(
            session, subscriber, operator=operator.username, reason=reason, now=utcnow()
        )
    # The id, not the address: the redirect's URL lands in the access log, which must
    # not keep the address of someone whose data was just erased.
    return RedirectResponse(
        "/admin/subscribers?" + urlencode({"deleted": subscriber_id}), status_code=303
    )


@router.post("/{subscriber_id:int}/resend-confirmation", dependencies=FormGuard)
async def resend_confirmation(
    request: Request, state: State, operator: CurrentOperator, subscriber_id: int
) -> Response:
    """A new confirmation mail, sent now (the operator waits for the relay's answer)."""
    try:
        with state.sessions.begin() as session:
            subscriber = _load(session, subscriber_id)
            casework.reopen_signup(session, subscriber, operator=operator.username, now=utcnow())
            mail = Mail(
                to=subscriber.email,
                template="confirm",
                context={"confirm_url": state.links.confirm_url(subscriber)},
                locale=subscriber.locale,
            )
    except casework.CaseworkError as exc:
        return _show(request, state, operator, subscriber_id, error=str(exc), status=400)
    sent = await state.mailer.send(mail)
    return RedirectResponse(
        _page_url(subscriber_id, "confirmation-sent" if sent else "confirmation-failed"),
        status_code=303,
    )


@router.post("/{subscriber_id:int}/lift-suppression", dependencies=FormGuard)
def lift_suppression(
    request: Request,
    state: State,
    operator: CurrentOperator,
    subscriber_id: int,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    try:
        with state.sessions.begin() as session:
            email = _load(session, subscriber_id).email
            lifted = casework.lift_suppression(
                session, email, operator=operator.username, reason=reason, now=utcnow()
            )
    except casework.CaseworkError as exc:
        return _show(request, state, operator, subscriber_id, error=str(exc), status=400)
    return RedirectResponse(
        _page_url(subscriber_id, "lifted" if lifted else "not-suppressed"), status_code=303
    )
