"""Feedback on one paper of an issue ("more / less like this"), and the issue online."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from newsletter.delivery.compose import select_renderable
from newsletter.mail.view import issue_view
from newsletter.models import Delivery, DeliveryItem, Subscriber, utcnow
from newsletter.subscribers import accounts
from newsletter.tokens import Purpose
from newsletter.web.actions import rated_item
from newsletter.web.errors import bad_link, not_found
from newsletter.web.guards import FormGuard, State, subscriber_for
from newsletter.web.security import VIEW_CSP
from newsletter.web.state import WebState

router = APIRouter()


def _context(
    state: WebState, subscriber: Subscriber, item: DeliveryItem, value: int, token: str
) -> dict[str, object]:
    paper = item.paper
    return {
        "paper": paper,
        "authors": ", ".join(paper.authors[:3]) + (" et al." if len(paper.authors) > 3 else ""),
        "value": value,
        "other_url": f"/feedback/{token}/{item.rank}/{'less' if value > 0 else 'more'}",
        "manage_url": state.links.manage_url(subscriber),
    }


@router.get("/feedback/{token}/{rank}/{choice}")
def feedback_page(request: Request, state: State, token: str, rank: str, choice: str) -> Response:
    """Asks for a click: opening the link (as mail scanners do) records nothing."""
    with state.sessions() as session:
        subscriber, item, value = rated_item(session, state, token, rank, choice)
        current = accounts.current_feedback(session, subscriber, item.paper_id)
        context = _context(state, subscriber, item, value, token)
    return state.pages.render(
        request, "feedback.html", context | {"done": False, "current": current}
    )


@router.post("/feedback/{token}/{rank}/{choice}", dependencies=FormGuard)
def give_feedback(request: Request, state: State, token: str, rank: str, choice: str) -> Response:
    """Records the rating; again is harmless, and the other choice replaces it."""
    with state.sessions.begin() as session:
        subscriber, item, value = rated_item(session, state, token, rank, choice)
        accounts.record_feedback(session, subscriber, item.paper_id, value, now=utcnow())
        context = _context(state, subscriber, item, value, token)
    return state.pages.render(request, "feedback.html", context | {"done": True, "current": value})


@router.get("/view/{token}")
def view_online(state: State, token: str) -> Response:
    """The issue as it was mailed, rendered again from what was stored for it."""
    with state.sessions() as session:
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
        rendered = state.renderer.render_issue(
            issue_view(delivery, settings=state.settings, tokens=state.tokens)
        )
    # Email HTML styles itself inline, so this page alone allows inline styles (never
    # scripts: default-src 'none').
    return HTMLResponse(rendered.html, headers={"Content-Security-Policy": VIEW_CSP})
