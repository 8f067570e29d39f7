from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from newsletter.catalogue import load_catalogue
from newsletter.db import SessionFactory
from newsletter.errors import InvalidAddress, UnknownTopic
from newsletter.models import Frequency, Subscriber, SubscriberStatus, Suppression
from newsletter.subscribers import (
    WEEKDAYS,
    InvalidSubscriber,
    build_input,
    check_weekday,
    import_csv,
    normalise_email,
    split_list,
    upsert_subscriber,
    weekday_name,
)

CATALOGUE = load_catalogue()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Ada@Example.ORG ", "ada@example.org"),
        ("grace.hopper+news@example.com", "grace.hopper+news@example.com"),
    ],
)
def test_normalise_email(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize("raw", ["", "ada", "ada@", "@example.org", "a b@example.org", "a@b"])
def test_invalid_addresses_are_refused(raw: str) -> None:
    with pytest.raises(InvalidAddress, match="invalid address"):
        normalise_email(raw)


def test_split_list() -> None:
    assert split_list(" diffusion ;video  generation;; diffusion ") == (
        "diffusion",
        "video generation",
    )
    assert split_list(None) == ()


def test_build_input_validates_everything() -> None:
    data = build_input(
        CATALOGUE, email="X@Example.org", topics=["cs.cl", "cs.CL"], timezone="Europe/Berlin"
    )
    assert data.topics == ("cs.CL",)
    with pytest.raises(UnknownTopic, match=r"cs\.XX"):
        build_input(CATALOGUE, email="x@example.org", topics=["cs.XX"])
    with pytest.raises(InvalidSubscriber, match="timezone"):
        build_input(CATALOGUE, email="x@example.org", topics=["cs.CL"], timezone="Mars/Olympus")
    with pytest.raises(InvalidSubscriber, match="frequency"):
        build_input(CATALOGUE, email="x@example.org", topics=["cs.CL"], frequency="hourly")
    with pytest.raises(InvalidSubscriber, match="at least one topic"):
        build_input(CATALOGUE, email="x@example.org")


def test_add_then_update_then_unchanged(sessions: SessionFactory) -> None:
    first = build_input(CATALOGUE, email="ada@example.org", topics=["cs.CL"], keywords=["llm"])
    with sessions.begin() as session:
        assert upsert_subscriber(session, first) == "created"
    with sessions.begin() as session:
        assert upsert_subscriber(session, first) == "unchanged"
    second = build_input(CATALOGUE, email="ADA@example.org", topics=["cs.CV"], frequency="weekly")
    with sessions.begin() as session:
        assert upsert_subscriber(session, second) == "updated"
    with sessions() as session:
        subscriber = session.scalars(
            select(Subscriber).options(selectinload(Subscriber.interests))
        ).one()
        assert subscriber.status == SubscriberStatus.ACTIVE
        assert subscriber.frequency == Frequency.WEEKLY
        assert [(i.topic_id, i.keywords) for i in subscriber.interests] == [("cs.CV", None)]


def test_update_never_resubscribes(sessions: SessionFactory) -> None:
    data = build_input(CATALOGUE, email="gone@example.org", topics=["cs.CL"])
    with sessions.begin() as session:
        upsert_subscriber(session, data)
        session.scalars(select(Subscriber)).one().status = SubscriberStatus.UNSUBSCRIBED
    with sessions.begin() as session:
        upsert_subscriber(
            session, build_input(CATALOGUE, email="gone@example.org", topics=["cs.RO"])
        )
    with sessions() as session:
        assert session.scalars(select(Subscriber)).one().status == SubscriberStatus.UNSUBSCRIBED


def test_suppressed_address_cannot_be_added(sessions: SessionFactory) -> None:
    with sessions.begin() as session:
        session.add(Suppression(email="bounced@example.org", reason="550 no such user"))
    with sessions.begin() as session, pytest.raises(InvalidSubscriber, match="suppression"):
        upsert_subscriber(
            session, build_input(CATALOGUE, email="bounced@example.org", topics=["cs.CL"])
        )


CSV = """email,name,topics,keywords,timezone,frequency
ada@example.org,Ada Lovelace,cs.CL;cs.AI,large language models; reasoning,Europe/London,daily
not-an-address,Bad,cs.CL,,UTC,daily
grace@example.org,Grace,cs.XX,,UTC,daily
alan@example.org,Alan,cs.RO,,Nowhere/Land,daily
barbara@example.org,Barbara,,program repair,UTC,weekly
ADA@example.org,Duplicate,cs.CL,,UTC,daily
claude@example.org,Claude,cs.IT,,UTC,monthly
"""


def test_import_csv_reports_bad_rows_by_line_and_is_idempotent(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    path.write_text(CSV)
    with sessions.begin() as session:
        summary = import_csv(session, path, CATALOGUE)
    assert (summary.created, summary.updated, summary.unchanged) == (2, 0, 0)
    lines = {p.location.rsplit(":", 1)[1]: p.reason for p in summary.problems}
    assert set(lines) == {"3", "4", "5", "7", "8"}
    assert "invalid address" in lines["3"]
    assert "unknown topic" in lines["4"]
    assert "timezone" in lines["5"]
    assert "twice" in lines["7"]
    assert "frequency" in lines["8"]
    with sessions.begin() as session:
        again = import_csv(session, path, CATALOGUE)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    with sessions() as session:
        people = {s.email: s for s in session.scalars(select(Subscriber))}
    assert set(people) == {"ada@example.org", "barbara@example.org"}
    assert people["ada@example.org"].timezone == "Europe/London"
    assert people["barbara@example.org"].frequency == Frequency.WEEKLY


def test_import_without_email_column_is_refused(sessions: SessionFactory, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("name,topics\nAda,cs.CL\n")
    with sessions.begin() as session, pytest.raises(InvalidSubscriber, match="'email' column"):
        import_csv(session, path, CATALOGUE)


def test_unknown_columns_are_ignored_not_counted_as_skipped(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    path = tmp_path / "x.csv"
    path.write_text("Email,Topics,Company\nada@example.org,cs.CL,ACME\n")
    with sessions.begin() as session:
        summary = import_csv(session, path, CATALOGUE)
    assert summary.created == 1
    assert summary.problems == []
    assert summary.ignored_columns == ["company"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, 0),
        ("6", 6),
        (" 4 ", 4),
        ("monday", 0),
        ("Mon", 0),
        ("FRIDAY", 4),
        ("sun", 6),
        ("Thu", 3),
    ],
)
def test_check_weekday_reads_numbers_and_names(raw: str | int, expected: int) -> None:
    assert check_weekday(raw) == expected


@pytest.mark.parametrize("raw", ["7", "-1", "funday", "mo", "", "1.0", 9])
def test_check_weekday_refuses_anything_else(raw: str | int) -> None:
    with pytest.raises(InvalidSubscriber, match="weekday"):
        check_weekday(raw)


def test_weekday_names_round_trip() -> None:
    assert [check_weekday(weekday_name(n)) for n in range(7)] == list(range(7))
    assert weekday_name(4) == "friday" == WEEKDAYS[4]


def test_import_csv_reads_the_weekday_and_keeps_it_when_left_out(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    path = tmp_path / "weekly.csv"
    path.write_text(
        "email,topics,frequency,weekday\n"
        "fri@example.org,cs.CL,weekly,fri\n"
        "sun@example.org,cs.CL,weekly,6\n"
        "mon@example.org,cs.CL,weekly,\n"
        "bad@example.org,cs.CL,weekly,funday\n"
    )
    with sessions.begin() as session:
        summary = import_csv(session, path, CATALOGUE)
    assert (summary.created, summary.ignored_columns) == (3, [])
    assert [(p.location.rsplit(":", 1)[1], "weekday" in p.reason) for p in summary.problems] == [
        ("5", True)
    ]
    with sessions() as session:
        days = dict(session.execute(select(Subscriber.email, Subscriber.send_weekday)).all())
    assert days == {"fri@example.org": 4, "sun@example.org": 6, "mon@example.org": 0}
    # A file without the column (or with it blank) changes nobody's weekday.
    path.write_text("email,topics,frequency\nfri@example.org,cs.CL,weekly\n")
    with sessions.begin() as session:
        again = import_csv(session, path, CATALOGUE)
    assert (again.updated, again.unchanged) == (0, 1)
    path.write_text("email,topics,frequency,weekday\nfri@example.org,cs.CL,weekly,Tuesday\n")
    with sessions.begin() as session:
        changed = import_csv(session, path, CATALOGUE)
    assert changed.updated == 1
    with sessions() as session:
        fri = session.scalars(select(Subscriber).where(Subscriber.email == "fri@example.org")).one()
    assert fri.send_weekday == 1
