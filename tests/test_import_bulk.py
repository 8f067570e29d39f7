"""The batched import (issue 14.3) stores what the row-by-row import stored.

On both databases: a file of a few thousand rows with bad lines sprinkled in, loaded
in several batches, against what each row asks for; the same file again changes
nothing; a small file of every awkward case against the old row-by-row path; a batch
the database refuses is stored row by row, so only the refused rows are lost.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import selectinload

from newsletter.db import SessionFactory
from newsletter.models import Frequency, Interest, Subscriber, SubscriberStatus, Suppression
from newsletter.papers.catalogue import load_catalogue
from newsletter.subscribers.roster import ImportSummary, import_csv

CATALOGUE = load_catalogue()
TOPICS = sorted(CATALOGUE)
ZONES = ("UTC", "Europe/Berlin", "Asia/Tokyo")
OLD = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
HEADER = "email,name,topics,keywords,timezone,frequency,weekday,send_hour\n"


def snapshot(sessions: SessionFactory) -> list[tuple[Any, ...]]:
    """Every subscriber and interest as stored, in id order (times that an import sets
    to "now" as whether they are set, so two imports a moment apart compare equal)."""
    with sessions() as session:
        everyone = session.scalars(
            select(Subscriber).options(selectinload(Subscriber.interests)).order_by(Subscriber.id)
        )
        return [
            (
                s.email, s.name, s.status, s.timezone, s.frequency, s.send_weekday,
                s.send_hour, s.always_send,
                s.created_at if s.created_at < OLD.replace(year=2026) else "now",
                s.confirmed_at if s.confirmed_at is None or s.confirmed_at < OLD.replace(
                    year=2026) else "now",
                s.paused_at is not None,
                [(i.topic_id, i.keywords, i.weight) for i in s.interests],
            )
            for s in everyone
        ]  # fmt: skip


def exact(sessions: SessionFactory) -> list[tuple[Any, ...]]:
    """Every stored value of every subscriber and interest, ids and times included."""
    with sessions() as session:
        subscribers = session.execute(select(Subscriber.__table__).order_by(Subscriber.id)).all()
        interests = session.execute(select(Interest.__table__).order_by(Interest.id)).all()
    return [tuple(row) for row in subscribers] + [tuple(row) for row in interests]


def counts(summary: ImportSummary) -> tuple[int, int, int]:
    return (summary.created, summary.updated, summary.unchanged)


def lines(summary: ImportSummary) -> list[int]:
    return [int(problem.location.rsplit(":", 1)[1]) for problem in summary.problems]


# -------------------------------------------------------------------------- a large file

ROWS = 2000


def big_file(path: Path) -> tuple[dict[str, tuple[Any, ...]], dict[int, str]]:
    """A file of ``ROWS`` people; what each good row asks for, and the bad lines."""
    wanted: dict[str, tuple[Any, ...]] = {}
    bad: dict[int, str] = {}
    text = [HEADER]
    for i in range(ROWS):
        line = i + 2
        email = f"p{i}@d{i % 7}.example.org"
        topics = [TOPICS[i % len(TOPICS)], TOPICS[(i * 7 + 3) % len(TOPICS)]]
        keywords = ["graph learning"] if i % 3 == 0 else []
        weekly = i % 5 == 0
        hour = "" if i % 4 == 0 else str(i % 24)
        if i % 97 == 5:
            email, bad[line] = f"p{i}-at-nowhere", "invalid address"
        elif i % 89 == 7:
            topics, bad[line] = ["cs.XX"], "unknown topic"
        elif i % 83 == 11:
            hour, bad[line] = "24", "send_hour"
        elif i % 211 == 13 and f"p{i - 1}@d{(i - 1) % 7}.example.org" in wanted:
            email, bad[line] = f"P{i - 1}@D{(i - 1) % 7}.example.org", "twice"
        elif i % 401 == 17:
            bad[line] = "suppression"  # suppressed before the import
        text.append(
            f"{email},Person {i},{';'.join(topics)},{';'.join(keywords)},{ZONES[i % 3]},"
            f"{'weekly' if weekly else 'daily'},{'fri' if weekly else ''},{hour}\n"
        )
        if line not in bad:
            wanted[email] = (
                f"Person {i}", ZONES[i % 3], Frequency.WEEKLY if weekly else Frequency.DAILY,
                4 if weekly else 0, 7 if hour == "" else int(hour),
                [(t, None, 1.0) for t in dict.fromkeys(topics)]
                + [(None, k, 1.0) for k in keywords],
            )  # fmt: skip
    path.write_text("".join(text))
    return wanted, bad


def test_a_large_file_loads_in_batches_as_each_row_asks(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    wanted, bad = big_file(path)
    suppressed = [f"p{i}@d{i % 7}.example.org" for i in range(ROWS) if i + 2 in bad and
                  bad[i + 2] == "suppression"]  # fmt: skip
    # Stored before: one who left (stays so), one with weights and always-send of their own.
    left, weighted = "p1@d1.example.org", "p2@d2.example.org"
    with sessions.begin() as session:
        session.add_all(Suppression(email=e, reason="550 no such user") for e in suppressed)
        session.add(
            Subscriber(
                email=left,
                name="Left",
                status=SubscriberStatus.UNSUBSCRIBED,
                created_at=OLD,
                interests=[Interest(topic_id="cs.CL")],
            )
        )
        topic = wanted[weighted][5][0][0]
        session.add(Subscriber(email=weighted, name="Person 2", status=SubscriberStatus.ACTIVE,
                               timezone=ZONES[2], always_send=True, created_at=OLD,
                               confirmed_at=OLD, send_hour=wanted[weighted][4],
                               interests=[Interest(topic_id=topic, weight=2.5)]))  # fmt: skip

    with sessions.begin() as session:
        summary = import_csv(session, path, CATALOGUE, batch_size=600)

    assert counts(summary) == (len(wanted) - 2, 2, 0)
    assert lines(summary) == sorted(bad)
    for problem in summary.problems:
        assert bad[int(problem.location.rsplit(":", 1)[1])] in problem.reason
    with sessions() as session:
        stored = {
            s.email: s
            for s in session.scalars(select(Subscriber).options(selectinload(Subscriber.interests)))
        }
        assert set(stored) == set(wanted)
        for email, (name, zone, frequency, weekday, hour, interests) in wanted.items():
            s = stored[email]
            got = (s.name, s.timezone, s.frequency, s.send_weekday, s.send_hour)
            assert got == (name, zone, frequency, weekday, hour), email
            weights = {(t, k): w for t, k, w in interests}
            if email == weighted:  # a kept interest keeps its weight
                weights[(interests[0][0], None)] = 2.5
            assert [(i.topic_id, i.keywords, i.weight) for i in s.interests] == [
                (t, k, weights[(t, k)]) for t, k, _ in interests
            ], email
        assert stored[left].status == SubscriberStatus.UNSUBSCRIBED
        assert stored[left].confirmed_at is None
        assert stored[weighted].always_send is True
        assert stored[weighted].created_at == OLD
        new = [s for e, s in stored.items() if e not in (left, weighted)]
        assert {(s.status, s.confirmed_at is not None, s.paused_at) for s in new} == {
            (SubscriberStatus.ACTIVE, True, None)
        }
        # Ids follow the file, as one row after another gave them.
        order = [s.email for s in sorted(new, key=lambda s: s.id)]
        assert order == [e for e in wanted if e not in (left, weighted)]
    before = exact(sessions)

    with sessions.begin() as session:
        again = import_csv(session, path, CATALOGUE, batch_size=600)
    assert counts(again) == (0, 0, len(wanted))
    assert lines(again) == sorted(bad)
    assert exact(sessions) == before


# -------------------------------------------------------------------------- every awkward case

AWKWARD = (
    "email,name,topics,keywords,timezone,frequency,weekday,send_hour,status,paused,"
    "created_at,confirmed_at\n"
    "new@example.org,New,cs.CL,,UTC,daily,,,,,,\n"
    "same@example.org,Same,cs.CL,rag,UTC,daily,,,,,,\n"
    "renamed@example.org,New Name,cs.CL,,UTC,daily,,,,,,\n"
    "left@example.org,Left,cs.RO,,UTC,daily,,,active,,,2020-01-01T00:00:00+00:00\n"
    "blocked@example.org,Blocked,cs.CL,,UTC,daily,,,,,,\n"
    "NEW@example.org,Again,cs.CL,,UTC,daily,,,,,,\n"
    "weights@example.org,Weights,cs.CL;cs.LG,rag,UTC,daily,,,,,,\n"
    "reorder@example.org,Reorder,cs.LG;cs.CL,,UTC,daily,,,,,,\n"
    "schedule@example.org,Schedule,cs.CL,,Asia/Tokyo,weekly,sun,22,,,,\n"
    "keep@example.org,Keep,cs.CL,,UTC,daily,,,,,,\n"
    "export@example.org,'=1+2,cs.CL,'@SUM(A1),UTC,daily,,,pending,True,"
    "2025-01-02T03:04:05+00:00,\n"
    "gone@example.org,Gone,cs.CL,,UTC,daily,,,bounced,False,,2025-02-01T00:00:00\n"
    "bad-address,Bad,cs.CL,,UTC,daily,,,,,,\n"
    "same@example.org,Twice,cs.CL,,UTC,daily,,,,,,\n"
    "blocked@example.org,Blocked again,cs.CL,,UTC,daily,,,,,,\n"
    "last@example.org,Last,,deep learning,UTC,daily,,,,,,\n"
)


def stored_before(sessions: SessionFactory) -> None:
    with sessions.begin() as session:
        session.add(Suppression(email="blocked@example.org", reason="complaint"))
        for email, name, status, interests, extra in (
            ("same@example.org", "Same", SubscriberStatus.ACTIVE,
             [("cs.CL", None, 1.0), (None, "rag", 1.0)], {}),
            ("renamed@example.org", "Old Name", SubscriberStatus.ACTIVE,
             [("cs.CL", None, 1.0)], {}),
            ("left@example.org", "Left", SubscriberStatus.UNSUBSCRIBED,
             [("cs.CL", None, 1.0)], {}),
            ("weights@example.org", "Weights", SubscriberStatus.ACTIVE,
             [("cs.CL", None, 3.0), (None, "rag", 0.5)], {}),
            ("reorder@example.org", "Reorder", SubscriberStatus.ACTIVE,
             [("cs.CL", None, 1.0), ("cs.LG", None, 1.0)], {}),
            ("schedule@example.org", "Schedule", SubscriberStatus.PENDING,
             [("cs.CL", None, 1.0)], {"send_hour": 5}),
            ("keep@example.org", "Keep", SubscriberStatus.ACTIVE,
             [("cs.CL", None, 1.0)], {"always_send": True, "send_weekday": 3, "send_hour": 9}),
        ):  # fmt: skip
            session.add(
                Subscriber(
                    email=email, name=name, status=status, created_at=OLD,
                    confirmed_at=OLD if status == SubscriberStatus.ACTIVE else None,
                    interests=[Interest(topic_id=t, keywords=k, weight=w) for t, k, w in interests],
                    **extra,
                )
            )  # fmt: skip


def empty(sessions: SessionFactory) -> None:
    with sessions.begin() as session:
        session.execute(delete(Interest))
        session.execute(delete(Subscriber))
        session.execute(delete(Suppression))


@pytest.mark.parametrize("batch_size", [1, 4, 100])
def test_every_awkward_case_ends_as_the_row_by_row_import_left_it(
    sessions: SessionFactory, tmp_path: Path, batch_size: int
) -> None:
    path = tmp_path / "awkward.csv"
    path.write_text(AWKWARD)
    stored_before(sessions)
    with sessions.begin() as session:
        old = import_csv(session, path, CATALOGUE, row_by_row=True)
    old_state = snapshot(sessions)
    empty(sessions)
    stored_before(sessions)
    with sessions.begin() as session:
        new = import_csv(session, path, CATALOGUE, batch_size=batch_size)

    assert snapshot(sessions) == old_state
    assert replace(new, problems=[]) == replace(old, problems=[])
    assert new.problems == old.problems
    # What the old path did, spelled out: the test is about the right thing.
    assert counts(new) == (4, 4, 3)
    assert [(line, reason.split()[0]) for line, reason in
            zip(lines(new), (p.reason for p in new.problems), strict=True)] == [
        (6, "blocked@example.org"), (7, "new@example.org"), (14, "invalid"),
        (15, "same@example.org"), (16, "blocked@example.org"),
    ]  # fmt: skip
    assert "suppression list" in new.problems[0].reason
    assert [("twice" in p.reason) for p in new.problems] == [False, True, False, True, True]
    state = {row[0]: row for row in old_state}
    assert state["left@example.org"][2] == SubscriberStatus.UNSUBSCRIBED
    assert state["weights@example.org"][-1] == [("cs.CL", None, 3.0), ("cs.LG", None, 1.0),
                                                (None, "rag", 0.5)]  # fmt: skip
    assert state["keep@example.org"][5:8] == (3, 9, True)
    assert state["schedule@example.org"][2:8] == (
        SubscriberStatus.PENDING, "Asia/Tokyo", Frequency.WEEKLY, 6, 22, False
    )  # fmt: skip
    assert state["export@example.org"][1:3] == ("=1+2", SubscriberStatus.PENDING)
    assert state["export@example.org"][8:11] == (datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
                                                 None, True)  # fmt: skip


# -------------------------------------------------------------------------- a refused batch


def test_a_batch_the_database_refuses_costs_only_its_refused_rows(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    # A catalogue topic the database does not hold yet: its interest row breaks the
    # foreign key, which only the database can tell.
    catalogue = {**CATALOGUE, "cs.NEW": replace(CATALOGUE["cs.CL"], id="cs.NEW")}
    path = tmp_path / "people.csv"
    path.write_text(
        "email,topics\n"
        + "".join(f"p{i}@example.org,{'cs.NEW' if i in (3, 9) else 'cs.CL'}\n" for i in range(12))
    )
    with sessions.begin() as session:
        summary = import_csv(session, path, catalogue, batch_size=5)
    assert counts(summary) == (10, 0, 0)
    assert lines(summary) == [5, 11]
    assert all("the database refused this row" in p.reason for p in summary.problems)
    with sessions() as session:
        emails = list(session.scalars(select(Subscriber.email).order_by(Subscriber.id)))
        interests = session.scalars(select(Interest.topic_id)).all()
    assert emails == [f"p{i}@example.org" for i in range(12) if i not in (3, 9)]
    assert set(interests) == {"cs.CL"}
    assert len(interests) == 10


# -------------------------------------------------------------------------- a race


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_address_stored_meanwhile_is_updated_not_lost(
    engine: Engine, sessions: SessionFactory, tmp_path: Path
) -> None:
    """Someone signs up with an address of the file between the batch's look and its
    insert (PostgreSQL; SQLite has one writer): the row is stored the slow way."""
    path = tmp_path / "people.csv"
    path.write_text(
        "email,name,topics\nrace@example.org,Imported,cs.CL\nother@example.org,,cs.CL\n"
    )
    signed_up: list[bool] = []

    def sign_up_first(*args: Any) -> None:
        if args[2].startswith("INSERT INTO subscribers") and not signed_up:
            signed_up.append(True)
            with sessions.begin() as other:  # another connection, committed at once
                other.add(
                    Subscriber(
                        email="race@example.org",
                        name="Web",
                        status=SubscriberStatus.PENDING,
                        interests=[Interest(topic_id="cs.RO")],
                    )
                )

    event.listen(engine, "before_cursor_execute", sign_up_first)
    try:
        with sessions.begin() as session:
            summary = import_csv(session, path, CATALOGUE)
    finally:
        event.remove(engine, "before_cursor_execute", sign_up_first)
    assert signed_up == [True]
    assert (counts(summary), summary.problems) == ((1, 1, 0), [])
    state = {row[0]: row for row in snapshot(sessions)}
    # Their choices from the file; their status (a sign-up not yet confirmed) their own.
    assert state["race@example.org"][1:3] == ("Imported", SubscriberStatus.PENDING)
    assert state["race@example.org"][-1] == [("cs.CL", None, 1.0)]
    assert state["other@example.org"][2] == SubscriberStatus.ACTIVE


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_import_locks_only_the_rows_it_changes(sessions: SessionFactory, tmp_path: Path) -> None:
    """Row locks are PostgreSQL's (SQLite locks the file). A re-import runs in one
    transaction: the subscribers it leaves as they are may unsubscribe meanwhile."""
    path = tmp_path / "people.csv"
    path.write_text("email,name,topics\nsame@example.org,Same,cs.CL\nnew@example.org,Old,cs.CL\n")
    with sessions.begin() as session:
        import_csv(session, path, CATALOGUE)
    path.write_text("email,name,topics\nsame@example.org,Same,cs.CL\nnew@example.org,New,cs.CL\n")

    def lockable(email: str) -> bool:
        with sessions() as other:  # another connection
            try:
                other.execute(
                    select(Subscriber.id)
                    .where(Subscriber.email == email)
                    .with_for_update(nowait=True)
                )
            except OperationalError:
                return False
            return True

    with sessions.begin() as session:
        summary = import_csv(session, path, CATALOGUE)
        assert counts(summary) == (0, 1, 1)
        assert lockable("same@example.org")
        assert not lockable("new@example.org")
    assert lockable("new@example.org")
