"""Schedule maths: when is a subscriber's next issue due, in UTC. Pure functions.

A subscriber's *slots* are their send hour, on the wall clock of their timezone,
every day (daily) or on one weekday (weekly). Two clock changes need a rule:

- a send hour that does not exist that day (spring forward: 02:00 in Berlin on the
  last Sunday of March) sends at the first valid minute after it (03:00 CEST);
- a send hour that exists twice (fall back: 01:00 in New York on the first Sunday of
  November) sends once, at its first occurrence.

The next issue is the first slot after the last one. When that slot is already in
the past (the service was down), the missed slots collapse into *one* catch-up
issue, due now (the latest missed slot is returned); the issue after it follows the
regular schedule again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

MONDAY = 0
# The longest clock change there is (Antarctica/Troll, 2 h) with room to spare.
_MAX_GAP_MINUTES = 180


class Cadence(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


@dataclass(frozen=True)
class Rule:
    """When one subscriber (or one group of subscribers alike) gets issues."""

    timezone: str
    send_hour: int
    frequency: Cadence | str = Cadence.DAILY
    weekday: int = MONDAY  # 0 = Monday … 6 = Sunday; weekly only

    def __post_init__(self) -> None:
        if not 0 <= self.send_hour <= 23:
            raise ValueError(f"send_hour must be 0..23, got {self.send_hour}")
        if not 0 <= self.weekday <= 6:
            raise ValueError(f"weekday must be 0..6, got {self.weekday}")
        if str(self.frequency) not in {c.value for c in Cadence}:
            raise ValueError(f"frequency must be daily or weekly, got {self.frequency!r}")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def weekly(self) -> bool:
        return str(self.frequency) == Cadence.WEEKLY


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass an aware datetime")
    return moment.astimezone(UTC)


def _exists(wall: datetime, zone: ZoneInfo) -> bool:
    """Whether the naive wall-clock time ``wall`` occurs in ``zone`` (not in a gap)."""
    there_and_back = wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)
    return there_and_back.replace(tzinfo=None) == wall


def local_slot(day: date, hour: int, zone: ZoneInfo) -> datetime:
    """The UTC instant of ``hour``:00 on ``day`` in ``zone``.

    In a gap, the first wall-clock minute after it that exists; in a fold, the
    first occurrence (``fold=0``).
    """
    wall = datetime.combine(day, time(hour))
    if not _exists(wall, zone):
        for minute in range(1, _MAX_GAP_MINUTES + 1):
            candidate = wall + timedelta(minutes=minute)
            if _exists(candidate, zone):
                wall = candidate
                break
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _slot_on(rule: Rule, day: date) -> datetime | None:
    if rule.weekly and day.weekday() != rule.weekday:
        return None
    return local_slot(day, rule.send_hour, rule.zone)


def slots_after(rule: Rule, moment: datetime) -> datetime:
    """The first slot strictly after ``moment`` (UTC)."""
    moment = _aware(moment)
    day = moment.astimezone(rule.zone).date() - timedelta(days=1)
    for offset in range(16):
        slot = _slot_on(rule, day + timedelta(days=offset))
        if slot is not None and slot > moment:
            return slot
    raise AssertionError("unreachable: every rule has a slot within a week")  # pragma: no cover


def latest_slot_at_or_before(rule: Rule, moment: datetime) -> datetime:
    """The last slot at or before ``moment`` (UTC)."""
    moment = _aware(moment)
    day = moment.astimezone(rule.zone).date() + timedelta(days=1)
    for offset in range(16):
        slot = _slot_on(rule, day - timedelta(days=offset))
        if slot is not None and slot <= moment:
            return slot
    raise AssertionError("unreachable: every rule has a slot within a week")  # pragma: no cover


def next_issue_at(rule: Rule, *, last_issue_at: datetime | None, now: datetime) -> datetime:
    """When the subscriber's next issue is due (UTC).

    The first slot after ``last_issue_at`` (their last issue, or, before the first
    one, when they subscribed). If that slot has already passed, every missed slot
    collapses into one catch-up issue: the latest slot at or before ``now`` is
    returned, which is due at once. Without ``last_issue_at`` it is the next slot
    after ``now``.
    """
    now = _aware(now)
    if last_issue_at is None:
        return slots_after(rule, now)
    following = slots_after(rule, last_issue_at)
    if following <= now:
        return latest_slot_at_or_before(rule, now)
    return following


def is_due(rule: Rule, *, last_issue_at: datetime, now: datetime, lookahead: timedelta) -> bool:
    """Whether an issue falls due by ``now + lookahead`` (so it should be planned now).

    Equivalent to ``next_issue_at(...) <= now + lookahead`` for a known last issue,
    but one slot computation, so the planner can test every subscriber of a group
    against one precomputed instant (see ``due_cutoff``).
    """
    return _aware(last_issue_at) < due_cutoff(rule, now=now, lookahead=lookahead)


def due_cutoff(rule: Rule, *, now: datetime, lookahead: timedelta) -> datetime:
    """The latest slot by ``now + lookahead``: a subscriber of ``rule`` whose last issue
    is before it has an issue due (there is a slot between their last issue and then)."""
    return latest_slot_at_or_before(rule, _aware(now) + lookahead)


def send_time(rule: Rule, *, now: datetime, lookahead: timedelta) -> datetime:
    """The ``next_attempt_at`` of an issue planned at ``now`` for ``rule``.

    The next slot if it comes within ``lookahead``, otherwise (a catch-up for a
    missed slot) the latest slot before now, which is due at once.
    """
    now = _aware(now)
    upcoming = slots_after(rule, now - timedelta(microseconds=1))
    if upcoming <= now + lookahead:
        return upcoming
    return latest_slot_at_or_before(rule, now)
