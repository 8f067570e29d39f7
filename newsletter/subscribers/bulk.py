"""Storing a batch of validated subscribers in a few statements, not a few per row.

``load_batch`` applies the rules of ``newsletter.subscribers.records`` to a batch at
once: one query for the suppressed addresses among them, one for the stored
subscribers (locked, so nobody changes them between the look and the write) and one
for their interests; the outcome of each row is worked out in Python, then only what
changes is written. On PostgreSQL the rows go by COPY into a temporary staging table,
then one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` and one ``UPDATE … FROM``, and
the interests by COPY; on SQLite by executemany. The caller owns the transaction (and
wraps each batch in a savepoint: a batch the database refuses is all or nothing).

Written here rather than through the ORM's bulk helpers because those still need a
query per row to tell created from updated from unchanged, and cannot use COPY.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

import psycopg
from sqlalchemy import (
    Column,
    ColumnElement,
    Integer,
    MetaData,
    Table,
    any_,
    bindparam,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateTable

from newsletter.models import Interest, Subscriber, Suppression, utcnow
from newsletter.subscribers.records import (
    CHOICES,
    InterestRow,
    Outcome,
    SubscriberInput,
    choice_changes,
    new_record,
    same_interests,
    suppressed,
    wanted_interests,
)

T = TypeVar("T")
# Rows per batch: large enough that the statements' fixed costs fade, small enough
# that a batch retried row by row stays quick and the IN lists stay well under
# SQLite's limit of 32,766 parameters.
BATCH_SIZE = 2000
_SUBSCRIBERS: Table = Subscriber.__table__  # type: ignore[assignment]
_INTERESTS: Table = Interest.__table__  # type: ignore[assignment]
_SUPPRESSIONS: Table = Suppression.__table__  # type: ignore[assignment]
# What a new subscriber's row holds (``new_record``'s keys); the rest take their defaults.
_NEW_COLUMNS = tuple(new_record(SubscriberInput(email=""), now=utcnow()))
# PostgreSQL's staging table: the columns an import writes, plus the row's line and, for
# a stored subscriber, their id; temporary, gone at the end of the transaction.
_STAGING = Table(
    "subscriber_import",
    MetaData(),
    Column("line", Integer),
    Column("id", Integer),
    *(Column(name, _SUBSCRIBERS.c[name].type) for name in _NEW_COLUMNS),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
_INTEREST_COLUMNS = ("subscriber_id", "topic_id", "keywords", "weight")


@dataclass(frozen=True)
class Row:
    """A validated row of a file: where it was and what it says."""

    line: int
    location: str
    data: SubscriberInput


@dataclass
class BatchResult:
    counts: dict[Outcome, int] = field(
        default_factory=lambda: {"created": 0, "updated": 0, "unchanged": 0}
    )
    problems: list[tuple[Row, str]] = field(default_factory=list)
    # Rows someone else stored since the batch looked (an insert that met a conflict):
    # left for the caller to store one at a time.
    retry: list[Row] = field(default_factory=list)


@dataclass
class _Plan:
    """What the batch writes."""

    new: list[tuple[Row, dict[str, Any]]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    # Interests to replace: subscriber id -> the whole new list.
    interests: dict[int, list[InterestRow]] = field(default_factory=dict)


def load_batch(session: Session, rows: Sequence[Row]) -> BatchResult:
    """Store ``rows`` (distinct addresses); see the module's docstring."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    emails = [row.data.email for row in rows]
    refused = set(
        session.scalars(
            select(_SUPPRESSIONS.c.email).where(_among(_SUPPRESSIONS.c.email, emails, postgresql))
        )
    )
    # Read without locks: a re-import changes few of its rows, and the import runs in
    # one transaction (CLI, admin upload), so locking every stored row of a large file
    # would hold them all (an unsubscribe, a preference change waits) until it ends.
    stored, stored_interests = _stored(session, emails, postgresql, lock=False)
    result, plan = _decide(rows, refused, stored, stored_interests)
    touched = sorted({change["id"] for change in plan.updates} | set(plan.interests))
    if touched:
        # Only the rows to change are locked, just before writing, and decided again
        # on what they hold now (a change since the unlocked read is not undone).
        by_id = {found["id"]: email for email, found in stored.items()}
        changing = [by_id[i] for i in touched]
        fresh, fresh_interests = _stored(session, changing, postgresql, lock=True)
        stored.update(fresh)
        stored_interests.update(fresh_interests)
        for email in set(changing) - set(fresh):
            del stored[email]  # gone meanwhile: stored anew
        result, plan = _decide(rows, refused, stored, stored_interests)
    if plan.interests:  # stored subscribers' interests to replace: the old ones go first
        replaced = list(plan.interests)
        session.execute(
            delete(_INTERESTS).where(_among(_INTERESTS.c.subscriber_id, replaced, postgresql))
        )
    ids = _write_postgresql(session, plan) if postgresql else _write_sqlite(session, plan)
    for row, _ in plan.new:
        subscriber_id = ids.get(row.data.email)
        if subscriber_id is None:
            result.retry.append(row)
        else:
            plan.interests[subscriber_id] = wanted_interests(row.data)
            result.counts["created"] += 1
    interests = [
        (subscriber_id, *interest)
        for subscriber_id, wanted in plan.interests.items()
        for interest in wanted
    ]
    if interests and postgresql:
        _copy(session, "interests", _INTEREST_COLUMNS, interests)
    elif interests:
        values = [dict(zip(_INTEREST_COLUMNS, i, strict=True)) for i in interests]
        session.execute(insert(_INTERESTS), values)
    return result


