"""A worker whose heartbeat is late never sends a delivery twice.

Under heavy load a worker's heartbeat can miss its lease: the deliveries it holds (in
its queue, or about to go on the wire) then look free. Its own next claim took them
again and sent them a second time (seen once on a loaded machine in
test_relay_that_goes_away_mid_edition_and_comes_back_on_the_same_port). Here the
worker's clock jumps past its leases while it sends, as a starved heartbeat looks to
it: every reader still gets exactly one message, and what the worker held when its
lease ran out went back to the queue unsent and was sent once, later.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from newsletter.db import SessionFactory
from newsletter.delivery.outbox import claim_batch
from newsletter.delivery.run import deliver
from newsletter.mail.faulty import Faults, FaultyServer
from newsletter.models import Delivery, DeliveryStatus, utcnow
from tests.conftest import make_settings
from tests.smtpfaults import EDITION, audit, plan_readers

READERS = 12
LEASE = timedelta(seconds=60)


class JumpingClock:
    """utcnow, plus a jump made once the server has accepted the first message."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset


def test_a_worker_never_sends_again_what_it_holds_past_its_lease(
    sessions: SessionFactory, database_url: str, daily_file: Path
) -> None:
    plan_readers(sessions, daily_file, READERS)
    clock = JumpingClock()
    with FaultyServer(Faults(data_delay=0.1)) as server:
        settings = make_settings(
            database_url,
            smtp_host=server.host,
            smtp_port=server.port,
            smtp_connections=1,
            send_batch_size=2,
            smtp_timeout=5.0,
            lease_seconds=int(LEASE.total_seconds()),
            retry_base_seconds=0.05,
        )

        def jump() -> None:
            while server.received < 1 and not done.is_set():
                done.wait(0.005)
            clock.offset = 3 * LEASE  # the heartbeat (every 20 s) has not run yet

        done = threading.Event()
        jumper = threading.Thread(target=jump, daemon=True)
        jumper.start()
        try:
            summary = deliver(
                sessions, settings=settings, edition=EDITION, workers=1, wait=True, clock=clock
            )
        finally:
            done.set()
            jumper.join(timeout=10)
        assert clock.offset == 3 * LEASE
        audit(sessions, server, summaries=[summary])
    assert summary.sent == READERS
    assert summary.released >= 1  # what it held when the lease ran out went back


def test_a_worker_does_not_claim_its_own_deliveries_again(
    sessions: SessionFactory, daily_file: Path
) -> None:
    """Its own claims with the lease run out are for other workers to take over."""
    plan_readers(sessions, daily_file, 6)
    now = utcnow()
    with sessions.begin() as session:
        session.execute(
            update(Delivery).values(
                status=DeliveryStatus.CLAIMED, lease_owner="me", lease_until=now - LEASE
            )
        )
    with sessions.begin() as session:
        mine = claim_batch(session, edition_id=None, owner="me", now=now, lease=LEASE, limit=5)
        taken = claim_batch(session, edition_id=None, owner="other", now=now, lease=LEASE, limit=5)
    assert mine == []
    assert len(taken) == 5
