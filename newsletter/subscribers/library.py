"""Seeding a reader's profile from their own library (issue 16).

An import is parsed as it arrives (``library_formats``) and stored with what still has
to be resolved. Resolving matches each entry to a stored paper by arXiv id, or by
normalised title; an arXiv id the database does not hold is fetched from the arXiv API
(only by a job: ``fetch`` is None inside a web request, and those entries wait); an
entry with neither becomes a seed of its own title and abstract. While the API is down
the import stays pending and is retried with a growing pause; the preferences page says
so. Every entry ends in the import's report: imported, skipped (a duplicate) or not
imported, with why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from newsletter.db import SessionFactory
from newsletter.mail.latex import readable
from newsletter.models import (
    FollowedAuthor,
    LibraryImport,
    LibrarySeed,
    Paper,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from newsletter.papers.ingest import upsert_papers
from newsletter.papers.sources.http import FetchError
from newsletter.settings import Settings
from newsletter.subscribers.library_arxiv import ArxivFetcher, Fetcher, RefusedIds
from newsletter.subscribers.library_formats import (
    REPORTED_PROBLEMS,
    EntryProblem,
    LibraryEntry,
    ParsedLibrary,
    normalise_title,
)

# While the arXiv API is down: the pause before the next try doubles from this, up to
# MAX_PAUSE; after MAX_ATTEMPTS tries the entries are settled without it.
FIRST_PAUSE = timedelta(minutes=15)
MAX_PAUSE = timedelta(hours=6)
MAX_ATTEMPTS = 8
# Seeds per reader, over all their imports: planning reads every seed of every reader,
# so repeated imports must not grow one reader's library without end.
MAX_SEEDS = 5000
_CHUNK = 500

IMPORTED, SKIPPED, NOT_IMPORTED = "imported", "skipped", "not imported"


def _row(where: str, label: str, outcome: str, reason: str) -> dict[str, str]:
    return {"where": where, "label": label, "outcome": outcome, "reason": reason}


def _line_order(row: dict[str, Any]) -> tuple[int, str]:
    kind, _, number = str(row.get("where", "")).partition(" ")
    return (int(number) if number.isdigit() else 0, kind)


@dataclass
class _Seen:
    """Keys of the reader's seeds, and where in this import each key was first met."""

    keys: dict[tuple[str, str], str] = field(default_factory=dict)

    @staticmethod
    def keys_of(arxiv_id: str | None, doi: str | None, title: str) -> list[tuple[str, str]]:
        keys = []
        if arxiv_id:
            keys.append(("arxiv", arxiv_id.lower()))
        if doi:
            keys.append(("doi", doi.lower()))
        if normalise_title(title):
            keys.append(("title", normalise_title(title)))
        return keys

    def first(self, keys: list[tuple[str, str]]) -> str | None:
        return next((self.keys[k] for k in keys if k in self.keys), None)

    def add(self, keys: list[tuple[str, str]], where: str) -> None:
        for key in keys:
            self.keys.setdefault(key, where)


def _seen_for(session: Session, subscriber_id: int) -> _Seen:
    seen = _Seen()
    for arxiv_id, doi, title in session.execute(
        select(LibrarySeed.arxiv_id, LibrarySeed.doi, LibrarySeed.title).where(
            LibrarySeed.subscriber_id == subscriber_id
        )
    ):
        seen.add(_Seen.keys_of(arxiv_id, doi, title), "")
    return seen


def _stored_by_id(session: Session, ids: Iterable[str]) -> dict[str, Paper]:
    wanted = sorted(set(ids))
    found: dict[str, Paper] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        found.update(
            (p.external_id, p)
            for p in session.scalars(select(Paper).where(Paper.external_id.in_(chunk)))
        )
    return found


def _stored_by_title(session: Session, titles: Iterable[str]) -> dict[str, Paper]:
    """Stored papers whose title is one of ``titles``, by normalised title. Compared in
    SQL case-insensitively with spacing as given, then by the full rule here."""
    lowered = sorted({" ".join(t.split()).lower() for t in titles if t})
    found: dict[str, Paper] = {}
    for start in range(0, len(lowered), _CHUNK):
        chunk = lowered[start : start + _CHUNK]
        for paper in session.scalars(select(Paper).where(func.lower(Paper.title).in_(chunk))):
            found.setdefault(normalise_title(paper.title), paper)
    return found


