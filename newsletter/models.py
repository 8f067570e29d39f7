"""The data model (see ARCHITECTURE.md). Alembic migrations are made from it.

Every timestamp is stored as UTC and read back timezone-aware, on SQLite too.
"""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names so migrations can drop and alter them on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


LINK_KEY_LIMIT = 2**30  # room below the 32-bit column for every later revocation (+1 each)


def new_link_key() -> int:
    """A new subscriber's first ``token_version``: random, not 1.

    Links name a subscriber by id and this number. SQLite reuses the highest id after a
    delete, so a deleted subscriber's old links would otherwise speak for whoever signs
    up next with the same id; with a random start they match only by a 1 in 2**30
    chance, and fail like a tampered link.
    """
    return secrets.randbelow(LINK_KEY_LIMIT) + 1


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


def _enum(cls: type[enum.Enum]) -> Enum:
    # Stored as short strings (no native PostgreSQL enum) so adding a state later
    # is a plain migration on both databases.
    return Enum(
        cls,
        native_enum=False,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class Frequency(enum.StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


class EditionStatus(enum.StrEnum):
    PLANNED = "planned"
    SENDING = "sending"
    SENT = "sent"


class DeliveryStatus(enum.StrEnum):
    """The outbox state machine (see ``newsletter.delivery``).

    pending → claimed (lease) → sent; or → retry (4xx, lost connection; due again at
    ``next_attempt_at``) → claimed → ...; or → bounced (5xx: the address is refused);
    failed (out of attempts, or cannot be sent at all); suppressed (the address is on
    the suppression list or the subscriber left before it went out).
    """

    PENDING = "pending"
    CLAIMED = "claimed"
    RETRY = "retry"
    SENT = "sent"
    BOUNCED = "bounced"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


# Deliveries waiting for a worker: not sent yet, not held by anyone (what cancelling a
# subscriber's issues suppresses, and what a worker may claim once it is due).
WAITING = (DeliveryStatus.PENDING, DeliveryStatus.RETRY)
# Not settled: will or may still be sent (waiting, or held by a worker right now).
OPEN = (*WAITING, DeliveryStatus.CLAIMED)


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[SubscriberStatus] = mapped_column(
        _enum(SubscriberStatus), default=SubscriberStatus.PENDING, index=True
    )
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    send_hour: Mapped[int] = mapped_column(SmallInteger, default=7)
    frequency: Mapped[Frequency] = mapped_column(_enum(Frequency), default=Frequency.DAILY)
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


class Paper(Base):
    __tablename__ = "papers"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)  # arXiv id, no version
    version: Mapped[int | None] = mapped_column(SmallInteger)
    title: Mapped[str] = mapped_column(Text)
    abstract: Mapped[str] = mapped_column(Text, default="")
    authors: Mapped[list[str]] = mapped_column(JSON, default=list)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    # ACM / MSC classification codes that arrive mixed into arXiv's categories.
    class_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    url: Mapped[str] = mapped_column(String(500))
    pdf_url: Mapped[str | None] = mapped_column(String(500))
    comment: Mapped[str | None] = mapped_column(Text)
    # First listing date: what "new" means for an edition. A re-listing keeps it.
    listed_on: Mapped[date] = mapped_column(Date, index=True)
    # Listing date of the record whose content we hold (decides "newest wins").
    content_listed_on: Mapped[date] = mapped_column(Date)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PaperEmbedding(Base):
    """A paper's sentence embedding (float16 bytes) under one model version (the semantic extra).

    Computed once at ingest; a new model version adds rows beside the old ones.
    """

    __tablename__ = "paper_embeddings"

    paper_id: Mapped[int] = mapped_column(
        ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


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


class Edition(Base):
    __tablename__ = "editions"

    id: Mapped[int] = mapped_column(primary_key=True)
    date: Mapped[date] = mapped_column(Date, unique=True)
    status: Mapped[EditionStatus] = mapped_column(
        _enum(EditionStatus), default=EditionStatus.PLANNED
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
        _enum(DeliveryStatus), default=DeliveryStatus.PENDING
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


class Suppression(Base):
    """An address that must never be mailed again (hard bounce, complaint, operator)."""

    __tablename__ = "suppressions"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BounceKind(enum.StrEnum):
    HARD = "hard"  # 5xx at RCPT or DATA, or a DSN with a permanent failure
    SOFT = "soft"  # a DSN reporting a temporary failure (recorded, no action)


class Bounce(Base):
    """One bounce of one address: refused over SMTP, or reported later by a DSN.

    At most one per delivery and kind, so reading the same bounce mailbox twice, or a
    DSN arriving for a delivery already refused at RCPT, never counts twice.
    """

    __tablename__ = "bounces"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[BounceKind] = mapped_column(_enum(BounceKind))
    source: Mapped[str] = mapped_column(String(16))  # smtp | dsn
    code: Mapped[int | None] = mapped_column(SmallInteger)
    reply: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("delivery_id", "kind"),)


class SendRate(Base):
    """Messages sent per time bucket, shared by every worker of one database.

    ``scope`` "s" holds 100 ms buckets (the per-second limit), "h" one-minute buckets
    (the per-hour limit); ``bucket`` is the bucket's start in those units since the epoch.
    """

    __tablename__ = "send_rate"

    scope: Mapped[str] = mapped_column(String(1), primary_key=True)
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(Integer, default=0)


class Operator(Base):
    """Someone who may use the admin area (``newsletter admin create-user``; migration 0006)."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    # Every admin session cookie carries it; bumped at logout and at a password change
    # to end every session issued before (migration 0010). Starts random like
    # ``Subscriber.token_version``, so a reused id never revives a deleted operator's
    # sessions; operators from before 0010 start at 1.
    session_version: Mapped[int] = mapped_column(Integer, default=new_link_key, server_default="1")


class SourceState(Base):
    """Where a paper source resumes (e.g. the OAI-PMH from-date; migration 0009).

    In the database, not a file, so the standby scheduler on another machine resumes
    where the active one stopped, and the state advances in the same transaction as
    the papers it covers.
    """

    __tablename__ = "source_state"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AccountMailFailure(Base):
    """An account mail (confirm a sign-up, a new address, ...) that did not go out
    (migration 0012). Such mails are sent after the page has answered, so nobody sees
    them fail but the operator: ``newsletter status``, the admin area and /metrics."""

    __tablename__ = "account_mail_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    template: Mapped[str] = mapped_column(String(32))  # confirm, already, address
    email: Mapped[str] = mapped_column(String(320))
    code: Mapped[int | None] = mapped_column(SmallInteger)  # the relay's reply code, if any
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class RelayError(Base):
    """The relay could not be reached, or refused or deferred mail (migration 0013): one
    row per delivery run (or batch of outcomes) that met it, newest first on the admin
    dashboard, in ``newsletter status`` and /metrics, so a relay that is down shows
    where the operator looks even though no delivery changed."""

    __tablename__ = "relay_errors"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # unreachable, deferred, refused
    code: Mapped[int | None] = mapped_column(SmallInteger)  # the relay's reply code, if any
    reply: Mapped[str] = mapped_column(Text)  # its reply, or the connection error
    deliveries: Mapped[int] = mapped_column(Integer, default=0)  # how many it touched
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class AdminAction(Base):
    """What an operator did to a subscriber's record, and why (migration 0013): the
    admin subscriber page's and ``newsletter subscribers``' actions (unsubscribe,
    delete, resend confirmation, lift a suppression). Keeps the address, not the id:
    a deleted subscriber's record is gone, the note that it was deleted is not."""

    __tablename__ = "admin_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    operator: Mapped[str] = mapped_column(String(64))  # a username, or "cli"
    action: Mapped[str] = mapped_column(String(32))
    email: Mapped[str] = mapped_column(String(320), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LibraryImport(Base):
    """A reader's library file or pasted list, being turned into seeds (migration 0014).

    Parsed when it arrives; what needs the arXiv API waits in ``entries`` for the
    seeding job (the scheduler, ``newsletter subscribers seed-pending``), which retries
    after ``next_attempt_at`` while the API is down. ``report`` says, per line or entry,
    what was imported and what was not, and why: the preferences page shows it.
    """

    __tablename__ = "library_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    source: Mapped[str] = mapped_column(String(200))  # the file's name, or "pasted list"
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # or done
    entries: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # still to resolve
    report: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class LibrarySeed(Base):
    """A paper from a reader's own library: a liked paper that does not decay until
    their own feedback outweighs the seeds (see planning/profile_vectors.py). Its text
    is kept here: an entry built from its own title and abstract has no paper row."""

    __tablename__ = "library_seeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    paper_id: Mapped[int | None] = mapped_column(
        ForeignKey("papers.id", ondelete="SET NULL"), index=True
    )
    arxiv_id: Mapped[str | None] = mapped_column(String(64))
    doi: Mapped[str | None] = mapped_column(String(255), index=True)
    title_key: Mapped[str] = mapped_column(String(300))
    title: Mapped[str] = mapped_column(Text)
    abstract: Mapped[str] = mapped_column(Text, default="")
    authors: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FollowedAuthor(Base):
    """An author a reader follows: their new papers are always in the issue. ``key`` is
    the name as planning/follows.py matches it (surname and first initial)."""

    __tablename__ = "followed_authors"
    __table_args__ = (UniqueConstraint("subscriber_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
