"""The "why" of a pick from a reader's library or by an author they follow."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import selectinload

from newsletter.db import SessionFactory
from newsletter.mail.readers import load_readers
from newsletter.mail.view import issue_view
from newsletter.models import Delivery, DeliveryItem, FollowedAuthor, LibrarySeed
from newsletter.planning.follows import name_key
from newsletter.settings import Settings
from newsletter.tokens import Tokens
from tests.conftest import TEST_SECRET
from tests.web.helpers import add_delivery, add_subscriber

pytestmark = pytest.mark.sqlite_only


def test_why_names_the_library_paper_and_the_followed_author(
    sessions: SessionFactory, settings: Settings
) -> None:
    with sessions.begin() as session:
        subscriber = add_subscriber(session, "ada@example.org", topics=())
        session.add(
            LibrarySeed(
                subscriber_id=subscriber.id,
                title="Evaluating language models",
                title_key="evaluating language models",
                abstract="How to evaluate a language model.",
            )
        )
        session.add(
            FollowedAuthor(
                subscriber_id=subscriber.id, name="Alan Turing", key=str(name_key("Alan Turing"))
            )
        )
        delivery = add_delivery(session, subscriber, papers=1)
        delivery.items[0].terms = ["language", "model"]
        delivery_id = delivery.id

    with sessions() as session:
        delivery = session.get_one(
            Delivery,
            delivery_id,
            options=[selectinload(Delivery.items).selectinload(DeliveryItem.paper)],
        )
        view = issue_view(delivery, settings=settings, tokens=Tokens(TEST_SECRET))
        reader = load_readers(session, [delivery.subscriber_id])[delivery.subscriber_id]
    (card,) = view.papers
    assert [w.text for w in card.why] == [  # type: ignore[attr-defined]
        "by Alan Turing, whom you follow",
        "like “Evaluating language models” from your library",
    ]
    assert reader.followed == ((str(name_key("Alan Turing")), "Alan Turing"),)
    assert [p.from_library for p in reader.interests.liked] == [True]