def _seed(imp: LibraryImport, entry: LibraryEntry, *, paper: Paper | None = None) -> LibrarySeed:
    """A seed of a stored (public) paper, or of the entry's own text. Never of another
    reader's seed: their library (titles, abstracts, DOIs) is theirs alone."""
    title = paper.title if paper else entry.title
    return LibrarySeed(
        subscriber_id=imp.subscriber_id,
        paper_id=paper.id if paper else None,
        arxiv_id=paper.external_id if paper else entry.arxiv_id,
        doi=entry.doi,
        title_key=normalise_title(title),
        title=title,
        abstract=paper.abstract if paper else entry.abstract,
        authors=list(paper.authors if paper else entry.authors),
    )


def problem_rows(problems: list[EntryProblem]) -> list[dict[str, str]]:
    """A report row per problem, up to REPORTED_PROBLEMS, then one row for the rest
    (the report is stored, shown on the pages and exported: it must stay small)."""
    rows = [_row(p.where, p.label, NOT_IMPORTED, p.reason) for p in problems[:REPORTED_PROBLEMS]]
    if len(problems) > REPORTED_PROBLEMS:
        rest = problems[REPORTED_PROBLEMS:]
        rows.append(
            _row(
                rest[0].where,
                rest[0].label,
                NOT_IMPORTED,
                f"and {len(rest) - 1:,} more lines after this one were not imported either "
                f"(only the first {REPORTED_PROBLEMS} are listed); the last: {rest[-1].reason}",
            )
        )
    return rows


def unusable(entry: LibraryEntry) -> str | None:
    """Why an entry can never become a seed, whatever is stored (None: it can): no
    arXiv id and no title to go by."""
    if entry.arxiv_id or entry.title:
        return None
    if entry.doi:
        return (
            "a DOI alone, with no title to go by (only arXiv DOIs are looked up; "
            "give the BibTeX entry instead)"
        )
    return "no arXiv id, DOI or title"


def preview(parsed: ParsedLibrary) -> list[dict[str, str]]:
    """The report rows of a parsed library that need no database: lines that are not
    papers, entries that can never be seeds, and repeats of an earlier entry. What the
    sign-up shows before anything is stored (the same page for every address)."""
    seen = _Seen()
    report = problem_rows(parsed.problems)
    for entry in parsed.entries:
        keys = _Seen.keys_of(entry.arxiv_id, entry.doi, entry.title)
        first = seen.first(keys)
        if first is not None:
            report.append(_row(entry.where, entry.label, SKIPPED, f"the same paper as {first}"))
        elif (why := unusable(entry)) is not None:
            report.append(_row(entry.where, entry.label, NOT_IMPORTED, why))
        else:
            seen.add(keys, entry.where)
    return sorted(report, key=_line_order)


def new_import(
    session: Session, subscriber: Subscriber, parsed: ParsedLibrary, *, source: str
) -> LibraryImport:
    """Store a parsed library for ``subscriber`` and resolve what needs no network."""
    imp = LibraryImport(
        subscriber_id=subscriber.id,
        source=source[:200],
        status="pending",
        entries=[e.as_json() for e in parsed.entries],
        report=problem_rows(parsed.problems),
        attempts=0,
    )
    session.add(imp)
    session.flush()
    resolve(session, imp, fetch=None)
    return imp


