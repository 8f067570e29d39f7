from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from newsletter.db import SessionFactory
from newsletter.errors import InvalidAddress, UnknownTopic
from newsletter.mail.addresses import normalise_email
from newsletter.models import Frequency, Subscriber, SubscriberStatus, Suppression
from newsletter.papers.catalogue import load_catalogue
from newsletter.subscribers.roster import (
    WEEKDAYS,
    InvalidSubscriber,
    build_input,
    check_send_hour,
    check_weekday,
    import_csv,
    protect_cell,
    split_list,
    unprotect_cell,
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


def test_a_row_that_is_not_utf8_costs_only_itself(sessions: SessionFactory, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(
        b"email,name,topics\n"
        b"ada@example.org,Ada,cs.CL\n"
        b"bad@example.org,J\xfcrgen,cs.CL\n"  # Latin-1, not UTF-8
        b"grace@example.org,Grace,cs.CV\n"
    )
    with sessions.begin() as session:
        summary = import_csv(session, path, CATALOGUE)
    assert summary.created == 2
    [problem] = summary.problems
    assert problem.location == f"{path}:3"
    assert problem.reason.startswith("not UTF-8")
    with sessions() as session:
        stored = set(session.scalars(select(Subscriber.email)))
    assert stored == {"ada@example.org", "grace@example.org"}


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


# Issue 12: the import reads what the admin export writes (item 4), and numbers only in
# ASCII digits (item 7).


@pytest.mark.parametrize(
    "value",
    ["=1+2", "@SUM(A1)", "+49 30 1234", "-2", "\tx", "'", "''", "'=1+2", "'quoted'", "plain", ""],
)
def test_the_formula_mark_comes_off_exactly_as_it_went_on(value: str) -> None:
    cell = protect_cell(value)
    assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r")
    assert unprotect_cell(cell) == value


def test_a_quote_a_person_typed_is_not_taken_for_the_mark() -> None:
    assert unprotect_cell("'tis") == "'tis"
    assert unprotect_cell("'=1+2") == "=1+2"  # the export's mark
    assert unprotect_cell("''=1+2") == "'=1+2"  # a value that began with a quote


def test_import_csv_keeps_status_consent_and_pause_of_new_people(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "email,name,topics,keywords,status,paused,created_at,confirmed_at\n"
        "'-left@example.org,'=1+2,cs.CL,'@SUM(A1),unsubscribed,False,"
        "2025-01-02T03:04:05.678901+00:00,2025-01-03T00:00:00+00:00\n"
        "asleep@example.org,Ada,cs.CL,,active,True,2025-01-02T00:00:00,\n"
        "never@example.org,''quote,cs.CL,,pending,False,,\n"
        "plain@example.org,Plain,cs.CL,,,,,\n"
    )
    with sessions.begin() as session:
        summary = import_csv(session, path, CATALOGUE)
    assert (summary.created, summary.problems) == (4, [])
    with sessions() as session:
        people = {
            s.email: s
            for s in session.scalars(select(Subscriber).options(selectinload(Subscriber.interests)))
        }
    left = people["-left@example.org"]
    assert (left.name, left.status) == ("=1+2", SubscriberStatus.UNSUBSCRIBED)
    assert [i.keywords for i in left.interests if i.keywords] == ["@SUM(A1)"]
    assert left.created_at == datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert left.confirmed_at == datetime(2025, 1, 3, tzinfo=UTC)
    asleep = people["asleep@example.org"]
    assert (asleep.status, asleep.paused_at is not None) == (SubscriberStatus.ACTIVE, True)
    assert asleep.created_at == datetime(2025, 1, 2, tzinfo=UTC)  # no zone: UTC
    assert asleep.confirmed_at is not None  # active without a date: the operator vouches
    never = people["never@example.org"]
    assert (never.name, never.status, never.confirmed_at) == (
        "'quote",
        SubscriberStatus.PENDING,
        None,
    )
    plain = people["plain@example.org"]
    assert (plain.status, plain.paused_at) == (SubscriberStatus.ACTIVE, None)
    assert plain.confirmed_at is not None


def test_import_csv_never_changes_the_status_of_someone_stored(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    with sessions.begin() as session:
        for status in SubscriberStatus:
            data = build_input(CATALOGUE, email=f"{status.value}@example.org", topics=["cs.CL"])
            upsert_subscriber(session, data)
            stored = session.scalars(select(Subscriber).where(Subscriber.email == data.email))
            stored.one().status = status
    path = tmp_path / "back.csv"
    path.write_text(
        "email,topics,status,confirmed_at\n"
        + "".join(
            f"{status.value}@example.org,cs.RO,{flip},2020-01-01T00:00:00+00:00\n"
            for status, flip in zip(
                SubscriberStatus, ["active", "unsubscribed", "active", "active"], strict=True
            )
        )
    )
    with sessions.begin() as session:
        summary = import_csv(session, path, CATALOGUE)
    assert (summary.updated, summary.problems) == (4, [])
    with sessions() as session:
        statuses = dict(session.execute(select(Subscriber.email, Subscriber.status)).all())
    assert statuses == {f"{s.value}@example.org": s for s in SubscriberStatus}


@pytest.mark.parametrize(
    "raw", ["²", "٣", "３", "1_0", "+3", "-0", "3.0", pytest.param("9" * 5000, id="5000-9s"), True]
)
def test_numbers_are_ascii_digits_only(raw: str | bool) -> None:
    with pytest.raises(InvalidSubscriber, match="send_hour"):
        check_send_hour(raw)
    with pytest.raises(InvalidSubscriber, match="weekday"):
        check_weekday(raw)


def test_a_csv_with_other_scripts_digits_skips_the_row(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    path = tmp_path / "digits.csv"
    path.write_text(
        "email,topics,send_hour,weekday\n"
        "sup@example.org,cs.CL,²,\n"
        "arabic@example.org,cs.CL,7,٣\n"
        "ok@example.org,cs.CL,07,3\n"
    )
    with sessions.begin() as session:
        summary = import_csv(session, path, CATALOGUE)
    assert summary.created == 1
    assert [(p.location.rsplit(":", 1)[1], p.reason.split()[0]) for p in summary.problems] == [
        ("2", "send_hour"),
        ("3", "weekday"),
    ]
    with sessions() as session:
        ok = session.scalars(select(Subscriber)).one()
    assert (ok.email, ok.send_hour, ok.send_weekday) == ("ok@example.org", 7, 3)


def test_an_import_keeps_what_the_file_has_no_column_for(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    with sessions.begin() as session:
        upsert_subscriber(
            session,
            build_input(CATALOGUE, email="ada@example.org", topics=["cs.CL"], keywords=["rag"]),
        )
        ada = session.scalars(select(Subscriber)).one()
        ada.always_send = True
        for interest in ada.interests:
            interest.weight = 2.0
    path = tmp_path / "people.csv"
    path.write_text("email,topics,keywords\nada@example.org,cs.CL,rag\n")
    with sessions.begin() as session:
        summary = import_csv(session, path, CATALOGUE)
    assert (summary.updated, summary.unchanged) == (0, 1)
    with sessions() as session:
        ada = session.scalars(select(Subscriber)).one()
        assert ada.always_send is True
        assert [i.weight for i in ada.interests] == [2.0, 2.0]
