"""Subscribers, the topics they choose, and the feedback they give."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from newsletter.models.base import (
    Base,
    Frequency,
    SubscriberStatus,
    new_link_key,
    string_enum,
    utcnow,
)


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[SubscriberStatus] = mapped_column(
        string_enum(SubscriberStatus), default=SubscriberStatus.PENDING, index=True
    )
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    send_hour: Mapped[int] = mapped_column(SmallInteger, default=7)
    frequency: Mapped[Frequency] = mapped_column(string_enum(Frequency), default=Frequency.DAILY)
    max_papers: Mapped[int | None] = mapped_column(SmallInteger)
    # Send an issue even when nothing new scores above the minimum (then the best
    # of what there is); otherwise a day without a match sends nothing.
    always_send: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Every signed link carries it; bumped to revoke every link issued before. Starts
    # random (``new_link_key``), so a reused id never revives a deleted subscriber's links.
    token_version: Mapped[int] = mapped_column(Integer, default=new_link_key)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    # Web app (migration 0004). signup_at: when the outstanding double opt-in request
    # was made (its confirmation link carries it; None once confirmed or expired).
    # pending_email: a new address waiting to be confirmed. paused_at: issues paused.
    signup_at: Mapped[datetime | None]
    pending_email: Mapped[str | None] = mapped_column(String(320))
    paused_at: Mapped[datetime | None]
    # The language of the subscriber's issues (migration 0005; see newsletter.i18n).
    locale: Mapped[str] = mapped_column(String(16), default="en", server_default="en")
    # The day a weekly issue goes out, Python's numbering: 0 Monday … 6 Sunday, in the
    # subscriber's own timezone (migration 0007). Daily subscribers ignore it.
    send_weekday: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    # The choices of the open sign-up (migration 0011): applied when its link is
    # confirmed, so a stranger's sign-up changes nothing about an existing subscriber.
    pending_signup: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))

    interests: Mapped[list[Interest]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", order_by="Interest.id"
    )

    __table_args__ = (
        CheckConstraint("send_hour >= 0 AND send_hour <= 23", name="send_hour_range"),
        CheckConstraint("max_papers IS NULL OR max_papers >= 1", name="max_papers_positive"),
        CheckConstraint("send_weekday >= 0 AND send_weekday <= 6", name="send_weekday_range"),
    )


class Topic(Base):
    __tablename__ = "topics"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the arXiv code, e.g. cs.CL
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)  # the interest text of the topic


class Interest(Base):
    """One thing a subscriber wants: a catalogue topic, or free keywords."""

    __tablename__ = "interests"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    topic_id: Mapped[str | None] = mapped_column(
        ForeignKey("topics.id", ondelete="CASCADE"), index=True
    )
    keywords: Mapped[str | None] = mapped_column(String(500))
    weight: Mapped[float] = mapped_column(Float, default=1.0)

    subscriber: Mapped[Subscriber] = relationship(back_populates="interests")
    topic: Mapped[Topic | None] = relationship()

    __table_args__ = (
        CheckConstraint("(topic_id IS NULL) <> (keywords IS NULL)", name="topic_xor_keywords"),
    )


class Feedback(Base):
    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), index=True)
    value: Mapped[int] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("subscriber_id", "paper_id"),
        CheckConstraint("value IN (-1, 1)", name="value_sign"),
    )