def resolve(
    session: Session, imp: LibraryImport, *, fetch: Fetcher | None, now: datetime | None = None
) -> None:
    """Turn the import's waiting entries into seeds or report rows. ``fetch`` None: the
    entries that need the arXiv API keep waiting."""
    now = now or utcnow()
    entries = [LibraryEntry.from_json(e) for e in imp.entries]
    seen = _seen_for(session, imp.subscriber_id)
    stored = _stored_by_id(session, (e.arxiv_id for e in entries if e.arxiv_id))
    by_title = _stored_by_title(session, (e.title for e in entries))
    report = list(imp.report)
    to_fetch: list[LibraryEntry] = []
    waiting: list[LibraryEntry] = []
    room = MAX_SEEDS - seed_count(session, imp.subscriber_id)  # less what waits for arXiv

    def take_room(entry: LibraryEntry) -> bool:
        nonlocal room
        if room <= 0:
            why = f"your library is full ({MAX_SEEDS:,} papers): not added"
            report.append(_row(entry.where, entry.label, NOT_IMPORTED, why))
            return False
        room -= 1
        return True

    def settle(
        entry: LibraryEntry, reason: str, *, paper: Paper | None = None, reserved: bool = False
    ) -> None:
        """A seed and its report row (``reserved``: its room was taken when it was
        queued for arXiv), or the row saying the library is full."""
        if not reserved and not take_room(entry):
            return
        seed = _seed(imp, entry, paper=paper)
        session.add(seed)
        seen.add(_Seen.keys_of(seed.arxiv_id, seed.doi, seed.title), entry.where)
        report.append(_row(entry.where, entry.label, IMPORTED, reason))

    for entry in entries:
        keys = _Seen.keys_of(entry.arxiv_id, entry.doi, entry.title)
        first = seen.first(keys)
        if first is not None:
            why = f"the same paper as {first}" if first else "already in your library"
            report.append(_row(entry.where, entry.label, SKIPPED, why))
            continue
        paper = stored.get(entry.arxiv_id or "") or by_title.get(normalise_title(entry.title))
        if paper is not None:
            settle(entry, f"“{readable(paper.title)}”", paper=paper)
        elif entry.arxiv_id:
            if take_room(entry):
                (waiting if fetch is None else to_fetch).append(entry)
                seen.add(keys, entry.where)
        elif entry.title:
            own = "its own title and abstract" if entry.abstract else "its own title"
            settle(entry, f"from {own}")
        else:
            report.append(_row(entry.where, entry.label, NOT_IMPORTED, unusable(entry) or ""))

    if to_fetch:
        waiting += _fetch_and_settle(session, imp, to_fetch, fetch, now, report, settle)
    imp.entries = [e.as_json() for e in waiting]
    imp.report = sorted(report, key=_line_order)
    imp.status = "pending" if waiting else "done"
    imp.updated_at = now
    if not waiting:
        imp.next_attempt_at = None
    session.flush()


def _fetch_and_settle(
    session: Session,
    imp: LibraryImport,
    entries: list[LibraryEntry],
    fetch: Fetcher | None,
    now: datetime,
    report: list[dict[str, str]],
    settle: Any,
) -> list[LibraryEntry]:
    """Fetch ``entries`` by arXiv id; the ones left waiting (the API is down)."""
    if fetch is None:
        return entries
    refused = ""
    try:
        records = fetch([e.arxiv_id or "" for e in entries])
    except FetchError as exc:
        imp.attempts += 1
        if imp.attempts < MAX_ATTEMPTS:
            pause = min(FIRST_PAUSE * 2 ** (imp.attempts - 1), MAX_PAUSE)
            imp.next_attempt_at = now + pause
            imp.last_error = (
                f"the arXiv API could not be reached ({exc}); "
                f"trying again after {imp.next_attempt_at:%Y-%m-%d %H:%M} UTC"
            )
            return entries
        records = {}
        imp.last_error = f"the arXiv API could not be reached after {imp.attempts} tries"
    except RefusedIds as exc:  # the same answer next time: report, do not retry
        records, refused = {}, str(exc)
        imp.last_error = None
    else:
        imp.last_error = None
    if records:
        upsert_papers(session, list(records.values()), now=now)
    stored = _stored_by_id(session, records)
    for entry in entries:
        paper = stored.get(entry.arxiv_id or "")
        if paper is not None:
            settle(entry, f"“{readable(paper.title)}” (from arXiv)", paper=paper, reserved=True)
        elif entry.title:
            why = (
                "arXiv refused the query"
                if refused
                else "unknown to arXiv"
                if imp.last_error is None
                else "arXiv unreachable"
            )
            settle(entry, f"from its own title ({why})", reserved=True)
        elif refused:
            report.append(_row(entry.where, entry.label, NOT_IMPORTED, refused))
        elif imp.last_error is None:
            report.append(
                _row(entry.where, entry.label, NOT_IMPORTED, f"unknown arXiv id {entry.arxiv_id}")
            )
        else:
            report.append(_row(entry.where, entry.label, NOT_IMPORTED, imp.last_error))
    return []


