"""Readers' own libraries: imports being resolved, the seeds they give, and the
authors readers follow."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from newsletter.models.base import (
    Base,
    utcnow,
)


class LibraryImport(Base):
    """A reader's library file or pasted list, being turned into seeds (migration 0014).

    Parsed when it arrives; what needs the arXiv API waits in ``entries`` for the
    seeding job (the scheduler, ``newsletter subscribers seed-pending``), which retries
    after ``next_attempt_at`` while the API is down. ``report`` says, per line or entry,
    what was imported and what was not, and why: the preferences page shows it.
    """

    __tablename__ = "library_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    source: Mapped[str] = mapped_column(String(200))  # the file's name, or "pasted list"
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # or done
    entries: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # still to resolve
    report: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class LibrarySeed(Base):
    """A paper from a reader's own library: a liked paper that does not decay until
    their own feedback outweighs the seeds (see planning/profile_vectors.py). Its text
    is kept here: an entry built from its own title and abstract has no paper row."""

    __tablename__ = "library_seeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    paper_id: Mapped[int | None] = mapped_column(
        ForeignKey("papers.id", ondelete="SET NULL"), index=True
    )
    arxiv_id: Mapped[str | None] = mapped_column(String(64))
    doi: Mapped[str | None] = mapped_column(String(255), index=True)
    title_key: Mapped[str] = mapped_column(String(300))
    title: Mapped[str] = mapped_column(Text)
    abstract: Mapped[str] = mapped_column(Text, default="")
    authors: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FollowedAuthor(Base):
    """An author a reader follows: their new papers are always in the issue. ``key`` is
    the name as planning/follows.py matches it (surname and first initial)."""

    __tablename__ = "followed_authors"
    __table_args__ = (UniqueConstraint("subscriber_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
