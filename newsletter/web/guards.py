"""FastAPI dependencies shared by the routes: CSRF, POST rate limit, signed-link lookup."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session
from starlette.requests import Request

from newsletter.models import Subscriber
from newsletter.tokens import InvalidToken, Purpose, TokenData
from newsletter.web.state import WebState, client_ip, web_state

State = Annotated[WebState, Depends(web_state)]


async def posts_allowed(request: Request, state: State) -> None:
    """Every POST counts against a per-address budget, whatever it does."""
    state.limits.require("post", client_ip(request))


async def csrf_checked(request: Request, state: State) -> None:
    await state.csrf.check(request)


PostGuard = [Depends(posts_allowed)]
FormGuard = [Depends(posts_allowed), Depends(csrf_checked)]


def subscriber_for(
    session: Session, state: WebState, purpose: Purpose, token: str
) -> tuple[Subscriber, TokenData]:
    """The subscriber a signed link speaks for, or ``InvalidToken`` (shown as a 400 page).

    A revoked link (older token version) and a deleted subscriber look exactly like a
    tampered link, so a link never tells anything about anyone.
    """
    data = state.links.read(purpose, token)
    subscriber = session.get(Subscriber, data.subscriber_id)
    if subscriber is None or subscriber.token_version != data.version:
        raise InvalidToken("this link is no longer valid")
    return subscriber, data