def _stored(
    session: Session, emails: list[str], postgresql: bool, *, lock: bool
) -> tuple[dict[str, Any], dict[int, list[InterestRow]]]:
    """The stored subscribers among ``emails`` (by address) and their interests;
    ``lock``: their rows locked until the transaction ends (in id order)."""
    query = (
        select(_SUBSCRIBERS.c.id, _SUBSCRIBERS.c.email, *(_SUBSCRIBERS.c[c] for c in CHOICES))
        .where(_among(_SUBSCRIBERS.c.email, emails, postgresql))
        .order_by(_SUBSCRIBERS.c.id)
    )
    if lock:
        query = query.with_for_update()
    stored = {found.email: found for found in session.execute(query).mappings()}
    stored_interests: dict[int, list[InterestRow]] = {found["id"]: [] for found in stored.values()}
    if stored_interests:
        for subscriber_id, topic_id, keywords, weight in session.execute(
            select(
                _INTERESTS.c.subscriber_id,
                _INTERESTS.c.topic_id,
                _INTERESTS.c.keywords,
                _INTERESTS.c.weight,
            )
            .where(_among(_INTERESTS.c.subscriber_id, list(stored_interests), postgresql))
            .order_by(_INTERESTS.c.id)
        ):
            stored_interests[subscriber_id].append((topic_id, keywords, weight))
    return stored, stored_interests


def _decide(
    rows: Sequence[Row],
    refused: set[str],
    stored: dict[str, Any],
    stored_interests: dict[int, list[InterestRow]],
) -> tuple[BatchResult, _Plan]:
    """What each row asks of what is stored: the counts so far and what to write."""
    result = BatchResult()
    plan = _Plan()
    now = utcnow()
    for row in rows:
        data = row.data
        if data.email in refused:
            result.problems.append((row, str(suppressed(data.email))))
            continue
        found = stored.get(data.email)
        if found is None:
            plan.new.append((row, new_record(data, now=now)))
            continue
        changes = choice_changes(found, data)
        if changes:
            plan.updates.append({"id": found["id"], **{c: found[c] for c in CHOICES}, **changes})
        have = stored_interests[found["id"]]
        wanted = wanted_interests(data, have)
        if not same_interests(have, wanted):
            plan.interests[found["id"]] = wanted
        changed = bool(changes) or found["id"] in plan.interests
        result.counts["updated" if changed else "unchanged"] += 1
    return result, plan


def _among(column: ColumnElement[T], values: list[T], postgresql: bool) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL as ``= ANY(array)``, one parameter for them all
    (psycopg parses a statement of thousands of parameters slowly)."""
    if postgresql:
        array = bindparam(None, values, type_=pg.ARRAY(column.type))
        return column == any_(array)
    return column.in_(values)


def _write_sqlite(session: Session, plan: _Plan) -> dict[str, int]:
    """Write the subscribers' rows with executemany; the new ones' ids by address."""
    ids: dict[str, int] = {}
    if plan.new:
        statement = (
            sqlite.insert(_SUBSCRIBERS)
            .on_conflict_do_nothing(index_elements=["email"])
            .returning(_SUBSCRIBERS.c.id, _SUBSCRIBERS.c.email)
        )
        ids = dict(
            (email, id_) for id_, email in session.execute(statement, [r for _, r in plan.new])
        )
    if plan.updates:
        session.execute(
            update(_SUBSCRIBERS)
            .where(_SUBSCRIBERS.c.id == bindparam("b_id"))
            .values({c: bindparam(f"b_{c}") for c in CHOICES}),
            [{f"b_{key}": value for key, value in change.items()} for change in plan.updates],
        )
    return ids


def _write_postgresql(session: Session, plan: _Plan) -> dict[str, int]:
    """Write the subscribers' rows by COPY through a staging table; the new ones' ids."""
    session.execute(CreateTable(_STAGING, if_not_exists=True))
    session.execute(text(f"TRUNCATE {_STAGING.name}"))
    staged = [_staged(row.line, None, record) for row, record in plan.new] + [
        _staged(0, change["id"], change) for change in plan.updates
    ]
    _copy(session, _STAGING.name, [c.name for c in _STAGING.c], staged)
    new = _STAGING.c.id.is_(None)
    ids: dict[str, int] = {}
    if plan.new:
        statement = (
            pg.insert(_SUBSCRIBERS)
            .from_select(
                _NEW_COLUMNS,
                select(*(_STAGING.c[c] for c in _NEW_COLUMNS)).where(new).order_by(_STAGING.c.line),
            )
            .on_conflict_do_nothing(index_elements=["email"])
            .returning(_SUBSCRIBERS.c.id, _SUBSCRIBERS.c.email)
        )
        ids = {email: id_ for id_, email in session.execute(statement)}
    if plan.updates:
        session.execute(
            update(_SUBSCRIBERS)
            .where(_SUBSCRIBERS.c.id == _STAGING.c.id, ~new)
            .values({c: _STAGING.c[c] for c in CHOICES})
        )
    return ids


def _staged(line: int, subscriber_id: int | None, values: dict[str, Any]) -> tuple[Any, ...]:
    # A new subscriber has no id yet; a stored one's row carries only its choices.
    return (line, subscriber_id, *(_plain(values.get(column)) for column in _NEW_COLUMNS))


def _copy(
    session: Session, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]
) -> None:
    """COPY ``rows`` into ``table`` on the session's own connection (its transaction)."""
    raw = session.connection().connection.driver_connection
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as exc:
        # As SQLAlchemy reports a statement it ran (IntegrityError, DataError, ...), so
        # the caller handles a refused COPY like any refused statement.
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc


def _plain(value: Any) -> Any:
    """A value as COPY takes it: an enum as its stored string (the model stores values)."""
    return value.value if isinstance(value, Enum) else value
