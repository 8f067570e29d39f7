"""A new paper by a followed author is always in the issue, first (the real planner)."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from newsletter.db import SessionFactory
from newsletter.models import (
    Delivery,
    DeliveryItem,
    FollowedAuthor,
    Frequency,
    Interest,
    Paper,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from newsletter.planning.follows import name_key
from newsletter.service import Service
from newsletter.settings import Settings
from tests.conftest import DAILY

pytestmark = [pytest.mark.sqlite_only, pytest.mark.slow]  # ingests and plans a real day (~10 s)

EDITION = date(2026, 5, 27)


def test_a_followed_authors_paper_is_first_whatever_the_topics(
    sessions: SessionFactory, settings: Settings
) -> None:
    settings = settings.model_copy(update={"semantic": False})
    service = Service.open(settings)
    try:
        service.ingest(DAILY / f"{EDITION}.jsonl", today=EDITION)
        with sessions.begin() as session:
            for email, follows in [("ada@example.org", "L. Loven"), ("bob@example.org", None)]:
                subscriber = Subscriber(
                    email=email,
                    status=SubscriberStatus.ACTIVE,
                    frequency=Frequency.DAILY,
                    confirmed_at=utcnow(),
                    interests=[Interest(topic_id="cs.CV", weight=1.0)],
                )
                session.add(subscriber)
                session.flush()
                if follows:
                    session.add(
                        FollowedAuthor(
                            subscriber_id=subscriber.id, name=follows, key=str(name_key(follows))
                        )
                    )
        service.plan(EDITION)
    finally:
        service.close()
    with sessions() as session:
        firsts = dict(
            session.execute(
                select(Subscriber.email, Paper.external_id)
                .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                .join(DeliveryItem, DeliveryItem.delivery_id == Delivery.id)
                .join(Paper, Paper.id == DeliveryItem.paper_id)
                .where(DeliveryItem.rank == 0)
            ).all()
        )
        counts = dict(
            session.execute(
                select(Subscriber.email, DeliveryItem.rank)
                .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                .join(DeliveryItem, DeliveryItem.delivery_id == Delivery.id)
                .order_by(DeliveryItem.rank)
            ).all()
        )
    # "Lauri Lovén" wrote a cs.GT paper that a cs.CV reader would never be shown.
    assert firsts["ada@example.org"] == "2605.26604"
    assert firsts["bob@example.org"] != "2605.26604"
    assert counts["ada@example.org"] == counts["bob@example.org"]  # still max_papers in all
