"""What the subscriber pages and the JSON API both do, written once.

Sign-up, confirmation and the lookup of a rated paper each have one implementation here,
over the domain functions of ``newsletter.subscribers.accounts``; the page routes and
``newsletter.web.api`` only parse their input and shape their answer, so the two cannot
disagree about what a sign-up or a confirmation does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import BackgroundTasks
from sqlalchemy.orm import Session

from newsletter.integers import NotInRange, small_int
from newsletter.models import DeliveryItem, Subscriber, utcnow
from newsletter.subscribers import accounts
from newsletter.subscribers.library_signup import SignupLibrary, activate, claim_for_signup, stage
from newsletter.tokens import Purpose
from newsletter.web.errors import WebError, bad_link, not_found
from newsletter.web.guards import subscriber_for
from newsletter.web.links import Links
from newsletter.web.mailer import Mail
from newsletter.web.state import WebState

CHOICES = {"more": 1, "less": -1}  # a feedback link's last part, and its value
MAX_RANK = 9999  # a paper's place in an issue: 1 .. this


def sign_up(
    state: WebState,
    background: BackgroundTasks,
    address: str,
    choices: accounts.Choices,
    *,
    libraries: Sequence[SignupLibrary] = (),
) -> None:
    """Record a sign-up (``accounts.sign_up``) and mail the link it needs, in the background.

    The caller answers the same whatever happened: nobody learns whether an address is
    subscribed. The mail is limited per address, so nobody can flood a stranger's inbox;
    over the limit it is quietly not sent. ``libraries`` (the form's "Start from papers
    you know") are staged after the answer, on an unconfirmed record only, and used
    once it is confirmed (``library_signup``).
    """
    now = utcnow()
    with state.sessions.begin() as session:
        outcome, subscriber = accounts.sign_up(session, address, choices, now=now)
        staging = claim_for_signup(subscriber, now=now) if libraries else None
        mail = signup_mail(state.links, outcome, subscriber)
    if staging is not None:
        # After the answer: storing a big library must not tell a stranger by its time
        # that this address was new or pending.
        background.add_task(_stage_libraries, state, staging, libraries)
    if mail is not None and state.limits.allow("mail", address):
        background.add_task(state.mailer.send, mail)


def _stage_libraries(
    state: WebState, subscriber_id: int, libraries: Sequence[SignupLibrary]
) -> None:
    with state.sessions.begin() as session:
        stage(session, subscriber_id, libraries)


def signup_mail(
    links: Links, outcome: accounts.SignupOutcome, subscriber: Subscriber | None
) -> Mail | None:
    """The mail a sign-up outcome needs: a confirmation link, "subscribed already", or none."""
    if subscriber is None or outcome == "nothing":
        return None
    if outcome == "already":
        return Mail(
            to=subscriber.email,
            template="already",
            context={"manage_url": links.manage_url(subscriber)},
            locale=subscriber.locale,
        )
    return Mail(
        to=subscriber.email,
        template="confirm",
        context={"confirm_url": links.confirm_url(subscriber)},
        locale=subscriber.locale,
    )


@dataclass(frozen=True)
class Confirmation:
    """A confirmation that went through (or had already): where the subscriber goes next."""

    outcome: accounts.ConfirmOutcome
    manage_token: str
    manage_url: str


def confirm(state: WebState, token: str) -> Confirmation:
    """Confirm the sign-up a link names (``accounts.confirm_signup``; idempotent).

    Raises ``InvalidToken`` for a bad link and ``WebError`` (410, 400) for an expired or
    replaced sign-up.
    """
    with state.sessions.begin() as session:
        subscriber, data = subscriber_for(session, state, Purpose.CONFIRM, token)
        outcome = accounts.confirm_signup(subscriber, data.subject, now=utcnow())
        if outcome == "confirmed":
            activate(session, subscriber)
        confirmation = Confirmation(
            outcome, state.links.manage_token(subscriber), state.links.manage_url(subscriber)
        )
    refuse_confirmation(outcome)
    return confirmation


def refuse_confirmation(outcome: accounts.ConfirmOutcome) -> None:
    """Raise the error page for a sign-up that can no longer be confirmed."""
    if outcome == "expired":
        raise WebError(
            410,
            "This link has expired",
            "Confirmation links work for a week. Please subscribe again to get a new one.",
        )
    if outcome == "invalid":
        raise WebError(
            400,
            "This link no longer works",
            "A newer confirmation mail replaced it, or the sign-up lapsed. Please use the "
            "link in the newest mail, or subscribe again.",
        )


def rated_item(
    session: Session, state: WebState, token: str, rank: str, choice: str
) -> tuple[Subscriber, DeliveryItem, int]:
    """The subscriber of a feedback link, the paper they rate and the value, or a 4xx."""
    subscriber, data = subscriber_for(session, state, Purpose.FEEDBACK, token)
    if data.subject is None:
        raise bad_link()
    if choice not in CHOICES:
        raise not_found("This issue has no such paper.")
    try:
        place = small_int(rank, low=1, high=MAX_RANK)
    except NotInRange:
        raise not_found("This issue has no such paper.") from None
    item = accounts.feedback_item(session, subscriber, data.subject, place)
    if item is None:
        raise not_found("This issue has no such paper.")
    return subscriber, item, CHOICES[choice]
