"""The newest edition and the planner's options, for the callers that plan it at a time
of their own (the scheduler's plan job, test sends).

Kept apart from ``newsletter.planning.editions`` so that asking which day is newest
loads neither the recommender nor APScheduler: the planner itself is imported only
when ``plan_options`` is called.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.models import Paper
from newsletter.settings import Settings

if TYPE_CHECKING:
    from newsletter.planning.editions import PlanOptions


def plan_options(settings: Settings) -> PlanOptions:
    """The planner's options from the settings (as ``newsletter plan`` uses them)."""
    from newsletter.planning.editions import PlanOptions

    return PlanOptions.from_settings(settings)


def latest_edition_day(session: Session, now: datetime) -> date | None:
    """The newest listing date there are papers for, up to today (UTC)."""
    return session.scalar(
        select(func.max(Paper.listed_on)).where(Paper.listed_on <= now.astimezone(UTC).date())
    )


def edition_available_at(session: Session, day: date) -> datetime | None:
    """When the edition's papers arrived (the first of them was ingested)."""
    return session.scalar(select(func.min(Paper.first_seen)).where(Paper.listed_on == day))
