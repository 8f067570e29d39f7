"""The delivery engine's parts: rate limits, the slow-down pause, leases, several
workers, VERP, DKIM and the mailto unsubscribe, paused subscribers.

Real databases (SQLite and PostgreSQL), real SMTP servers (aiosmtpd), real templates.
The fault and crash scenarios are in test_delivery_faults.py / test_delivery_crash.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import dkim
import pytest
from sqlalchemy import func, select, update

from newsletter.db import SessionFactory
from newsletter.delivery.outbox import claim_batch, release_owned, renew_leases
from newsletter.delivery.run import deliver
from newsletter.delivery.sendrate import RateLimiter, reserve
from newsletter.delivery.worker import Throttle
from newsletter.mail.faulty import Faults, FaultyServer
from newsletter.mail.verp import parse_verp
from newsletter.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    EditionStatus,
    SendRate,
    Subscriber,
    utcnow,
)
from newsletter.planning.editions import PlanOptions, plan_edition
from tests.test_delivery import (
    EDITION,
    Planned,
    add_subscriber,
    by_recipient,
    deliveries,
    parse,
    plan_cache,  # noqa: F401 - the fixture `planned` depends on
    planned,  # noqa: F401 - a fixture the tests below use
    populated,  # noqa: F401 - the fixture `planned` depends on
    settings_for,
)
from tests.test_dkimsign import DOMAIN, SELECTOR, _ed25519_key, dns_for

# --------------------------------------------------------------------------- rate limits


def test_reserve_never_grants_more_than_the_per_second_limit(sessions: SessionFactory) -> None:
    t = 1_800_000_000.0  # a fixed wall clock: every call falls in one window
    granted = []
    with sessions.begin() as session:
        for _ in range(4):
            grant = reserve(session, 4, per_second=10, per_hour=None, now=t)
            granted.append(grant.permits)
    assert granted == [4, 4, 2, 0]
    with sessions.begin() as session:
        # Half a second later the window still holds the ten.
        assert reserve(session, 4, per_second=10, per_hour=None, now=t + 0.5).permits == 0
        refused = reserve(session, 4, per_second=10, per_hour=None, now=t + 0.5)
        assert 0 < refused.retry_after <= 0.1
    with sessions.begin() as session:
        # 1.1 s on, the first bucket has left the (conservative) window.
        assert reserve(session, 4, per_second=10, per_hour=None, now=t + 1.15).permits == 4
    with sessions() as session:
        # What was refused was given back: the buckets hold exactly what was granted.
        total = session.scalar(select(func.sum(SendRate.count)).where(SendRate.scope == "s"))
        assert total == 14


def test_reserve_holds_the_per_hour_limit_and_says_when_to_ask_again(
    sessions: SessionFactory,
) -> None:
    t = 1_800_000_000.0
    with sessions.begin() as session:
        assert reserve(session, 3, per_second=None, per_hour=5, now=t).permits == 3
        assert reserve(session, 3, per_second=100, per_hour=5, now=t + 30).permits == 2
        refused = reserve(session, 1, per_second=None, per_hour=5, now=t + 40)
        assert refused.permits == 0
        assert 0 < refused.retry_after <= 60
    with sessions.begin() as session:
        # 59 minutes on, the hour still holds the five.
        assert reserve(session, 1, per_second=None, per_hour=5, now=t + 59 * 60).permits == 0
    with sessions.begin() as session:
        assert reserve(session, 1, per_second=None, per_hour=5, now=t + 62 * 60).permits == 1


def test_limiters_of_several_workers_share_one_limit(sessions: SessionFactory) -> None:
    """Eight workers' limiters asking at once, at one frozen moment, get the limit in total."""
    moment = 1_800_000_000.0
    limiters = [
        RateLimiter(sessions, per_second=25, per_hour=None, workers=8, clock=lambda: moment)
        for _ in range(8)
    ]
    granted: list[int] = []
    lock = threading.Lock()

    def ask(limiter: RateLimiter) -> None:
        for _ in range(10):
            permits = limiter._reserve(3).permits
            with lock:
                granted.append(permits)

    threads = [threading.Thread(target=ask, args=(limiter,)) for limiter in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 25


def test_deliver_under_a_rate_limit_sends_everything_no_faster(planned: Planned) -> None:
    sessions = planned.sessions
    started = time.monotonic()
    with FaultyServer() as server:
        settings = settings_for(planned.database_url, server, rate_per_second=2)
        summary = deliver(sessions, settings=settings, edition=EDITION)
        received = by_recipient(server)
    elapsed = time.monotonic() - started
    assert summary.sent == len(planned.emails) == 5
    assert sorted(received) == sorted(planned.emails)
    # Five messages at two per (sliding) second cannot take less than two seconds.
    assert elapsed >= 2.0
    with sessions() as session:
        counted = session.scalar(select(func.sum(SendRate.count)).where(SendRate.scope == "s"))
    assert counted is not None
    assert counted >= 5


# --------------------------------------------------------------------------- slow down


def test_throttle_pauses_doubles_caps_and_resets() -> None:
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    throttle = Throttle(0.5, clock=lambda: now[0], sleep=sleep)

    async def scenario() -> None:
        await throttle.wait()
        assert slept == []  # nothing said yet: no pause
        throttle.slow_down()
        await throttle.wait()
        throttle.slow_down()
        await throttle.wait()
        for _ in range(20):
            throttle.slow_down()
        assert throttle.delay == 60.0
        throttle.ok()
        assert throttle.delay == 0.0

    asyncio.run(scenario())
    assert slept == [0.5, 1.0]


def test_slow_down_reply_retries_that_message_and_the_rest_go_out(planned: Planned) -> None:
    sessions = planned.sessions
    with FaultyServer(rcpt_replies={"carol@example.org": "421 4.7.0 slow down"}) as server:
        summary = deliver(
            sessions, settings=settings_for(planned.database_url, server), edition=EDITION
        )
        received = by_recipient(server)
    assert (summary.sent, summary.retried, summary.bounced) == (4, 1, 0)
    assert "carol@example.org" not in received
    carol = deliveries(sessions)["carol@example.org"]
    assert carol.status == DeliveryStatus.RETRY
    assert carol.last_smtp_code == 421


# --------------------------------------------------------------------------- leases


LEASE = timedelta(seconds=5)


def test_leases_are_renewed_by_their_owner_only_and_given_back(planned: Planned) -> None:
    sessions = planned.sessions
    now = utcnow()
    with sessions.begin() as session:
        edition_id = session.scalar(select(Edition.id).where(Edition.date == EDITION))
        mine = claim_batch(
            session,
            edition_id=edition_id,
            owner="me",
            now=now,
            lease=timedelta(seconds=5),
            limit=3,
        )
        theirs = claim_batch(
            session,
            edition_id=edition_id,
            owner="them",
            now=now,
            lease=timedelta(seconds=5),
            limit=10,
        )
    assert len(mine) == 3
    assert len(theirs) == 2
    assert not set(mine) & set(theirs)
    with sessions.begin() as session:
        assert len(renew_leases(session, owner="me", now=now, lease=timedelta(hours=1))) == 3
    rows = {d.id: d for d in deliveries(sessions).values()}
    for delivery_id in mine:
        lease_until = rows[delivery_id].lease_until
        assert lease_until is not None
        assert lease_until > now + timedelta(minutes=30)
    for delivery_id in theirs:
        lease_until = rows[delivery_id].lease_until
        assert lease_until is not None
        assert lease_until < now + timedelta(seconds=10)
    # Only an expired lease can be taken over, and only by another worker: "them" may
    # still have its own in its queue, and "my" rows are renewed.
    later = now + timedelta(seconds=30)
    with sessions.begin() as session:
        again = claim_batch(
            session, edition_id=edition_id, owner="them", now=later, lease=LEASE, limit=10
        )
        retaken = claim_batch(
            session, edition_id=edition_id, owner="another", now=later, lease=LEASE, limit=10
        )
    assert again == []
    assert sorted(retaken) == sorted(theirs)
    with sessions.begin() as session:
        assert release_owned(session, "me") == 3
    rows = {d.id: d for d in deliveries(sessions).values()}
    for delivery_id in mine:
        assert rows[delivery_id].status == DeliveryStatus.PENDING
        assert rows[delivery_id].lease_owner is None


# --------------------------------------------------------------------------- identity


def test_verp_return_path_mailto_unsubscribe_and_dkim_signature(
    planned: Planned, tmp_path: Path
) -> None:
    sessions = planned.sessions
    key = _ed25519_key(tmp_path)
    secret = "v" * 40
    with FaultyServer() as server:
        settings = settings_for(
            planned.database_url,
            server,
            secret_key=secret,
            verp=True,
            return_path="bounces@example.org",
            unsubscribe_mailto="unsubscribe@example.org",
            dkim_domain=DOMAIN,
            dkim_selector=SELECTOR,
            dkim_key_file=str(key.path),
            dkim_algorithm="ed25519-sha256",
        )
        summary = deliver(sessions, settings=settings, edition=EDITION)
        messages = server.messages
    assert summary.sent == 5
    ids = {email: d.id for email, d in deliveries(sessions).items()}
    for captured in messages:
        (recipient,) = captured.rcpt_tos
        # Each delivery has its own return path, and it names that delivery.
        assert captured.mail_from.startswith("bounces+")
        assert captured.mail_from.endswith("@example.org")
        assert (
            parse_verp(captured.mail_from, return_path="bounces@example.org", secret=secret)
            == ids[recipient]
        )
        message = parse(captured.data)
        unsubscribe = str(message["List-Unsubscribe"])
        assert unsubscribe.startswith("<http")
        assert "<mailto:unsubscribe@example.org?subject=unsubscribe%20" in unsubscribe
        assert captured.data.startswith(b"DKIM-Signature: ")
        assert dkim.verify(captured.data, dnsfunc=dns_for(key))


def test_partial_dkim_settings_are_refused_before_anything_is_claimed(planned: Planned) -> None:
    from newsletter.errors import ConfigError

    with FaultyServer() as server:
        settings = settings_for(planned.database_url, server, dkim_domain=DOMAIN)
        with pytest.raises(ConfigError, match="dkim"):
            deliver(planned.sessions, settings=settings, edition=EDITION)
        assert server.messages == []
    assert {d.status for d in deliveries(planned.sessions).values()} == {DeliveryStatus.PENDING}


# --------------------------------------------------------------------------- subscribers


def test_subscriber_paused_after_planning_is_not_sent(planned: Planned) -> None:
    sessions = planned.sessions
    with sessions.begin() as session:
        session.execute(
            update(Subscriber)
            .where(Subscriber.email == "dave@example.org")
            .values(paused_at=utcnow())
        )
    with FaultyServer() as server:
        summary = deliver(
            sessions, settings=settings_for(planned.database_url, server), edition=EDITION
        )
        received = by_recipient(server)
    assert (summary.sent, summary.suppressed) == (4, 1)
    assert "dave@example.org" not in received
    assert deliveries(sessions)["dave@example.org"].status == DeliveryStatus.SUPPRESSED


# --------------------------------------------------------------------------- several workers


@pytest.fixture
def crowd(populated: SessionFactory, database_url: str) -> Planned:
    """Sixty more subscribers, planned: enough deliveries for several workers to share."""
    emails = []
    with populated.begin() as session:
        for i in range(60):
            email = f"reader{i:02d}@example.org"
            topics = ["cs.CL"] if i % 3 == 0 else ["cs.LG"] if i % 3 == 1 else ["cs.CV"]
            add_subscriber(session, email, f"Reader {i}", topics)
            emails.append(email)
    with populated.begin() as session:
        plan_edition(session, EDITION, options=PlanOptions())
    with populated() as session:
        count = session.scalar(select(func.count(Delivery.id)))
    assert count is not None
    assert count >= 60
    return Planned(populated, database_url, tuple(emails))


def test_several_worker_processes_send_each_issue_exactly_once(crowd: Planned) -> None:
    sessions = crowd.sessions
    with sessions() as session:
        expected = session.scalar(select(func.count(Delivery.id)))
    # Each message held 0.2 s at the relay: one worker alone would need ~6 s for them all,
    # far longer than its peers take to start. (With instant replies the first worker
    # started sent all 60+ on a loaded machine before the others began, once.)
    with FaultyServer(faults=Faults(data_delay=0.2)) as server:
        settings = settings_for(crowd.database_url, server, send_batch_size=5)
        summary = deliver(sessions, settings=settings, edition=EDITION, workers=3, concurrency=2)
        messages = server.messages
    ids = Counter(parse(m.data)["Message-ID"] for m in messages)
    assert summary.sent == expected == len(ids)
    assert set(ids.values()) == {1}
    rows = deliveries(sessions)
    assert {r.status for r in rows.values()} == {DeliveryStatus.SENT}
    assert {r.message_id for r in rows.values()} == set(ids)
    with sessions() as session:
        assert session.scalar(select(Edition.status)) == EditionStatus.SENT
    if "postgresql" in crowd.database_url:
        # Several processes really shared the work: more than one owner's sessions.
        assert server.sessions > 2


def test_deliver_without_an_edition_sends_every_due_delivery(planned: Planned) -> None:
    sessions = planned.sessions
    with sessions.begin() as session:
        other = Edition(date=EDITION + timedelta(days=1))
        session.add(other)
        session.flush()
        dave = select(Subscriber.id).where(Subscriber.email == "dave@example.org")
        session.execute(
            update(Delivery)
            .where(Delivery.subscriber_id.in_(dave.scalar_subquery()))
            .values(edition_id=other.id)
        )
    with FaultyServer() as server:
        summary = deliver(sessions, settings=settings_for(planned.database_url, server))
        received = by_recipient(server)
    assert summary.sent == 5
    assert sorted(received) == sorted(planned.emails)
    with sessions() as session:
        statuses: Any = set(session.scalars(select(Edition.status)))
    assert statuses == {EditionStatus.SENT}


def test_the_worker_runs_on_uvloop(planned: Planned, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")  # a dependency, except on Windows (asyncio's loop there)
    from newsletter.delivery import worker as worker_module

    loops: list[str] = []
    real_run = worker_module.Worker.run

    async def run(self: Any) -> Any:
        loops.append(type(asyncio.get_running_loop()).__module__)
        return await real_run(self)

    monkeypatch.setattr(worker_module.Worker, "run", run)
    with FaultyServer() as server:
        summary = deliver(
            planned.sessions, settings=settings_for(planned.database_url, server), edition=EDITION
        )
    assert summary.sent == len(planned.emails)
    assert loops == ["uvloop"]


# --------------------------------------------------------------------------- failures inside


def test_a_bug_while_sending_stops_the_worker_and_loses_nothing(
    planned: Planned, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.delivery import smtp as smtp_module

    real_send = smtp_module.SmtpPool.send

    async def buggy(self: Any, *, sender: str, recipients: Any, message: bytes, **kw: Any) -> Any:
        if recipients == ["carol@example.org"]:
            raise RuntimeError("bug in the sender")
        return await real_send(self, sender=sender, recipients=recipients, message=message, **kw)

    monkeypatch.setattr(smtp_module.SmtpPool, "send", buggy)
    sessions = planned.sessions
    with FaultyServer() as server:
        with pytest.raises(RuntimeError, match="bug in the sender"):
            deliver(sessions, settings=settings_for(planned.database_url, server), edition=EDITION)
        received = by_recipient(server)
    rows = deliveries(sessions)
    sent = {email for email, row in rows.items() if row.status == DeliveryStatus.SENT}
    assert sent == set(received)
    assert "carol@example.org" not in sent
    for email, row in rows.items():
        assert row.status in (DeliveryStatus.SENT, DeliveryStatus.PENDING), email
        assert row.lease_owner is None, email
    monkeypatch.setattr(smtp_module.SmtpPool, "send", real_send)
    with FaultyServer() as server:
        again = deliver(
            sessions, settings=settings_for(planned.database_url, server), edition=EDITION
        )
        resent = by_recipient(server)
    assert sorted(resent) == sorted(set(planned.emails) - sent)
    assert again.sent == len(planned.emails) - len(sent)


def test_a_database_blip_while_recording_is_retried(
    planned: Planned, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.delivery import worker as delivery_module

    monkeypatch.setattr(delivery_module, "_RECORD_RETRY_DELAYS", (0.01, 0.01))
    real_record = delivery_module.Worker._record
    failures = [0]

    def flaky(self: Any, outcomes: Any, released: Any) -> Any:
        if outcomes and failures[0] < 2:
            failures[0] += 1
            raise RuntimeError("database went away for a moment")
        return real_record(self, outcomes, released)

    monkeypatch.setattr(delivery_module.Worker, "_record", flaky)
    sessions = planned.sessions
    with FaultyServer() as server:
        first = deliver(sessions, settings=settings_for(planned.database_url, server))
        second = deliver(sessions, settings=settings_for(planned.database_url, server))
        ids = Counter(parse(m.data)["Message-ID"] for m in server.messages)
    assert failures[0] == 2
    # Nothing sent was forgotten (so nothing went out twice), and the rest followed.
    assert set(ids.values()) == {1}
    assert first.sent + second.sent == len(ids) == len(planned.emails)
    assert {r.status for r in deliveries(sessions).values()} == {DeliveryStatus.SENT}


def test_each_subscriber_gets_the_issue_in_their_language(planned: Planned) -> None:
    sessions = planned.sessions
    with sessions.begin() as session:
        session.execute(
            update(Subscriber).where(Subscriber.email == "dave@example.org").values(locale="de")
        )
    with FaultyServer() as server:
        deliver(sessions, settings=settings_for(planned.database_url, server), edition=EDITION)
        received = by_recipient(server)
    german = parse(received["dave@example.org"][0].data)
    english = parse(received["alice@example.org"][0].data)
    german_text = german.get_body(preferencelist=("plain",))
    english_text = english.get_body(preferencelist=("plain",))
    assert german_text is not None
    assert english_text is not None
    assert "Mehr davon" in german_text.get_content()
    assert "More like this" not in german_text.get_content()
    assert "More like this" in english_text.get_content()


def test_a_worker_process_that_fails_fails_the_run(crowd: Planned, tmp_path: Path) -> None:
    """A template that compiles but cannot be filled breaks every worker: the run must
    say so (not report success with nothing sent), and nothing may be left claimed."""
    from newsletter.delivery.run import DeliveryError
    from newsletter.errors import TemplateError
    from tests.test_delivery import broken_templates

    templates = broken_templates(
        tmp_path, "issue.txt", lambda text: text + "\n{{ no_such_variable }}\n"
    )
    with FaultyServer() as server:
        settings = settings_for(crowd.database_url, server, templates_dir=str(templates))
        expected: type[Exception] = (
            DeliveryError if "postgresql" in crowd.database_url else TemplateError
        )
        with pytest.raises(expected, match="no_such_variable"):
            deliver(crowd.sessions, settings=settings, edition=EDITION, workers=2)
        assert server.messages == []
    rows = deliveries(crowd.sessions)
    assert {r.status for r in rows.values()} == {DeliveryStatus.PENDING}
    assert all(r.lease_owner is None for r in rows.values())
