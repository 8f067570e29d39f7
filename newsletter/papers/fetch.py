"""Fetch papers from a configured source and upsert them: one transaction per run.

Everything is read first (all pages, with the source's courtesy delays and retries),
then upserted in one transaction, which also advances the source's state (e.g. the
OAI-PMH from-date, table ``source_state``). A failure anywhere (network, a broken page, a
looping server, the database) commits nothing and leaves the state where it was; the
next run simply starts from the same point again (upserts are idempotent).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy.orm import Session

from newsletter.db import SessionFactory
from newsletter.models import SourceState
from newsletter.papers.ingest import IngestSummary, upsert_papers
from newsletter.papers.sources.registry import make_source
from newsletter.progress import ProgressHook
from newsletter.settings import Settings


def source_state(session: Session, name: str) -> str | None:
    """Where source ``name`` resumes (table ``source_state``), or None the first time."""
    row = session.get(SourceState, name)
    return None if row is None else row.value


def set_source_state(session: Session, name: str, value: str) -> None:
    row = session.get(SourceState, name)
    if row is None:
        session.add(SourceState(name=name, value=value))
    else:
        row.value = value


@dataclass
class FetchSummary(IngestSummary):
    """An ``IngestSummary`` plus what the source did."""

    source: str = ""
    fetched: int = 0
    requests: int = 0
    state: str | None = None

    def __str__(self) -> str:
        return f"{self.source}: {self.fetched} fetched, {super().__str__()}"


def _embed(settings: Settings) -> bool:
    """Whether ingest stores sentence embeddings (the semantic extra)."""
    from newsletter.papers.embeddings import semantic_enabled

    return semantic_enabled(settings.semantic)


def fetch_source(
    session_factory: SessionFactory,
    settings: Settings,
    name: str,
    *,
    since: date | None = None,
    today: date | None = None,
    progress: ProgressHook | None = None,
    now: datetime | None = None,
    embed_progress: ProgressHook | None = None,
) -> FetchSummary:
    """Fetch everything new from source ``name`` and upsert it in one transaction.

    Raises ``ConfigError`` for a source that is not configured, ``FetchError`` when the
    source cannot be read; in both cases nothing is written. ``today`` (default: the UTC
    date) ends the source's window. The source's state (table ``source_state``) advances
    in the same transaction as the papers.
    ``now`` (default: the clock) is when new papers are first seen; its UTC date is
    the default ``today``.
    """
    now = now or datetime.now(UTC)
    today = today or now.astimezone(UTC).date()
    with session_factory() as session:
        previous = source_state(session, name)
    source = make_source(name, settings)
    try:
        result = source.fetch(since=since, state=previous, today=today)
    finally:
        source.close()
    with session_factory.begin() as session:
        ingest = upsert_papers(
            session,
            result.records,
            progress=progress,
            now=now,
            embed=_embed(settings),
            embed_progress=embed_progress,
        )
        if result.state is not None:
            set_source_state(session, name, result.state)
    return FetchSummary(
        new=ingest.new,
        updated=ingest.updated,
        unchanged=ingest.unchanged,
        problems=[*ingest.problems, *result.problems],
        source=name,
        fetched=len(result.records),
        requests=result.requests,
        state=result.state,
    )
