"""What storing one validated subscriber means: the rules every import path shares.

A new address becomes a subscriber with the record given (an export's status, consent
date and pause), and without one is active at once (the operator vouches for consent).
A stored subscriber's status, consent date and pause are never changed by an import,
so nobody who unsubscribed, bounced or never confirmed is made active again; their
choices are updated, and a choice the file does not give (weekday, hour, always-send)
is left as stored, as is the weight of an interest they keep.

Pure functions over plain values: ``roster.upsert_subscriber`` applies them to one ORM
object, ``bulk.load_batch`` to a batch of rows with Core statements.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from newsletter.errors import NewsletterError
from newsletter.models import Frequency, Subscriber, SubscriberStatus, new_link_key

Outcome = Literal["created", "updated", "unchanged"]
# An interest as stored: (topic id, keywords, weight); exactly one of the first two is set.
InterestRow = tuple[str | None, str | None, float]
# The columns an import may change on a stored subscriber.
CHOICES = ("name", "timezone", "frequency", "send_weekday", "send_hour", "always_send")
# An hour the file does not give: the model's default (7 o'clock).
_DEFAULT_HOUR: int = Subscriber.__table__.c.send_hour.default.arg


class InvalidSubscriber(NewsletterError):
    """A subscriber's data is invalid; the message says which field and why."""


@dataclass(frozen=True)
class SubscriberInput:
    email: str
    name: str = ""
    topics: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    timezone: str = "UTC"
    frequency: Frequency = Frequency.DAILY
    always_send: bool | None = None  # None: not given (an import leaves it as it is)
    # None: not given (a new subscriber gets Monday, an existing one keeps theirs).
    send_weekday: int | None = None
    # None: not given (a new subscriber gets 7 o'clock, an existing one keeps theirs).
    send_hour: int | None = None
    # The record an export carries; only a new subscriber takes it (an existing one keeps
    # their own). None: not given, so a new subscriber is active, confirmed now (the
    # operator vouches for consent) and not paused.
    status: SubscriberStatus | None = None
    paused: bool | None = None
    created_at: datetime | None = None
    confirmed_at: datetime | None = None


def suppressed(email: str) -> InvalidSubscriber:
    """The error for an address on the suppression list (it is never added or updated)."""
    return InvalidSubscriber(f"{email} is on the suppression list")


def new_record(data: SubscriberInput, *, now: datetime) -> dict[str, Any]:
    """The column values of a new subscriber made from ``data`` (interests aside)."""
    status = data.status or SubscriberStatus.ACTIVE
    return {
        "email": data.email,
        "name": data.name,
        "status": status,
        "timezone": data.timezone,
        "frequency": data.frequency,
        "always_send": bool(data.always_send),
        "send_weekday": data.send_weekday or 0,
        "send_hour": _DEFAULT_HOUR if data.send_hour is None else data.send_hour,
        "token_version": new_link_key(),
        "created_at": data.created_at or now,
        # Consent: the record's own date; an operator's word (now) only for someone the
        # file says is active, or says nothing about.
        "confirmed_at": data.confirmed_at or (now if status == SubscriberStatus.ACTIVE else None),
        # When exactly they paused is not in an export: from now on, then.
        "paused_at": now if data.paused else None,
    }


def choice_changes(stored: Mapping[Any, Any], data: SubscriberInput) -> dict[str, Any]:
    """The choices (``CHOICES``) of a stored subscriber that ``data`` changes, with their
    new values; name, timezone and frequency always count, the others only when given."""
    changes = {
        column: getattr(data, column)
        for column in ("name", "timezone", "frequency")
        if stored[column] != getattr(data, column)
    }
    for column, value in (
        ("send_weekday", data.send_weekday),
        ("send_hour", data.send_hour),
        ("always_send", data.always_send),
    ):
        if value is not None and stored[column] != value:
            changes[column] = value
    return changes


def _key(interest: InterestRow) -> tuple[str, str, float]:
    topic_id, keywords, weight = interest
    if topic_id is not None:
        return ("topic", topic_id, weight)
    return ("keywords", keywords or "", weight)


def wanted_interests(
    data: SubscriberInput, stored: Iterable[InterestRow] = ()
) -> list[InterestRow]:
    """The interests ``data`` asks for, topics first, in its order. A file carries no
    weights: an interest the subscriber keeps keeps its stored weight, a new one gets 1."""
    kept = {_key(interest)[:2]: interest[2] for interest in stored}
    return [(topic, None, kept.get(("topic", topic), 1.0)) for topic in data.topics] + [
        (None, words, kept.get(("keywords", words), 1.0)) for words in data.keywords
    ]


def same_interests(stored: Sequence[InterestRow], wanted: Sequence[InterestRow]) -> bool:
    """Whether ``wanted`` is what is stored (order aside), so nothing needs writing."""
    return sorted(map(_key, stored)) == sorted(map(_key, wanted))
