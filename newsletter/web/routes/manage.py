"""Preferences from a signed link: interests, schedule, pause, feedback, data, address."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Form, Path
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from newsletter.i18n import LOCALES
from newsletter.integers import MAX_ROW_ID
from newsletter.mail.latex import readable
from newsletter.models import Subscriber, utcnow
from newsletter.papers.catalogue import topic_groups
from newsletter.subscribers import accounts
from newsletter.subscribers.library import recent_imports
from newsletter.tokens import Purpose
from newsletter.web.forms import (
    DEFAULT_SEND_HOUR,
    MAX_KEYWORDS,
    MAX_PAPERS,
    WEIGHTS,
    FormError,
    parse_choices,
    parse_email,
    timezone_groups,
    timezones,
    weekday_choices,
    whole_number,
)
from newsletter.web.guards import FormGuard, State, linked_subscriber, subscriber_for
from newsletter.web.links import AddressChange
from newsletter.web.mailer import Mail
from newsletter.web.next_issue import describe, next_issue_time
from newsletter.web.state import WebState, client_ip

router = APIRouter()

Text = Annotated[str, Form()]
Texts = Annotated[list[str] | None, Form()]

# What a finished action says on the page it returns to (fixed texts: nothing typed
# by anyone is ever echoed through a URL).
DONE = {
    "saved": "Your preferences are saved. The next issue follows them.",
    "paused": "Issues are paused. Resume whenever you like.",
    "resumed": "Issues are back on.",
    "weekly": "You now get one issue a week. Change the day below.",
    "back": "Welcome back: you are subscribed again, with the choices below.",
    "not_back": "This subscription cannot be restarted from here; please sign up again.",
    "undone": "That rating is undone.",
    "address": "If that address can receive mail, a confirmation link is on its way to it. "
    "Your address changes once you click it.",
}
EXTRA_KEYWORD_ROWS = 3


def _weight_key(weight: float) -> str:
    return min(WEIGHTS, key=lambda key: abs(WEIGHTS[key] - weight))


def _form_values(subscriber: Subscriber) -> dict[str, Any]:
    return {
        "topics": [i.topic_id for i in subscriber.interests if i.topic_id],
        "keywords": [
            (i.keywords, _weight_key(i.weight)) for i in subscriber.interests if i.keywords
        ],
        "frequency": subscriber.frequency.value,
        "timezone": subscriber.timezone,
        "send_hour": str(subscriber.send_hour),
        "weekday": str(subscriber.send_weekday),
        "max_papers": str(subscriber.max_papers or ""),
        "always_send": subscriber.always_send,
        "language": subscriber.locale,
    }


def _page(
    request: Request,
    state: WebState,
    session: Session,
    subscriber: Subscriber,
    token: str,
    *,
    form: dict[str, Any] | None = None,
    error: FormError | None = None,
    done: str | None = None,
) -> Response:
    values = form or _form_values(subscriber)
    upcoming = next_issue_time(session, subscriber, now=utcnow())
    rows = list(values["keywords"])[:MAX_KEYWORDS]
    rows += [("", "1")] * min(EXTRA_KEYWORD_ROWS, MAX_KEYWORDS - len(rows))
    context = {
        "base": f"/manage/{token}",
        "subscriber": subscriber,
        "status": accounts.status_name(subscriber),
        "topic_groups": topic_groups(state.catalogue),
        "timezone_groups": timezone_groups(),
        "known_zones": frozenset(timezones()),
        "weekdays": weekday_choices(),
        "next_issue": describe(upcoming, subscriber.timezone) if upcoming else None,
        "form": values | {"keywords": rows},
        "weights": [("0.5", "a little"), ("1", "normal"), ("2", "a lot")],
        "languages": sorted(LOCALES.items()),
        "max_papers_limit": MAX_PAPERS,
        "default_papers": state.settings.max_papers,
        # Titles as the issue shows them: LaTeX turned into plain text.
        "feedback": [
            (rating, paper, readable(paper.title))
            for rating, paper in accounts.recent_feedback(session, subscriber)
        ],
        "library_imports": recent_imports(session, subscriber.id, limit=1),
        "error": str(error) if error else None,
        "error_field": error.field if error else None,
        "done": DONE.get(done or ""),
    }
    return state.pages.render(request, "manage.html", context, status=400 if error else 200)


def _back(token: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"/manage/{token}?done={done}", status_code=303)


@router.get("/manage/{token}")
def manage_page(request: Request, state: State, token: str, done: str = "") -> Response:
    with state.sessions() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        return _page(request, state, session, subscriber, token, done=done[:20])


@router.post("/manage/{token}/preferences", dependencies=FormGuard)
def save_preferences(
    request: Request,
    state: State,
    token: str,
    topics: Texts = None,
    keyword: Texts = None,
    weight: Texts = None,
    frequency: Text = "daily",
    timezone: Text = "UTC",
    send_hour: Text = str(DEFAULT_SEND_HOUR),
    weekday: Text = "",
    max_papers: Text = "",
    always_send: Text = "",
    language: Text = "",
) -> Response:
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        try:
            choices = parse_choices(
                state.catalogue,
                topics=topics or [],
                keywords=keyword or [],
                weights=weight or [],
                frequency=frequency,
                timezone=timezone,
                send_hour=send_hour,
                weekday=weekday or str(subscriber.send_weekday),
                max_papers=max_papers,
                always_send=always_send == "on",
                language=language[:8],
            )
        except FormError as exc:
            typed = {
                "topics": (topics or [])[:100],
                "keywords": [
                    (k[:400], w if w in WEIGHTS else "1")
                    for k, w in zip(keyword or [], (weight or []) + ["1"] * 100, strict=False)
                    if k.strip()
                ],
                "frequency": frequency[:16],
                "timezone": timezone[:64],
                "send_hour": send_hour[:4],
                "weekday": weekday[:4],
                "max_papers": max_papers[:4],
                "always_send": always_send == "on",
                "language": language[:8] if language in LOCALES else subscriber.locale,
            }
            return _page(request, state, session, subscriber, token, form=typed, error=exc)
        accounts.apply_choices(subscriber, choices)
    return _back(token, "saved")


@router.post("/manage/{token}/pause", dependencies=FormGuard)
def pause(state: State, token: str) -> Response:
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        accounts.set_paused(session, subscriber, paused=True, now=utcnow())
    return _back(token, "paused")


@router.post("/manage/{token}/resume", dependencies=FormGuard)
def resume(state: State, token: str) -> Response:
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        accounts.set_paused(session, subscriber, paused=False, now=utcnow())
    return _back(token, "resumed")


@router.post("/manage/{token}/resubscribe", dependencies=FormGuard)
def resubscribe(state: State, token: str) -> Response:
    """Come back in one step, with the old choices: the reader's own signed link is their
    consent again (``accounts.resubscribe`` records when)."""
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        back = accounts.resubscribe(session, subscriber, now=utcnow())
        active = accounts.status_name(subscriber) in ("active", "paused")
    return _back(token, "back" if back or active else "not_back")


# A 400 page for anything but an id (a huge number was a 500: out of the column's range).
PaperId = Annotated[int, whole_number(1, MAX_ROW_ID), Path()]


@router.post("/manage/{token}/feedback/{paper_id}/undo", dependencies=FormGuard)
def undo_feedback(state: State, token: str, paper_id: PaperId) -> Response:
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        accounts.undo_feedback(session, subscriber, paper_id)
    return _back(token, "undone")


@router.post("/manage/{token}/unsubscribe", dependencies=FormGuard)
def unsubscribe(request: Request, state: State, token: str) -> Response:
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        accounts.unsubscribe(session, subscriber)
        email = subscriber.email
    return state.pages.render(
        request,
        "unsubscribed.html",
        {
            "email": email,
            "manage_url": f"/manage/{token}",
            "resubscribe_url": f"/manage/{token}/resubscribe",
        },
    )


@router.get("/manage/{token}/export")
def export(state: State, token: str) -> Response:
    """Everything stored about the subscriber, as a JSON download."""
    with state.sessions() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        data = accounts.export_data(session, subscriber)
    return Response(
        json.dumps(data, indent=2, ensure_ascii=False) + "\n",
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="my-newsletter-data.json"'},
    )


@router.get("/manage/{token}/delete")
def delete_page(request: Request, state: State, token: str) -> Response:
    with state.sessions() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        email = subscriber.email
    return state.pages.render(request, "delete.html", {"email": email, "base": f"/manage/{token}"})


@router.post("/manage/{token}/delete", dependencies=FormGuard)
def delete(request: Request, state: State, token: str) -> Response:
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        accounts.delete_subscriber(session, subscriber)
    return state.pages.render(request, "deleted.html")


@router.post("/manage/{token}/address", dependencies=FormGuard)
def change_address(
    request: Request, state: State, background: BackgroundTasks, token: str, email: Text = ""
) -> Response:
    state.limits.require("subscribe", client_ip(request))
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        try:
            address = parse_email(email)
        except FormError as exc:
            return _page(request, state, session, subscriber, token, error=exc)
        mail = None
        if accounts.request_address_change(session, subscriber, address):
            mail = Mail(
                to=address,
                template="address",
                context={
                    "old_email": subscriber.email,
                    "address_url": state.links.address_url(subscriber, address),
                },
                locale=subscriber.locale,
            )
    if mail is not None and state.limits.allow("mail", address):
        background.add_task(state.mailer.send, mail)
    return _back(token, "address")


@router.get("/address/{token}")
def address_page(request: Request, state: State, token: str) -> Response:
    with state.sessions() as session:
        subscriber, change = _address_subscriber(session, state, token)
        pending = subscriber.pending_email == change.email
    return state.pages.render(
        request,
        "address.html",
        {"email": change.email, "pending": pending},
        status=200 if pending else 409,
    )


@router.post("/address/{token}", dependencies=FormGuard)
def confirm_address(request: Request, state: State, token: str) -> Response:
    with state.sessions.begin() as session:
        subscriber, change = _address_subscriber(session, state, token)
        changed = accounts.confirm_address_change(session, subscriber, change.email)
        manage_url = state.links.manage_url(subscriber)
    if not changed:
        return state.pages.render(
            request, "address.html", {"email": change.email, "pending": False}, status=409
        )
    return state.pages.render(
        request, "address_done.html", {"email": change.email, "manage_url": manage_url}
    )


def _address_subscriber(
    session: Session, state: WebState, token: str
) -> tuple[Subscriber, AddressChange]:
    change = state.links.read_address(token)
    return linked_subscriber(session, change.subscriber_id, change.version), change
