"""FastAPI dependencies shared by the routes: CSRF, POST rate limit, signed-link lookup."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session
from starlette.requests import Request

from newsletter.delivery.testsend import DEAD_TOKEN_VERSION as TEST_LINK_VERSION
from newsletter.models import Subscriber
from newsletter.tokens import InvalidToken, Purpose, TokenData
from newsletter.web.errors import TestLink
from newsletter.web.state import WebState, client_ip, web_state

State = Annotated[WebState, Depends(web_state)]


async def posts_allowed(request: Request, state: State) -> None:
    """Every POST counts against a per-address budget, whatever it does."""
    state.limits.require("post", client_ip(request))


async def csrf_checked(request: Request, state: State) -> None:
    await state.csrf.check(request)


FormGuard = [Depends(posts_allowed), Depends(csrf_checked)]


def subscriber_for(
    session: Session, state: WebState, purpose: Purpose, token: str
) -> tuple[Subscriber, TokenData]:
    """The subscriber a signed link speaks for, or ``InvalidToken`` (shown as a 400 page).

    A revoked link (older token version) and a deleted subscriber look exactly like a
    tampered link, so a link never tells anything about anyone.
    """
    data = state.links.read(purpose, token)
    return linked_subscriber(session, data.subscriber_id, data.version), data


def test_link() -> TestLink:
    """The answer to a link from a test issue: signed by us (only we can make one) with
    the version no subscriber has, so it opens nobody's page and changes nothing."""
    return TestLink(
        200,
        "This link is from a test issue",
        "It came in a test issue sent from the admin area or with newsletter test-send, "
        "so it opens nobody's page and changes nothing. In a real issue this link works "
        "for its reader.",
    )


def linked_subscriber(session: Session, subscriber_id: int, version: int) -> Subscriber:
    """The subscriber a verified link names, if the link is still theirs.

    The version is random from sign-up on (``models.new_link_key``), so a link of a
    deleted subscriber whose id was reused fails here too, with the tampered link's words.
    """
    if version == TEST_LINK_VERSION:
        raise test_link()
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.token_version != version:
        raise InvalidToken("this link is not valid")
    return subscriber
