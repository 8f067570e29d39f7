"""The committing planner: one batch per transaction, ranges claimed with a lease, a
killed planner's work resumed, racing planners and worker processes never planning a
subscriber twice, and the same deliveries as planning in one transaction."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from datetime import date, timedelta

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from newsletter.db import SessionFactory
from newsletter.models import (
    Delivery,
    DeliveryItem,
    Edition,
    Paper,
    PlanBatch,
    Subscriber,
    utcnow,
)
from newsletter.papers.catalogue import load_catalogue
from newsletter.papers.ingest import ingest_file
from newsletter.planning.claims import LEASE
from newsletter.planning.editions import plan_edition
from newsletter.planning.options import PlanOptions
from newsletter.planning.planner import PlannerRun, plan_claimed, plan_in_batches, prepare
from newsletter.planning.workers import plan_with_workers
from newsletter.settings import Settings
from newsletter.subscribers.roster import build_input, upsert_subscriber
from tests.conftest import DAILY, REPO

WED = date(2026, 5, 27)
CATALOGUE = load_catalogue()
TOPICS = ("cs.CV", "cs.CL", "cs.RO", "cs.CR", "cs.LG", "cs.AI", "cs.IR")
OPTIONS = PlanOptions(max_papers=5)
# Each planned subscriber: (arXiv id, rank, score, terms) of every item.
Plan = dict[str, list[tuple[str, int, float, list[str]]]]


@pytest.fixture
def readers(sessions: SessionFactory) -> SessionFactory:
    with sessions.begin() as session:
        for day in ("2026-05-25", "2026-05-27"):
            ingest_file(session, DAILY / f"{day}.jsonl", today=WED)
        for n, topic in enumerate(TOPICS):
            frequency = "weekly" if n % 3 == 0 else "daily"
            upsert_subscriber(
                session,
                build_input(
                    CATALOGUE, email=f"r{n}@example.org", topics=[topic], frequency=frequency
                ),
            )
    return sessions


def planned(sessions: SessionFactory) -> Plan:
    with sessions() as session:
        rows = session.execute(
            select(
                Subscriber.email,
                Paper.external_id,
                DeliveryItem.rank,
                DeliveryItem.score,
                DeliveryItem.terms,
            )
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .join(DeliveryItem, DeliveryItem.delivery_id == Delivery.id)
            .join(Paper, Paper.id == DeliveryItem.paper_id)
            .order_by(Subscriber.email, DeliveryItem.rank)
        ).all()
    found: Plan = {}
    for email, paper, rank, score, terms in rows:
        found.setdefault(email, []).append((paper, rank, score, terms))
    return found


def reference(sessions: SessionFactory) -> Plan:
    """What planning the edition in one transaction writes; then forgotten again."""
    with sessions.begin() as session:
        plan_edition(session, WED, options=OPTIONS)
    found = planned(sessions)
    forget(sessions)
    return found


def forget(sessions: SessionFactory) -> None:
    with sessions.begin() as session:
        session.execute(delete(Edition))


def deliveries_per_subscriber(sessions: SessionFactory) -> list[int]:
    with sessions() as session:
        return list(
            session.scalars(
                select(func.count(Delivery.id)).group_by(
                    Delivery.subscriber_id, Delivery.edition_id
                )
            )
        )


def test_batches_write_what_one_transaction_writes(readers: SessionFactory) -> None:
    expected = reference(readers)
    assert len(expected) >= 5
    # The "why" terms are compared too (written by hand as COPY text on PostgreSQL).
    assert all(terms for items in expected.values() for *_, terms in items)
    summary = plan_in_batches(readers, WED, options=OPTIONS, batch_size=2)
    assert summary.planned == len(expected)
    assert summary.planned + summary.nothing_new == len(TOPICS)
    assert planned(readers) == expected
    with readers() as session:
        ranges = session.scalars(select(PlanBatch)).all()
    # Ranges are two ids wide (aligned, so 4 to 5 of them for 7 ids) and all done.
    assert 4 <= len(ranges) <= 5
    assert all(r.done_at is not None and r.lease_owner is None for r in ranges)
    again = plan_in_batches(readers, WED, options=OPTIONS, batch_size=2)
    assert (again.planned, again.already_planned) == (0, len(expected))
    assert planned(readers) == expected


def test_planners_racing_on_one_edition_never_both_plan_a_subscriber(
    readers: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    expected = reference(readers)
    run = PlannerRun(WED, OPTIONS, batch_size=1)
    edition_id, _, _ = prepare(readers, run)
    since = utcnow()
    start = threading.Barrier(2)
    results = []
    errors: list[BaseException] = []

    def planner(name: str) -> None:
        try:
            start.wait()
            results.append(
                plan_claimed(
                    readers,
                    PlannerRun(WED, OPTIONS, batch_size=1, owner=name),
                    edition_id=edition_id,
                    since=since,
                )
            )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    caplog.set_level(logging.WARNING, logger="newsletter.planning.planner")
    threads = [threading.Thread(target=planner, args=(f"planner-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # Each range went to one planner: no batch collided (a retry or a lost lease
    # would be logged), the counts add up, and everyone has exactly one issue.
    assert caplog.records == []
    assert sum(r.planned for r in results) == len(expected)
    assert sum(r.planned + r.nothing_new for r in results) == len(TOPICS)
    assert set(deliveries_per_subscriber(readers)) == {1}
    assert planned(readers) == expected


def test_an_expired_lease_is_taken_over(readers: SessionFactory) -> None:
    expected = reference(readers)
    run = PlannerRun(WED, OPTIONS, batch_size=100, owner="gone")
    edition_id, _, _ = prepare(readers, run)
    from newsletter.planning.claims import claim

    with readers.begin() as session:
        assert claim(session, edition_id, owner="gone", since=utcnow(), now=utcnow()) is not None
    # Leased to a planner that is gone: nobody else may take it yet ...
    alive = plan_in_batches(readers, WED, options=OPTIONS, batch_size=100)
    assert (alive.planned, alive.held_elsewhere) == (0, 1)
    assert "1 batches still held by another planner" in str(alive)
    # ... until its lease has run out.
    later = utcnow() + LEASE + timedelta(seconds=1)
    resumed = plan_in_batches(readers, WED, options=OPTIONS, batch_size=100, clock=lambda: later)
    assert (resumed.planned, resumed.held_elsewhere) == (len(expected), 0)
    assert planned(readers) == expected


KILLED_PLANNER = """
import sys
from datetime import date
from newsletter.db import make_engine, make_session_factory
from newsletter.planning.options import PlanOptions
from newsletter.planning.planner import plan_in_batches

