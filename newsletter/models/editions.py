"""Editions, their deliveries (the outbox) and the items of each issue, and the
subscriber ranges planners claim."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from newsletter.models.base import (
    Base,
    DeliveryStatus,
    EditionStatus,
    string_enum,
    utcnow,
)
from newsletter.models.papers import Paper
from newsletter.models.readers import Subscriber


class Edition(Base):
    __tablename__ = "editions"

    id: Mapped[int] = mapped_column(primary_key=True)
    date: Mapped[date] = mapped_column(Date, unique=True)
    status: Mapped[EditionStatus] = mapped_column(
        string_enum(EditionStatus), default=EditionStatus.PLANNED
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Delivery(Base):
    """One subscriber's issue of one edition: the outbox row the senders work through."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[DeliveryStatus] = mapped_column(
        string_enum(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    # When the issue was due (the subscriber's send time, set when the scheduler plans
    # it; retries move next_attempt_at, not this): send latency is sent_at - due_at.
    due_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None]
    message_id: Mapped[str | None] = mapped_column(String(255))
    last_smtp_code: Mapped[int | None] = mapped_column(SmallInteger)
    last_smtp_reply: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]

    edition: Mapped[Edition] = relationship()
    subscriber: Mapped[Subscriber] = relationship()
    items: Mapped[list[DeliveryItem]] = relationship(
        back_populates="delivery", cascade="all, delete-orphan", order_by="DeliveryItem.rank"
    )

    __table_args__ = (
        UniqueConstraint("edition_id", "subscriber_id"),
        Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_deliveries_edition_id_status", "edition_id", "status"),
        Index("ix_deliveries_message_id", "message_id"),  # bounces name their message
        # The last send, today's sends and their latency (status, /metrics, dashboard).
        Index("ix_deliveries_sent_at", "sent_at"),
    )


class DeliveryItem(Base):
    """A paper picked for a delivery, with its rank, score and why it was picked.

    Rows rather than a JSON list so that "never send a paper twice" is an
    indexed anti-join, not a scan of every past issue.
    """

    __tablename__ = "delivery_items"

    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), primary_key=True
    )
    rank: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), index=True)
    score: Mapped[float] = mapped_column(Float)
    terms: Mapped[list[str]] = mapped_column(JSON, default=list)

    delivery: Mapped[Delivery] = relationship(back_populates="items")
    paper: Mapped[Paper] = relationship()


class PlanBatch(Base):
    """A range of subscriber ids of one edition, claimed by one planner at a time (a
    lease, so a killed planner's range is taken over) and marked done in the same
    transaction as its deliveries (``newsletter.planning.claims``)."""

    __tablename__ = "plan_batches"

    edition_id: Mapped[int] = mapped_column(
        ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True
    )
    first_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(Integer)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
