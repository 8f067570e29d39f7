"""Upsert papers by arXiv id: idempotent, the newest version wins, never a duplicate."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.models import Paper, utcnow
from newsletter.papers.sources import PaperRecord, Problem
from newsletter.papers.sources.jsonl import read_jsonl
from newsletter.progress import ProgressHook

_LOOKUP_CHUNK = 500


@dataclass
class IngestSummary:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.problems)

    def add(self, other: IngestSummary) -> None:
        self.new += other.new
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.problems.extend(other.problems)

    def __str__(self) -> str:
        return (
            f"{self.new} new, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.skipped} skipped"
        )


def _recency(version: int | None, listed_on: date) -> tuple[int, date]:
    # A higher arXiv version wins; without versions, the later listing wins.
    return (version or 0, listed_on)


def _merge_batch(records: Iterable[PaperRecord]) -> dict[str, tuple[PaperRecord, date]]:
    """Newest record per id, with the earliest listing date seen for it."""
    merged: dict[str, tuple[PaperRecord, date]] = {}
    for record in records:
        seen = merged.get(record.external_id)
        if seen is None:
            merged[record.external_id] = (record, record.listed_on)
            continue
        best, first = seen
        if _recency(record.version, record.listed_on) > _recency(best.version, best.listed_on):
            best = record
        merged[record.external_id] = (best, min(first, record.listed_on))
    return merged


def _content(record: PaperRecord) -> dict[str, object]:
    return {
        "version": record.version,
        "title": record.title,
        "abstract": record.abstract,
        "authors": list(record.authors),
        "categories": list(record.categories),
        "class_codes": list(record.class_codes),
        "url": record.url,
        "pdf_url": record.pdf_url,
        "comment": record.comment,
        "content_listed_on": record.listed_on,
    }


def upsert_papers(
    session: Session,
    records: Sequence[PaperRecord],
    *,
    now: datetime | None = None,
    progress: ProgressHook | None = None,
    embed: bool = False,
    embed_progress: ProgressHook | None = None,
) -> IngestSummary:
    """Insert new papers and update changed ones; the caller commits.

    ``progress`` is called with each chunk of distinct papers looked at. ``embed``:
    also store the sentence embeddings the papers lack (the semantic extra),
    reported to ``embed_progress``.
    """
    now = now or utcnow()
    summary = IngestSummary()
    merged = _merge_batch(records)
    ids = list(merged)
    retext: list[int] = []  # papers whose text changed: their embeddings are stale
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start : start + _LOOKUP_CHUNK]
        existing = {
            p.external_id: p
            for p in session.scalars(select(Paper).where(Paper.external_id.in_(chunk)))
        }
        for external_id in chunk:
            record, first_listed = merged[external_id]
            paper = existing.get(external_id)
            if paper is None:
                session.add(
                    Paper(
                        external_id=external_id,
                        listed_on=first_listed,
                        first_seen=now,
                        updated_at=now,
                        **_content(record),
                    )
                )
                summary.new += 1
                continue
            changed = False
            if first_listed < paper.listed_on:
                paper.listed_on = first_listed
                changed = True
            newer = _recency(record.version, record.listed_on) > _recency(
                paper.version, paper.content_listed_on
            )
            content = _content(record)
            # A re-listing of identical content (arXiv's weekend repeats) is no update.
            if newer and any(
                getattr(paper, key) != value
                for key, value in content.items()
                if key != "content_listed_on"
            ):
                if (paper.title, paper.abstract) != (content["title"], content["abstract"]):
                    retext.append(paper.id)
                for key, value in content.items():
                    setattr(paper, key, value)
                changed = True
            if changed:
                paper.updated_at = now
                summary.updated += 1
            else:
                summary.unchanged += 1
        if progress is not None:
            progress(len(chunk), len(ids))
    session.flush()
    if embed:
        # Imported here: the plain ingest path never loads the recommender stack.
        from newsletter.papers.embeddings import embed_ingested, forget_vectors

        forget_vectors(session, retext)
        embed_ingested(session, ids, progress=embed_progress)
    return summary


def ingest_file(
    session: Session,
    path: Path,
    *,
    today: date,
    progress: ProgressHook | None = None,
    embed: bool = False,
    embed_progress: ProgressHook | None = None,
) -> IngestSummary:
    """Parse one JSONL file and upsert its papers; malformed lines are reported, not fatal."""
    report = read_jsonl(path, today=today)
    summary = upsert_papers(
        session, report.records, progress=progress, embed=embed, embed_progress=embed_progress
    )
    summary.problems.extend(report.problems)
    return summary