calls = 0

def hold_the_third_batch(session, edition_id, subscribers):
    global calls
    calls += 1
    if calls == 3:  # its deliveries are written, its transaction still open
        print("in flight", flush=True)
        sys.stdin.readline()

sessions = make_session_factory(make_engine(sys.argv[1]))
plan_in_batches(
    sessions, date(2026, 5, 27), options=PlanOptions(max_papers=5), batch_size=1,
    after_batch=hold_the_third_batch,
)
"""


@pytest.mark.slow
def test_a_planner_killed_mid_edition_loses_nothing_and_plans_no_one_twice(
    readers: SessionFactory, database_url: str
) -> None:
    expected = reference(readers)
    with subprocess.Popen(
        [sys.executable, "-c", KILLED_PLANNER, database_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO,
        text=True,
    ) as child:
        assert child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "in flight"
        finally:
            os.kill(child.pid, signal.SIGKILL)
    assert child.returncode == -signal.SIGKILL
    # Two batches committed; the third died with its transaction.
    halfway = planned(readers)
    assert len(halfway) == 2
    assert all(expected[email] == items for email, items in halfway.items())
    later = utcnow() + LEASE + timedelta(seconds=1)
    rest = plan_in_batches(readers, WED, options=OPTIONS, batch_size=1, clock=lambda: later)
    assert rest.already_planned == 2
    assert rest.planned == len(expected) - 2
    assert set(deliveries_per_subscriber(readers)) == {1}
    assert planned(readers) == expected


@pytest.mark.slow
def test_worker_processes_write_what_one_planner_writes(
    readers: SessionFactory, settings: Settings
) -> None:
    expected = reference(readers)
    summary = plan_with_workers(settings, readers, WED, options=OPTIONS, workers=2, batch_size=1)
    assert summary.planned == len(expected)
    assert summary.planned + summary.nothing_new == len(TOPICS)
    assert set(deliveries_per_subscriber(readers)) == {1}
    assert planned(readers) == expected


def test_a_refused_copy_is_a_database_error_the_planner_retries(readers: SessionFactory) -> None:
    """A delivery a peer wrote meanwhile makes the batch's write fail: on either
    database as SQLAlchemy's IntegrityError (PostgreSQL's COPY raised psycopg's own,
    which the planner neither retried nor answered by giving the range back)."""
    from newsletter.planning.issues import RankedIssue
    from newsletter.planning.outbox_rows import write_issues
    from newsletter.planning.readers import load_readers

    edition_id = prepare(readers, PlannerRun(WED, OPTIONS))[0]
    with readers.begin() as session:
        reader = load_readers(session, edition_id, only=None, limit=1)[0]
        paper = session.scalars(select(Paper).limit(1)).one()
        write_issues(session, edition_id, [RankedIssue(reader, [(paper, 0.5, ["robot"])])])
    with pytest.raises(IntegrityError), readers.begin() as session:
        write_issues(session, edition_id, [RankedIssue(reader, [(paper, 0.5, ["robot"])])])


def test_a_batch_failing_outside_the_database_gives_its_range_back(
    readers: SessionFactory,
) -> None:
    expected = reference(readers)

    def broken(session: object, edition_id: int, subscribers: tuple[int, int]) -> None:
        raise RuntimeError("a bug in the batch's last step")

    with pytest.raises(RuntimeError, match="a bug"):
        plan_in_batches(readers, WED, options=OPTIONS, batch_size=100, after_batch=broken)
    with readers() as session:
        assert session.scalar(select(func.count()).where(PlanBatch.lease_owner.is_not(None))) == 0
    # Planned again at once, not after the lease.
    again = plan_in_batches(readers, WED, options=OPTIONS, batch_size=100)
    assert (again.planned, again.held_elsewhere) == (len(expected), 0)
    assert planned(readers) == expected


def test_a_run_for_some_subscribers_leaves_the_rest_of_their_range_to_a_full_run(
    readers: SessionFactory,
) -> None:
    """The scheduler plans who is due (``only``) while ``newsletter plan`` plans the
    whole edition: the range they share is not 'done' for the full run."""
    expected = reference(readers)
    full = PlannerRun(WED, OPTIONS, batch_size=100, owner="full")
    edition_id, _, _ = prepare(readers, full)
    since = utcnow()  # the full run starts ...
    with readers() as session:
        first = session.scalars(select(Subscriber.id).order_by(Subscriber.id)).first()
    assert first is not None
    # ... and the scheduler plans one subscriber of the same range meanwhile.
    some = plan_in_batches(readers, WED, options=OPTIONS, only=[first], batch_size=100)
    assert some.planned + some.nothing_new == 1
    rest = plan_claimed(readers, full, edition_id=edition_id, since=since)
    assert some.planned + rest.planned == len(expected)
    assert planned(readers) == expected
