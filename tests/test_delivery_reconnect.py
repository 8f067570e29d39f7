"""A delivery worker's database connections can die under it (PostgreSQL restarted, an
idle session ended): the worker runs each unit of work once more on a new connection
instead of testing every connection before use (``pool_pre_ping``, a round trip per
checkout, which a worker committing hundreds of times a second cannot afford)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import text

from newsletter.db import SessionFactory, make_engine, make_session_factory
from newsletter.delivery.relay_errors import UNREACHABLE, last_relay_error, note_unreachable
from newsletter.delivery.run import deliver
from newsletter.mail.faulty import Faults, FaultyServer
from newsletter.models import DeliveryStatus, utcnow
from tests.test_delivery import (
    EDITION,
    Planned,
    deliveries,
    parse,
    plan_cache,  # noqa: F401 - the fixture `planned` depends on
    planned,  # noqa: F401 - a fixture the tests below use
    populated,  # noqa: F401 - the fixture `planned` depends on
    settings_for,
)

APP = "nl-reconnect-test"


def _kill_the_workers_connections(url: str) -> int:
    """End every idle session of the run (pooled, between transactions: what a database
    restart or an idle-session timeout ends; a session in a transaction is left alone,
    as a kill inside a claim's COMMIT stops the worker by design)."""
    admin = make_engine(url)
    try:
        with admin.begin() as connection:
            return len(
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :app AND pid <> pg_backend_pid() "
                        "AND state = 'idle'"
                    ),
                    {"app": APP},
                ).all()
            )
    finally:
        admin.dispose()


# 1: the worker runs in the caller's process on its engine; 2: two spawned worker
# processes, each with its own engine made without pre-ping (``run._child_main``).
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_carries_on_when_its_pooled_connections_are_killed(
    planned: Planned, workers: int
) -> None:
    url = f"{planned.database_url}&application_name={APP}"
    engine = make_engine(url, pre_ping=False)
    sessions = make_session_factory(engine)
    kills: list[int] = []

    def killer(server: FaultyServer) -> None:
        # Twice while the worker runs, each time halfway through the relay's 0.2 s wait
        # before accepting the next message: after the first message and after the third.
        # By then the worker has stored the last outcome and claimed ahead, so its pooled
        # connections are idle (a kill inside a claim's COMMIT stops the worker, by
        # design: test_a_claim_whose_commit_fails_is_not_claimed_again).
        for after in (1, 3):
            deadline = time.monotonic() + 30
            while len(server.messages) < after and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(0.1)
            kills.append(_kill_the_workers_connections(planned.database_url))

    try:
        with FaultyServer(faults=Faults(data_delay=0.2)) as server:
            thread = threading.Thread(target=killer, args=(server,))
            thread.start()
            summary = deliver(
                sessions,
                settings=settings_for(url, server, smtp_connections=1, send_batch_size=1),
                edition=EDITION,
                workers=workers,
            )
            thread.join()
            ids = Counter(parse(m.data)["Message-ID"] for m in server.messages)
    finally:
        engine.dispose()
    assert len(kills) == 2
    assert all(kills), f"the worker held no connection to kill: {kills}"
    if workers > 1:  # the caller holds one idle session at most: the rest were the workers'
        assert max(kills) >= 2, kills
    # One run sent every issue once: the dead connections neither stopped the worker
    # (which a failed recording does, to retry it later), nor lost or double-counted
    # an outcome.
    assert summary.sent == len(planned.emails) == len(ids)
    assert set(ids.values()) == {1}
    assert {r.status for r in deliveries(planned.sessions).values()} == {DeliveryStatus.SENT}


def test_a_claim_whose_commit_fails_is_not_claimed_again(
    planned: Planned, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection dies in the claim's COMMIT, after the server committed: claiming
    again would take a second batch and leave the first held by this worker, unsent. The
    worker stops with the database error instead, and the run gives everything back."""
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    from newsletter.delivery import worker as worker_module
    from newsletter.errors import DatabaseUnavailable

    real_claim, real_commit = worker_module.Worker._claim, Session.commit
    state = {"in_claim": False, "failed": 0, "claims": 0}

    def claim(self: Any) -> Any:
        state["claims"] += 1
        state["in_claim"] = True
        try:
            return real_claim(self)
        finally:
            state["in_claim"] = False

    def commit(self: Session) -> None:
        real_commit(self)
        if state["in_claim"] and not state["failed"]:
            state["failed"] += 1
            raise OperationalError("COMMIT", {}, Exception("gone"), connection_invalidated=True)

    monkeypatch.setattr(worker_module.Worker, "_claim", claim)
    monkeypatch.setattr(Session, "commit", commit)
    with FaultyServer() as server:
        with pytest.raises(DatabaseUnavailable, match="claim's commit failed"):
            deliver(
                planned.sessions,
                settings=settings_for(planned.database_url, server),
                edition=EDITION,
                workers=1,
            )
        assert server.messages == []
    assert state == {"in_claim": False, "failed": 1, "claims": 1}  # not run again
    rows = deliveries(planned.sessions)
    # The batch that was claimed went back: nothing is held, nothing was lost.
    assert {r.status for r in rows.values()} == {DeliveryStatus.PENDING}
    assert {r.lease_owner for r in rows.values()} == {None}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_unreachable_relay_is_noted_on_a_new_connection_if_the_pooled_one_died(
    sessions: SessionFactory, database_url: str
) -> None:
    """A run whose relay cannot be reached notes it after its workers gave up, on the
    caller's pooled connection, which may have died meanwhile (the workers of a long
    run take minutes): it is noted on a new one instead of failing the run with a
    database error in place of the relay's."""
    engine = make_engine(f"{database_url}&application_name={APP}", pre_ping=False)
    try:
        caller = make_session_factory(engine)
        with caller() as session:
            session.execute(text("SELECT 1"))  # the connection is back in the pool, idle
        assert _kill_the_workers_connections(database_url) == 1
        note_unreachable(caller, "SMTP relay unavailable: 421 4.3.2 service not available")
    finally:
        engine.dispose()
    with sessions() as session:
        error = last_relay_error(session, now=utcnow())
    assert error is not None
    assert (error.kind, error.code) == (UNREACHABLE, 421)
