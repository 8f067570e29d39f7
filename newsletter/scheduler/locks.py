"""One active scheduler per database: the lock it holds while it runs jobs.

On PostgreSQL ``pg_try_advisory_lock`` on a dedicated connection; on a SQLite file an
exclusive ``flock`` on ``<database>.scheduler.lock``; an in-memory SQLite database needs
none. Either way the operating system or PostgreSQL releases the lock of a process that
dies, so a standby scheduler can take over.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

_LOCK_NAME = "newsletter-scheduler"


class LeaderLock(Protocol):
    """A lock only one scheduler per database holds; ``healthy`` turns false if it
    was lost (the scheduler then steps down)."""

    def try_acquire(self) -> bool: ...
    def healthy(self) -> bool: ...
    def release(self) -> None: ...


class FileLock:
    """An exclusive ``flock`` on a file: released by the kernel when the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def try_acquire(self) -> bool:
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def healthy(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()


class NoLock:
    """An in-memory SQLite database belongs to one process: nothing to share."""

    def try_acquire(self) -> bool:
        return True

    def healthy(self) -> bool:
        return True

    def release(self) -> None:
        return None


class AdvisoryLock:
    """``pg_try_advisory_lock`` held on a dedicated connection of its own.

    The key is derived from the database and schema, so installations sharing a
    PostgreSQL server (or one database in separate schemas) do not block each other.
    The lock lives as long as the connection: if PostgreSQL or the network drops
    it, ``healthy`` turns false and the scheduler steps down.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = create_engine(url, poolclass=NullPool)
        self._connection: Connection | None = None
        self.backend_pid: int | None = None  # the server process holding the lock

    def try_acquire(self) -> bool:
        connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            database, schema, pid = connection.execute(
                text("SELECT current_database(), current_schema(), pg_backend_pid()")
            ).one()
            key = _lock_key(f"{_LOCK_NAME}:{database}:{schema}")
            got = bool(
                connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            )
        except BaseException:
            connection.close()
            raise
        if not got:
            connection.close()
            return False
        self._connection = connection
        self.backend_pid = int(pid)
        return True

    def healthy(self) -> bool:
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
        except Exception:  # the connection (and with it the lock) is gone
            return False
        return True

    def release(self) -> None:
        connection, self._connection = self._connection, None
        self.backend_pid = None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.execute(text("SELECT pg_advisory_unlock_all()"))
            with contextlib.suppress(Exception):
                connection.close()

    def close(self) -> None:
        self.release()
        self._engine.dispose()


def _lock_key(name: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


def leader_lock(database_url: str) -> LeaderLock:
    """The lock that makes one scheduler per database the active one."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return AdvisoryLock(database_url)
    path = url.database
    if not path or path == ":memory:" or path.startswith("file::memory:"):
        return NoLock()
    return FileLock(Path(f"{path}.scheduler.lock"))
