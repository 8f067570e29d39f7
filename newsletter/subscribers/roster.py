"""Add and import subscribers: validated, normalised, idempotent."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, selectinload

from newsletter.errors import NewsletterError
from newsletter.integers import NotInRange, small_int
from newsletter.mail.addresses import normalise_email
from newsletter.models import Frequency, Interest, Subscriber, SubscriberStatus, Suppression, utcnow
from newsletter.papers.catalogue import CatalogueTopic, resolve_topic
from newsletter.papers.sources import Problem, normalise_space
from newsletter.papers.sources.csv_source import csv_rows
from newsletter.subscribers.bulk import BATCH_SIZE, Row, load_batch
from newsletter.subscribers.records import (
    CHOICES,
    InvalidSubscriber,
    Outcome,
    SubscriberInput,
    choice_changes,
    new_record,
    same_interests,
    suppressed,
    wanted_interests,
)

# What the import reads and the admin export writes, so an export imports back. The last
# four are the record, not the choices: they only ever apply to a new subscriber.
CSV_COLUMNS = (
    "email", "name", "topics", "keywords", "timezone", "frequency", "weekday", "send_hour",
    "status", "paused", "created_at", "confirmed_at",
)  # fmt: skip
# A cell a spreadsheet would run as a formula starts with one of these; the export puts
# a quote before it (and before a quote, so a value's own quote is not taken for ours).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_TEXT_MARK = "'"
# The weekday a weekly issue goes out, 0 = Monday (as ``datetime.date.weekday``).
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def split_list(raw: str | None) -> tuple[str, ...]:
    """Split a ``;``-separated field, dropping blanks and repeats, keeping order."""
    if not raw:
        return ()
    items = (normalise_space(part) for part in raw.split(";"))
    return tuple(dict.fromkeys(item for item in items if item))


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSubscriber(
            f"unknown timezone {name!r} (use an IANA name such as Europe/Berlin)"
        ) from None
    return name


def check_frequency(raw: str) -> Frequency:
    try:
        return Frequency(raw.strip().lower())
    except ValueError:
        raise InvalidSubscriber(f"frequency must be 'daily' or 'weekly', not {raw!r}") from None


def check_weekday(raw: str | int) -> int:
    """A weekday as 0 (Monday) .. 6 (Sunday), from that number or an English name
    ("monday", "Mon")."""
    value = raw.strip().lower() if isinstance(raw, str) else raw
    for number, name in enumerate(WEEKDAYS):
        if value in (name, name[:3]):
            return number
    try:
        return small_int(value, low=0, high=6)
    except NotInRange:
        raise InvalidSubscriber(
            f"weekday must be 0 (Monday) to 6 (Sunday) or a day's name such as monday, not {raw!r}"
        ) from None


def check_send_hour(raw: str | int) -> int:
    """An hour of the day, 0..23 (the subscriber's own clock)."""
    try:
        return small_int(raw, low=0, high=23)
    except NotInRange:
        raise InvalidSubscriber(
            f"send_hour must be a whole hour from 0 to 23, not {raw!r}"
        ) from None


def check_status(raw: str) -> SubscriberStatus:
    """A subscriber's status by name: active, pending, unsubscribed or bounced."""
    try:
        return SubscriberStatus(raw.strip().lower())
    except ValueError:
        names = ", ".join(status.value for status in SubscriberStatus)
        raise InvalidSubscriber(f"status must be one of {names}, not {raw!r}") from None


def check_timestamp(raw: str, column: str) -> datetime:
    """An ISO 8601 date and time, as the export writes it (UTC when it names no zone)."""
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise InvalidSubscriber(
            f"{column} must be an ISO date and time such as 2026-05-27T07:00:00+00:00, not {raw!r}"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def check_flag(raw: str, column: str) -> bool:
    """true/false, yes/no or 1/0 (the export writes True and False)."""
    value = raw.strip().lower()
    if value in ("true", "yes", "1"):
        return True
    if value in ("false", "no", "0"):
        return False
    raise InvalidSubscriber(f"{column} must be true or false, not {raw!r}")


def protect_cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text, never runs as a formula (the export's)."""
    return _TEXT_MARK + text if text[:1] in (*_FORMULA_STARTS, _TEXT_MARK) else text


def unprotect_cell(text: str) -> str:
    """The value ``protect_cell`` protected: its mark off, and nothing else."""
    if text[:1] == _TEXT_MARK and text[1:2] in (*_FORMULA_STARTS, _TEXT_MARK):
        return text[1:]
    return text


def weekday_name(number: int) -> str:
    """The English name of weekday ``number`` (0 = monday), as ``check_weekday`` reads it."""
    return WEEKDAYS[number]


def build_input(
    catalogue: dict[str, CatalogueTopic],
    *,
    email: str,
    name: str = "",
    topics: Sequence[str] = (),
    keywords: Sequence[str] = (),
    timezone: str = "UTC",
    frequency: str = "daily",
    always_send: bool | None = None,
    weekday: str | int | None = None,
    send_hour: str | int | None = None,
    status: str | None = None,
    paused: str | None = None,
    created_at: str | None = None,
    confirmed_at: str | None = None,
    allow_no_interests: bool = False,
) -> SubscriberInput:
    """Validate raw fields into a ``SubscriberInput`` (raises a ``NewsletterError``).

    ``weekday``: the day a weekly issue goes out (see ``check_weekday``); ``send_hour``:
    the hour of the day, 0..23, in the subscriber's timezone. None or blank leaves
    either as it is. ``status``, ``paused``, ``created_at`` and ``confirmed_at`` are a
    record as the admin export writes it (see ``SubscriberInput``)."""
    resolved = tuple(dict.fromkeys(resolve_topic(catalogue, t).id for t in topics))
    kept_keywords = tuple(dict.fromkeys(k for k in (normalise_space(k) for k in keywords) if k))
    if not resolved and not kept_keywords and not allow_no_interests:
        raise InvalidSubscriber("give at least one topic or keyword")
    too_long = [k for k in kept_keywords if len(k) > 200]
    if too_long:
        raise InvalidSubscriber(f"keyword too long (max 200 characters): {too_long[0][:40]!r}...")
    return SubscriberInput(
        email=normalise_email(email),
        name=normalise_space(name)[:200],
        topics=resolved,
        keywords=kept_keywords,
        timezone=check_timezone(timezone.strip() or "UTC"),
        frequency=check_frequency(frequency or "daily"),
        always_send=always_send,
        send_weekday=None if weekday in (None, "") else check_weekday(weekday),
        send_hour=None if send_hour in (None, "") else check_send_hour(send_hour),
        status=check_status(status) if status and status.strip() else None,
        paused=check_flag(paused, "paused") if paused and paused.strip() else None,
        created_at=(
            check_timestamp(created_at, "created_at") if created_at and created_at.strip() else None
        ),
        confirmed_at=(
            check_timestamp(confirmed_at, "confirmed_at")
            if confirmed_at and confirmed_at.strip()
            else None
        ),
    )


def upsert_subscriber(session: Session, data: SubscriberInput) -> Outcome:
    """Create the subscriber or update their choices, one at a time through the ORM.

    The rules are ``newsletter.subscribers.records``'s: an existing subscriber's status,
    consent date and pause are never changed here, so an import must not re-subscribe
    someone who unsubscribed, bounced or never confirmed.
    """
    if session.get(Suppression, data.email) is not None:
        raise suppressed(data.email)
    subscriber = session.scalars(
        select(Subscriber)
        .where(Subscriber.email == data.email)
        .options(selectinload(Subscriber.interests))
    ).one_or_none()
    if subscriber is None:
        session.add(
            Subscriber(
                **new_record(data, now=utcnow()),
                interests=[_interest(row) for row in wanted_interests(data)],
            )
        )
        session.flush()
        return "created"
    changes = choice_changes({column: getattr(subscriber, column) for column in CHOICES}, data)
    for column, value in changes.items():
        setattr(subscriber, column, value)
    stored = [(i.topic_id, i.keywords, i.weight) for i in subscriber.interests]
    wanted = wanted_interests(data, stored)
    interests_changed = not same_interests(stored, wanted)
    if interests_changed:
        subscriber.interests = [_interest(row) for row in wanted]
    session.flush()
    return "updated" if changes or interests_changed else "unchanged"


def _interest(row: tuple[str | None, str | None, float]) -> Interest:
    topic_id, keywords, weight = row
    return Interest(topic_id=topic_id, keywords=keywords, weight=weight)


@dataclass
class ImportSummary:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{len(self.problems)} skipped"
        )


def import_csv(
    session: Session,
    source: Path | TextIO,
    catalogue: dict[str, CatalogueTopic],
    *,
    name: str | None = None,
    batch_size: int = BATCH_SIZE,
    row_by_row: bool = False,
) -> ImportSummary:
    """Import a CSV with a header row; bad rows are reported by line and skipped.

    ``source`` is a path (read as UTF-8, with or without a BOM) or an open text stream
    (opened with ``newline=""``; the admin upload); ``name`` is what problems and errors
    call it ("line N" alone for a stream without a name). Rows are validated here and
    stored ``batch_size`` at a time (``bulk.load_batch``), each batch in a savepoint; a
    batch the database refuses is stored again row by row, so a row that cannot be
    stored is reported and costs only itself. ``row_by_row``: store every row on its
    own through the ORM (the slow path, kept as the reference the batches must match).
    """
    if isinstance(source, Path):
        try:
            # surrogateescape: a byte that is not UTF-8 spoils its row, not the file.
            with source.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
                return import_csv(
                    session,
                    handle,
                    catalogue,
                    name=name or str(source),
                    batch_size=batch_size,
                    row_by_row=row_by_row,
                )
        except OSError as exc:
            raise InvalidSubscriber(f"cannot read {source}: {exc}") from None
    label = name or "the file"
    summary = ImportSummary()
    problems: list[tuple[int, Problem]] = []
    pending: list[Row] = []

    def store() -> None:
        if row_by_row:
            _store_one_by_one(session, pending, summary, problems)
        else:
            _store_batch(session, pending, summary, problems)
        pending.clear()

    try:
        reader = csv.DictReader(source)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        if "email" not in header:
            raise InvalidSubscriber(f"{label}: the header row must have an 'email' column")
        summary.ignored_columns = [h for h in header if h not in CSV_COLUMNS]
        reader.fieldnames = header
        seen: set[str] = set()
        for line, raw in csv_rows(reader):
            location = f"{name}:{line}" if name else f"line {line}"
            if isinstance(raw, str):
                problems.append((line, Problem(location, raw)))
                continue
            try:
                data = row_input(catalogue, raw)
                if data.email in seen:
                    raise InvalidSubscriber(f"{data.email} appears twice in this file")
            except NewsletterError as exc:
                problems.append((line, Problem(location, str(exc))))
                continue
            seen.add(data.email)
            pending.append(Row(line, location, data))
            if len(pending) >= batch_size:
                store()
        store()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidSubscriber(f"cannot read {label}: {exc}") from None
    # In file order, wherever each was found (validating, or storing its batch).
    summary.problems = [problem for _, problem in sorted(problems, key=lambda item: item[0])]
    return summary


def row_input(catalogue: dict[str, CatalogueTopic], raw: dict[str, object]) -> SubscriberInput:
    """One row of a CSV (a ``csv.DictReader``'s, lower-case header) validated."""
    # The export's formula protection off: its quote is not part of the value.
    row = {
        column: unprotect_cell(value)
        for column, value in raw.items()
        if column in CSV_COLUMNS and isinstance(value, str)
    }
    return build_input(
        catalogue,
        email=row.get("email") or "",
        name=row.get("name") or "",
        topics=split_list(row.get("topics")),
        keywords=split_list(row.get("keywords")),
        timezone=row.get("timezone") or "UTC",
        frequency=row.get("frequency") or "daily",
        weekday=row.get("weekday") or None,
        send_hour=row.get("send_hour") or None,
        status=row.get("status"),
        paused=row.get("paused"),
        created_at=row.get("created_at"),
        confirmed_at=row.get("confirmed_at"),
    )


def _store_batch(
    session: Session,
    rows: list[Row],
    summary: ImportSummary,
    problems: list[tuple[int, Problem]],
) -> None:
    """Store ``rows`` in one go; if the database refuses the batch, row by row."""
    if not rows:
        return
    try:
        with session.begin_nested():
            result = load_batch(session, rows)
    except (IntegrityError, DataError):
        _store_one_by_one(session, rows, summary, problems)
        return
    for outcome, count in result.counts.items():
        setattr(summary, outcome, getattr(summary, outcome) + count)
    problems.extend((row.line, Problem(row.location, reason)) for row, reason in result.problems)
    # Stored by someone else since the batch looked (a sign-up): these go the slow way.
    _store_one_by_one(session, result.retry, summary, problems)


def _store_one_by_one(
    session: Session,
    rows: list[Row],
    summary: ImportSummary,
    problems: list[tuple[int, Problem]],
) -> None:
    """Store each row in a savepoint of its own: one that fails leaves nothing behind."""
    for row in rows:
        try:
            with session.begin_nested():
                outcome = upsert_subscriber(session, row.data)
        except NewsletterError as exc:
            problems.append((row.line, Problem(row.location, str(exc))))
            continue
        except (IntegrityError, DataError) as exc:
            problems.append((row.line, Problem(row.location, unstorable(exc))))
            continue
        setattr(summary, outcome, getattr(summary, outcome) + 1)


def unstorable(exc: IntegrityError | DataError) -> str:
    """What a row the database refused is reported as: the database's own first line."""
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    return f"the database refused this row: {reason}"
