"""Engine and session factory.

SQLite gets WAL, foreign keys and a busy timeout on every connection; PostgreSQL
is reached through psycopg 3. The caller owns the transaction:
``with session_factory.begin() as session: ...``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from sqlalchemy import ARRAY, ColumnElement, Engine, any_, bindparam, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker

from newsletter.errors import DatabaseUnavailable

SessionFactory = sessionmaker[Session]

log = logging.getLogger(__name__)
T = TypeVar("T")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (web, previews) run beside the one writer; foreign keys are
    # off by default in SQLite; the busy timeout makes a second writer wait, not fail.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def make_engine(url: str, *, echo: bool = False, pre_ping: bool = True) -> Engine:
    """Create an engine for ``url`` and check that it connects.

    ``pre_ping``: test every connection as it leaves the pool (a round trip), so a
    database restarted since is met with a fresh connection. A process that instead
    runs each unit of work again when its connection turns out dead (``retry_stale``),
    such as a spawned delivery worker committing hundreds of times a second, does
    without (a worker run in the caller's process uses the caller's engine).
    """
    try:
        engine = create_engine(url, echo=echo, pool_pre_ping=pre_ping)
    except (ArgumentError, ImportError) as exc:
        raise DatabaseUnavailable(f"invalid database URL {safe_url(url)}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(f"cannot connect to database {safe_url(url)}: {reason}") from None
    return engine


def among(
    column: ColumnElement[Any] | QueryableAttribute[Any], values: Collection[Any], dialect: str
) -> ColumnElement[bool]:
    """``column IN values`` for a batch of values (ids, addresses) known in Python.

    On PostgreSQL ``column = ANY(:array)``: one parameter, so one statement text
    whatever the batch's size. SQLAlchemy's expanding IN writes a placeholder per
    value, and psycopg parses a statement of more than 50 parameters afresh on every
    run (it caches only smaller ones), which cost a delivery worker more than the
    rows it loads. Elsewhere (``dialect`` is the engine's ``dialect.name``) the IN.
    """
    if dialect == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


def autocommit_engine(engine: Engine) -> Engine:
    """An engine on ``engine``'s database (a pool of its own) whose connections run each
    statement as its own transaction: no BEGIN and COMMIT round trips around a single
    statement, which ``execution_options(isolation_level=...)`` would still cost (it
    switches and resets the connection's mode on every checkout). No pre-ping: run its
    work through ``retry_stale``. The caller disposes of it."""
    return create_engine(engine.url, isolation_level="AUTOCOMMIT", pool_pre_ping=False)


def retry_stale(work: Callable[[], T]) -> T:
    """``work()``, run once more if it failed on a pooled connection that had died (the
    database restarted, or ended the session): SQLAlchemy then renews the whole pool,
    so the second run gets a live connection. ``work`` must be one whole transaction,
    which the failure rolled back (or, if the connection died in COMMIT, may have
    committed: it must be safe to run again)."""
    try:
        return work()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning("database connection was gone; once more on a new one: %s", exc.orig)
        return work()


def make_session_factory(engine: Engine) -> SessionFactory:
    """A session factory whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)
