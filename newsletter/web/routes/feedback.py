"""The issue online, where the reader rates its papers ("more / less like this", undo).

Safe from link scanners (corporate mail filters open every link in a message): a GET
never records. The mail's rating link opens the issue's page at that paper
(``/view/{token}?rate=N&choice=more#paper-N``) with the choice ready behind one button;
every button is a POST that records and redirects back to the page (post/redirect/get),
so the reader can rate every paper of the issue there, without JavaScript. Links of
older mails (``/feedback/{token}/{rank}/{choice}``) redirect to the same page state.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from newsletter.delivery.compose import select_renderable
from newsletter.i18n import gettext
from newsletter.integers import NotInRange, small_int
from newsletter.mail.view import CardView, issue_view
from newsletter.models import Delivery, DeliveryItem, Feedback, Subscriber, utcnow
from newsletter.subscribers import accounts
from newsletter.tokens import Purpose, TokenData
from newsletter.web.actions import CHOICES, MAX_RANK, rated_item
from newsletter.web.errors import bad_link, not_found
from newsletter.web.guards import FormGuard, State, subscriber_for
from newsletter.web.state import WebState

router = APIRouter()

UNDO = "undo"


@dataclass(frozen=True)
class RatedCard:
    """One paper of the issue page with the reader's rating of it (+1, -1 or None)."""

    paper: CardView
    rating: int | None


@dataclass(frozen=True)
class Ready:
    """The choice a mail link brought the reader here with, waiting for its button."""

    rank: int
    choice: str
    value: int


def _rank(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return small_int(value, low=1, high=MAX_RANK)
    except NotInRange:
        return None


def _delivery(session: Session, state: WebState, token: str) -> tuple[Subscriber, Delivery]:
    subscriber, data = subscriber_for(session, state, Purpose.VIEW, token)
    if data.subject is None:
        raise bad_link()
    delivery = session.scalars(
        select_renderable().where(
            Delivery.id == data.subject, Delivery.subscriber_id == subscriber.id
        )
    ).one_or_none()
    if delivery is None:
        raise not_found("This issue is no longer available.")
    return subscriber, delivery


def _ratings(session: Session, subscriber: Subscriber, delivery: Delivery) -> dict[int, int]:
    paper_ids = [item.paper_id for item in delivery.items]
    rows = session.execute(
        select(Feedback.paper_id, Feedback.value).where(
            Feedback.subscriber_id == subscriber.id, Feedback.paper_id.in_(paper_ids)
        )
    )
    return {paper_id: value for paper_id, value in rows}


@router.get("/view/{token}")
def view_online(
    request: Request,
    state: State,
    token: str,
    rate: str | None = None,
    choice: str | None = None,
    rated: str | None = None,
) -> Response:
    """The issue as a page with a rating form per paper; opening it records nothing."""
    with state.sessions() as session:
        subscriber, delivery = _delivery(session, state, token)
        view = issue_view(delivery, settings=state.settings, tokens=state.tokens)
        ratings = _ratings(session, subscriber, delivery)
        paper_ids = {item.rank: item.paper_id for item in delivery.items}
    cards = [RatedCard(p, ratings.get(paper_ids.get(p.rank, -1))) for p in view.cards]
    ranks = {card.paper.rank for card in cards}
    ready_rank = _rank(rate)
    ready = None
    if ready_rank in ranks and choice in CHOICES:
        ready = Ready(ready_rank, choice, CHOICES[choice])
    rated_rank = _rank(rated)
    return state.pages.render(
        request,
        "issue.html",
        {
            "issue": view,
            "cards": cards,
            "ready": ready,
            "rated": rated_rank if rated_rank in ranks else None,
            "rate_action": f"/view/{token}/rate",
            # The labels around the reasons in the reader's language, as the mail has them
            # (the reasons themselves come worded in it already).
            "why_label": gettext(view.locale, "Why:"),
            "matched_label": gettext(view.locale, "matched terms:"),
        },
    )


@router.post("/view/{token}/rate/{rank}/{choice}", dependencies=FormGuard)
def rate_paper(state: State, token: str, rank: str, choice: str) -> Response:
    """Records more (+1) or less (-1) like this paper, or undoes the rating; back to the
    page at that paper. Again is harmless, and the other choice replaces the first."""
    place = _rank(rank)
    if place is None or (choice not in CHOICES and choice != UNDO):
        raise not_found("This issue has no such paper.")
    with state.sessions.begin() as session:
        subscriber, data = subscriber_for(session, state, Purpose.VIEW, token)
        if data.subject is None:
            raise bad_link()
        item = accounts.feedback_item(session, subscriber, data.subject, place)
        if item is None:
            raise not_found("This issue has no such paper.")
        _apply(session, subscriber, item, choice)
    return RedirectResponse(f"/view/{token}?rated={place}#paper-{place}", status_code=303)


def _apply(session: Session, subscriber: Subscriber, item: DeliveryItem, choice: str) -> None:
    if choice == UNDO:
        accounts.undo_feedback(session, subscriber, item.paper_id)
    else:
        accounts.record_feedback(session, subscriber, item.paper_id, CHOICES[choice], now=utcnow())


def _page_of(state: WebState, subscriber: Subscriber, delivery_id: int) -> str:
    data = TokenData(subscriber.id, subscriber.token_version, delivery_id)
    return f"/view/{state.tokens.make(Purpose.VIEW, data)}"


@router.get("/feedback/{token}/{rank}/{choice}")
def feedback_link(state: State, token: str, rank: str, choice: str) -> Response:
    """An older mail's rating link: the issue page with that choice ready (nothing recorded)."""
    with state.sessions() as session:
        subscriber, item, _ = rated_item(session, state, token, rank, choice)
        page = _page_of(state, subscriber, item.delivery_id)
    return RedirectResponse(
        f"{page}?rate={item.rank}&choice={choice}#paper-{item.rank}", status_code=303
    )


@router.post("/feedback/{token}/{rank}/{choice}", dependencies=FormGuard)
def give_feedback(state: State, token: str, rank: str, choice: str) -> Response:
    """The confirm button of the older feedback page: records, then shows the issue page."""
    with state.sessions.begin() as session:
        subscriber, item, _ = rated_item(session, state, token, rank, choice)
        _apply(session, subscriber, item, choice)
        page = _page_of(state, subscriber, item.delivery_id)
    return RedirectResponse(f"{page}?rated={item.rank}#paper-{item.rank}", status_code=303)
