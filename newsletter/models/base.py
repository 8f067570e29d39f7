"""The shared basics of the data model: the declarative base, UTC timestamps,
constraint names and the states rows move through."""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Enum,
    MetaData,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase

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


def string_enum(cls: type[enum.Enum]) -> Enum:
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


class BounceKind(enum.StrEnum):
    HARD = "hard"  # 5xx at RCPT or DATA, or a DSN with a permanent failure
    SOFT = "soft"  # a DSN reporting a temporary failure (recorded, no action)
