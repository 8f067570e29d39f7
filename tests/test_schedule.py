"""The schedule maths: send slots across DST changes, weekly issues, catch-up after downtime."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from newsletter.scheduler.slots import (
    Rule,
    due_cutoff,
    is_due,
    latest_slot_at_or_before,
    local_slot,
    next_issue_at,
    send_time,
    slots_after,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# (timezone, day, send hour, expected UTC instant, what happens that day)
SLOTS = [
    ("Europe/Berlin", date(2026, 3, 28), 7, utc(2026, 3, 28, 6), "CET, day before"),
    ("Europe/Berlin", date(2026, 3, 29), 7, utc(2026, 3, 29, 5), "CEST from 03:00"),
    ("Europe/Berlin", date(2026, 3, 29), 2, utc(2026, 3, 29, 1), "02:00 missing: 03:00 CEST"),
    ("Europe/Berlin", date(2026, 3, 29), 1, utc(2026, 3, 29, 0), "before the gap"),
    ("Europe/Berlin", date(2026, 3, 29), 3, utc(2026, 3, 29, 1), "first hour after the gap"),
    ("Europe/Berlin", date(2026, 10, 25), 2, utc(2026, 10, 25, 0), "02:00 twice: first (CEST)"),
    ("Europe/Berlin", date(2026, 10, 25), 7, utc(2026, 10, 25, 6), "CET again"),
    ("America/New_York", date(2026, 3, 8), 2, utc(2026, 3, 8, 7), "02:00 missing: 03:00 EDT"),
    ("America/New_York", date(2026, 3, 8), 7, utc(2026, 3, 8, 11), "EDT"),
    ("America/New_York", date(2026, 3, 7), 7, utc(2026, 3, 7, 12), "EST, day before"),
    ("America/New_York", date(2026, 11, 1), 1, utc(2026, 11, 1, 5), "01:00 twice: first (EDT)"),
    ("America/New_York", date(2026, 11, 1), 7, utc(2026, 11, 1, 12), "EST again"),
    ("Australia/Sydney", date(2026, 4, 5), 2, utc(2026, 4, 4, 15), "02:00 twice: first (AEDT)"),
    ("Australia/Sydney", date(2026, 4, 5), 7, utc(2026, 4, 4, 21), "AEST"),
    ("Australia/Sydney", date(2026, 10, 4), 2, utc(2026, 10, 3, 16), "02:00 missing: 03:00"),
    ("Australia/Sydney", date(2026, 10, 4), 7, utc(2026, 10, 3, 20), "AEDT"),
    ("Asia/Kolkata", date(2026, 3, 29), 7, utc(2026, 3, 29, 1, 30), "no DST, +05:30"),
    ("Asia/Kolkata", date(2026, 1, 1), 0, utc(2025, 12, 31, 18, 30), "midnight: the day before"),
]


@pytest.mark.parametrize(("zone", "day", "hour", "expected", "case"), SLOTS)
def test_local_slot(zone: str, day: date, hour: int, expected: datetime, case: str) -> None:
    assert local_slot(day, hour, ZoneInfo(zone)) == expected, case


@pytest.mark.parametrize(
    ("zone", "hour"),
    [
        ("Europe/Berlin", 2),
        ("Europe/Berlin", 7),
        ("America/New_York", 1),
        ("America/New_York", 2),
        ("Australia/Sydney", 2),
        ("Australia/Sydney", 23),
        ("Asia/Kolkata", 7),
    ],
)
def test_a_year_of_daily_issues_is_one_per_local_day_at_the_send_hour(zone: str, hour: int) -> None:
    """Sending each issue as it falls due: one a day, on every local day, at the hour
    (or, on the one day that hour does not exist, the first minute after it)."""
    rule = Rule(zone, hour)
    tz = ZoneInfo(zone)
    last = local_slot(date(2025, 12, 31), hour, tz) + timedelta(seconds=5)
    days = []
    for _ in range(365):
        due = next_issue_at(rule, last_issue_at=last, now=last)
        assert due > last
        local = due.astimezone(tz)
        if local.hour != hour:  # only in a gap: the first valid minute after it
            assert (local.hour, local.minute) == (hour + 1, 0), local
        days.append(local.date())
        last = due + timedelta(seconds=30)  # sent half a minute late
    assert days == [date(2026, 1, 1) + timedelta(days=i) for i in range(365)]


@pytest.mark.parametrize(
    ("zone", "hour", "weekday", "last", "now", "expected"),
    [
        # Monday 09:00 New York, across the end of DST (EDT → EST on 1 November).
        (
            "America/New_York",
            9,
            0,
            utc(2026, 10, 26, 13, 0, 30),
            utc(2026, 10, 28),
            utc(2026, 11, 2, 14),
        ),
        ("America/New_York", 9, 0, utc(2026, 11, 2, 14, 1), utc(2026, 11, 4), utc(2026, 11, 9, 14)),
        # Friday 18:00 Berlin, across the start of DST.
        ("Europe/Berlin", 18, 4, utc(2026, 3, 27, 17, 1), utc(2026, 3, 28), utc(2026, 4, 3, 16)),
        # Sunday 02:00 Sydney on the day it does not exist.
        ("Australia/Sydney", 2, 6, utc(2026, 9, 26, 16, 1), utc(2026, 9, 30), utc(2026, 10, 3, 16)),
        # Wednesday 07:00 Kolkata.
        ("Asia/Kolkata", 7, 2, utc(2026, 6, 3, 1, 31), utc(2026, 6, 5), utc(2026, 6, 10, 1, 30)),
    ],
)
def test_weekly_issue_on_its_weekday(
    zone: str, hour: int, weekday: int, last: datetime, now: datetime, expected: datetime
) -> None:
    rule = Rule(zone, hour, "weekly", weekday)
    due = next_issue_at(rule, last_issue_at=last, now=now)
    assert due == expected
    assert due.astimezone(ZoneInfo(zone)).weekday() == weekday


@pytest.mark.parametrize(
    ("rule", "last", "now", "catch_up"),
    [
        # Down for five days: one issue, for the latest missed slot, due at once.
        (
            Rule("Europe/Berlin", 7),
            utc(2026, 3, 20, 6, 0, 10),
            utc(2026, 3, 25, 12),
            utc(2026, 3, 25, 6),
        ),
        # Down across a DST change.
        (
            Rule("America/New_York", 7),
            utc(2026, 3, 5, 12, 1),
            utc(2026, 3, 10, 9),
            utc(2026, 3, 9, 11),
        ),
        # Weekly, down for three weeks: one issue.
        (
            Rule("Australia/Sydney", 8, "weekly", 0),
            utc(2026, 9, 6, 22, 1),
            utc(2026, 9, 30),
            utc(2026, 9, 27, 22),
        ),
        (
            Rule("Asia/Kolkata", 6),
            utc(2026, 1, 1, 0, 31),
            utc(2026, 1, 9, 0, 29),
            utc(2026, 1, 8, 0, 30),
        ),
    ],
)
def test_after_downtime_one_catch_up_issue_then_the_regular_schedule(
    rule: Rule, last: datetime, now: datetime, catch_up: datetime
) -> None:
    due = next_issue_at(rule, last_issue_at=last, now=now)
    assert due == catch_up
    assert due <= now  # due at once
    sent = now + timedelta(seconds=20)
    following = next_issue_at(rule, last_issue_at=sent, now=sent)
    assert following > sent  # not a second catch-up for another missed day
    assert following == slots_after(rule, sent)


def test_without_a_last_issue_the_next_slot_is_after_now() -> None:
    rule = Rule("Europe/Berlin", 7)
    assert next_issue_at(rule, last_issue_at=None, now=utc(2026, 3, 29, 4)) == utc(2026, 3, 29, 5)
    assert next_issue_at(rule, last_issue_at=None, now=utc(2026, 3, 29, 5)) == utc(2026, 3, 30, 5)


def test_latest_slot_at_or_before_includes_the_instant_itself() -> None:
    rule = Rule("America/New_York", 7)
    assert latest_slot_at_or_before(rule, utc(2026, 3, 8, 11)) == utc(2026, 3, 8, 11)
    assert latest_slot_at_or_before(rule, utc(2026, 3, 8, 10, 59)) == utc(2026, 3, 7, 12)


@pytest.mark.parametrize(
    ("last", "now", "due"),
    [
        (utc(2026, 3, 28, 6, 0, 5), utc(2026, 3, 29, 4, 15), False),  # 05:00 is after 04:45
        (utc(2026, 3, 28, 6, 0, 5), utc(2026, 3, 29, 4, 30), True),  # 05:00 within 30 min
        (utc(2026, 3, 29, 5, 0, 5), utc(2026, 3, 29, 5, 15), False),  # just sent
        (utc(2026, 3, 20, 6), utc(2026, 3, 29, 0), True),  # overdue: catch-up
    ],
)
def test_is_due_within_the_lookahead(last: datetime, now: datetime, due: bool) -> None:
    rule = Rule("Europe/Berlin", 7)
    lookahead = timedelta(minutes=30)
    assert is_due(rule, last_issue_at=last, now=now, lookahead=lookahead) is due
    assert (next_issue_at(rule, last_issue_at=last, now=now) <= now + lookahead) is due


def test_due_cutoff_is_the_latest_slot_by_the_end_of_the_lookahead() -> None:
    rule = Rule("Asia/Kolkata", 7)
    assert due_cutoff(rule, now=utc(2026, 6, 1, 1), lookahead=timedelta(minutes=30)) == utc(
        2026, 6, 1, 1, 30
    )
    assert due_cutoff(rule, now=utc(2026, 6, 1, 0, 59), lookahead=timedelta(minutes=30)) == utc(
        2026, 5, 31, 1, 30
    )


@pytest.mark.parametrize(
    ("rule", "now", "expected"),
    [
        # The slot is coming within the lookahead: send then.
        (Rule("Europe/Berlin", 7), utc(2026, 3, 29, 4, 40), utc(2026, 3, 29, 5)),
        (Rule("Europe/Berlin", 7), utc(2026, 3, 29, 5), utc(2026, 3, 29, 5)),
        # A catch-up planned long after the slot: due at once (the missed slot).
        (Rule("Europe/Berlin", 7), utc(2026, 3, 29, 14), utc(2026, 3, 29, 5)),
        (Rule("America/New_York", 2), utc(2026, 3, 8, 6, 45), utc(2026, 3, 8, 7)),
        (Rule("Australia/Sydney", 9, "weekly", 0), utc(2026, 10, 5, 0), utc(2026, 10, 4, 22)),
    ],
)
def test_send_time_of_a_planned_issue(rule: Rule, now: datetime, expected: datetime) -> None:
    assert send_time(rule, now=now, lookahead=timedelta(minutes=30)) == expected


@pytest.mark.parametrize(
    "make",
    [
        lambda: Rule("UTC", 24),
        lambda: Rule("UTC", -1),
        lambda: Rule("UTC", 7, "weekly", 7),
        lambda: Rule("UTC", 7, "monthly"),
    ],
)
def test_invalid_rules_are_refused(make: object) -> None:
    with pytest.raises(ValueError, match="must be"):
        make()  # type: ignore[operator]


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        next_issue_at(Rule("UTC", 7), last_issue_at=None, now=datetime(2026, 1, 1))


# --------------------------------------------------------------------------- weekly, every day


ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata"]
WEEKDAYS = range(7)


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("weekday", WEEKDAYS)
@pytest.mark.parametrize("hour", [2, 9])
def test_a_year_of_weekly_issues_is_one_a_week_on_the_weekday(
    zone: str, weekday: int, hour: int
) -> None:
    """Through both clock changes of each zone (and 02:00, which some Sundays lack
    or have twice): every issue on the local weekday at the hour (or the first minute
    after a gap), one a week, none skipped, none doubled."""
    rule = Rule(zone, hour, "weekly", weekday)
    tz = ZoneInfo(zone)
    start = date(2025, 12, 29) + timedelta(days=weekday)  # that weekday, the week of 1 Jan
    previous = local_slot(start, hour, tz)
    last = previous + timedelta(seconds=5)
    days = []
    for _ in range(53):
        due = next_issue_at(rule, last_issue_at=last, now=last)
        local = due.astimezone(tz)
        assert local.weekday() == weekday, local
        if local.hour != hour:
            assert (local.hour, local.minute) == (hour + 1, 0), local
        # A week apart in local days; in UTC, a week give or take the clock change.
        assert abs(due - previous - timedelta(days=7)) <= timedelta(hours=1)
        days.append(local.date())
        previous, last = due, due + timedelta(seconds=30)
    assert days == [start + timedelta(weeks=n) for n in range(1, 54)]


LOOKAHEAD = timedelta(minutes=30)

# The Sunday of each clock change, a weekly issue that Sunday at 02:00 local time.
DST_SUNDAYS = [
    # Berlin, spring: 02:00 does not exist, 03:00 CEST is 01:00 UTC.
    ("Europe/Berlin", utc(2026, 3, 22, 1, 0, 30), utc(2026, 3, 29, 1)),
    # Berlin, autumn: 02:00 happens twice; the first (CEST) is 00:00 UTC.
    ("Europe/Berlin", utc(2026, 10, 18, 0, 0, 30), utc(2026, 10, 25, 0)),
    # New York, spring: 03:00 EDT is 07:00 UTC.
    ("America/New_York", utc(2026, 3, 1, 7, 0, 30), utc(2026, 3, 8, 7)),
    # New York, autumn: 01:00 EDT is 05:00 UTC, so 02:00 EST is 07:00 UTC (no fold at 02:00).
    ("America/New_York", utc(2026, 10, 25, 6, 0, 30), utc(2026, 11, 1, 7)),
    # Sydney, autumn (April): 02:00 twice, the first (AEDT) is 15:00 UTC the day before.
    ("Australia/Sydney", utc(2026, 3, 28, 15, 0, 30), utc(2026, 4, 4, 15)),
    # Sydney, spring (October): 02:00 missing, 03:00 AEDT is 16:00 UTC the day before.
    ("Australia/Sydney", utc(2026, 9, 26, 16, 0, 30), utc(2026, 10, 3, 16)),
    # Kolkata has no clock change: 02:00 IST is 20:30 UTC the day before, every week.
    ("Asia/Kolkata", utc(2026, 3, 21, 20, 30, 30), utc(2026, 3, 28, 20, 30)),
]


@pytest.mark.parametrize(("zone", "last", "expected"), DST_SUNDAYS)
def test_weekly_sunday_issue_on_the_day_of_a_clock_change(
    zone: str, last: datetime, expected: datetime
) -> None:
    rule = Rule(zone, 2, "weekly", 6)
    assert next_issue_at(rule, last_issue_at=last, now=last) == expected
    # Planned 20 minutes before, it gets exactly that send time.
    assert send_time(rule, now=expected - timedelta(minutes=20), lookahead=LOOKAHEAD) == expected


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("weekday", WEEKDAYS)
def test_weekly_catch_up_after_weeks_of_downtime_is_one_issue(zone: str, weekday: int) -> None:
    """Down from early March to mid April (across every spring/autumn change of these
    zones): one catch-up issue for the latest missed slot, then the weekday again."""
    rule = Rule(zone, 9, "weekly", weekday)
    tz = ZoneInfo(zone)
    last = slots_after(rule, utc(2026, 3, 1)) + timedelta(seconds=10)
    now = utc(2026, 4, 15, 12)
    due = next_issue_at(rule, last_issue_at=last, now=now)
    assert due <= now
    assert due == latest_slot_at_or_before(rule, now)
    assert now - due < timedelta(days=7)  # the latest missed slot, not the first
    assert due.astimezone(tz).weekday() == weekday
    # The planner agrees: it is due, and its send time is that slot (at once).
    assert is_due(rule, last_issue_at=last, now=now, lookahead=LOOKAHEAD)
    assert send_time(rule, now=now, lookahead=LOOKAHEAD) == due
    # Sent now: the next one is the regular slot, not another catch-up.
    sent = now + timedelta(seconds=20)
    following = next_issue_at(rule, last_issue_at=sent, now=sent)
    assert following > sent
    assert following.astimezone(tz).weekday() == weekday
    assert abs(following - due - timedelta(days=7)) <= timedelta(hours=1)
    assert not is_due(rule, last_issue_at=sent, now=sent, lookahead=LOOKAHEAD)