@dataclass
class PendingSummary:
    imports: int = 0
    done: int = 0
    waiting: int = 0

    def __str__(self) -> str:
        return f"{self.imports} library imports: {self.done} done, {self.waiting} waiting"


# How often the scheduler looks for library imports that wait for the arXiv API.
PENDING_INTERVAL = timedelta(minutes=5)


def _due(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """Imports the job resolves now: pending, due, and of a reader who has confirmed.
    A sign-up's library waits for the confirmation, so typing strangers' addresses
    into the form never makes this service fetch from the arXiv API for them."""
    return (
        LibraryImport.status == "pending",
        LibraryImport.next_attempt_at.is_(None) | (LibraryImport.next_attempt_at <= now),
        LibraryImport.subscriber_id.in_(
            select(Subscriber.id).where(Subscriber.status == SubscriberStatus.ACTIVE)
        ),
    )


def seed_pending(settings: Settings, sessions: SessionFactory) -> PendingSummary | None:
    """The scheduler's job: resolve the due imports (None, and no HTTP client, if none)."""
    now = utcnow()
    with sessions() as session:
        due = session.scalar(select(func.count(LibraryImport.id)).where(*_due(now)))
    if not due:
        return None
    fetcher = ArxivFetcher(settings, today=now.date())
    try:
        return process_pending(sessions, fetcher, now=now)
    finally:
        fetcher.close()


def process_pending(
    sessions: SessionFactory, fetch: Fetcher, *, now: datetime | None = None
) -> PendingSummary:
    """Resolve every import that is due, each in its own transaction (one failing
    import never holds back the others)."""
    now = now or utcnow()
    summary = PendingSummary()
    with sessions() as session:
        due = list(
            session.scalars(select(LibraryImport.id).where(*_due(now)).order_by(LibraryImport.id))
        )
    for import_id in due:
        with sessions.begin() as session:
            imp = session.get(LibraryImport, import_id)
            if imp is None or imp.status != "pending":
                continue
            resolve(session, imp, fetch=fetch, now=now)
            summary.imports += 1
            if imp.status == "done":
                summary.done += 1
            else:
                summary.waiting += 1
    return summary


def recent_imports(session: Session, subscriber_id: int, *, limit: int = 3) -> list[LibraryImport]:
    """The reader's newest imports, newest first: what the preferences page reports."""
    return list(
        session.scalars(
            select(LibraryImport)
            .where(LibraryImport.subscriber_id == subscriber_id)
            .order_by(LibraryImport.id.desc())
            .limit(limit)
        )
    )


def seed_count(session: Session, subscriber_id: int) -> int:
    return int(
        session.scalar(
            select(func.count(LibrarySeed.id)).where(LibrarySeed.subscriber_id == subscriber_id)
        )
        or 0
    )


def problems_of(imp: LibraryImport) -> list[EntryProblem]:
    """The report's rows that were not imported, for the command line."""
    return [
        EntryProblem(r["where"], r["label"], r["reason"])
        for r in imp.report
        if r["outcome"] == NOT_IMPORTED
    ]


def library_export(session: Session, subscriber_id: int) -> dict[str, Any]:
    """The reader's library and followed authors, for their data export."""
    seeds = session.scalars(
        select(LibrarySeed)
        .where(LibrarySeed.subscriber_id == subscriber_id)
        .order_by(LibrarySeed.id)
    )
    imports = recent_imports(session, subscriber_id, limit=1000)
    follows = session.scalars(
        select(FollowedAuthor)
        .where(FollowedAuthor.subscriber_id == subscriber_id)
        .order_by(FollowedAuthor.id)
    )
    return {
        "library": [
            {
                "arxiv_id": s.arxiv_id,
                "doi": s.doi,
                "title": s.title,
                "authors": s.authors,
                "added": s.created_at.isoformat(),
            }
            for s in seeds
        ],
        "library_imports": [
            {
                "source": i.source,
                "status": i.status,
                "at": i.created_at.isoformat(),
                "report": i.report,
            }
            for i in reversed(imports)
        ],
        "followed_authors": [a.name for a in follows],
    }
