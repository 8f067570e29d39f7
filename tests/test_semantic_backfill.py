"""`newsletter recommender embed`: vectors for papers ingested without them (issue 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update

from newsletter.db import SessionFactory
from newsletter.models import Paper, PaperEmbedding
from newsletter.papers.embeddings import backfill
from newsletter.papers.ingest import upsert_papers
from newsletter.papers.sources.jsonl import read_jsonl
from recommender import semantic
from tests.conftest import DAILY, TEST_SECRET

# slow: loads the semantic model.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not semantic.available(), reason="the semantic extra is not installed"),
]

WED = date(2026, 5, 27)


def _vectors(sessions: SessionFactory) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(PaperEmbedding)) or 0


def test_backfill_embeds_what_lacks_a_vector_newest_first_in_batches(
    sessions: SessionFactory,
) -> None:
    records = read_jsonl(DAILY / "2026-05-27.jsonl", today=WED).records[:7]
    with sessions.begin() as session:
        upsert_papers(session, records, embed=False)  # ingested before the extra
        # Two of them listed a week earlier, to be left out by --since.
        session.execute(
            update(Paper)
            .where(Paper.external_id.in_([r.external_id for r in records[:2]]))
            .values(listed_on=WED - timedelta(days=7))
        )
    assert _vectors(sessions) == 0
    seen: list[tuple[int, int | None]] = []
    done = backfill(sessions, since=WED, batch=2, progress=lambda n, total: seen.append((n, total)))
    assert done == 5 == _vectors(sessions)
    assert seen[0] == (0, 5)
    assert [n for n, _ in seen[1:]] == [2, 2, 1]  # one transaction per batch
    assert backfill(sessions) == 2  # the older two; then nothing is missing
    assert backfill(sessions) == 0
    with sessions() as session:
        models = set(session.scalars(select(PaperEmbedding.model)))
    assert models == {semantic.MODEL_VERSION}


def test_the_command_reports_what_it_embedded(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    # ``engine`` empties the shared database first.
    listing = tmp_path / "2026-05-27.jsonl"
    listing.write_text(
        "".join((DAILY / "2026-05-27.jsonl").read_text(encoding="utf-8").splitlines(True)[:3]),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env |= {"NEWSLETTER_DATABASE_URL": database_url, "NEWSLETTER_SECRET_KEY": TEST_SECRET}

    def newsletter(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "newsletter", *args],
            capture_output=True,
            text=True,
            env=env | extra,
            timeout=300,
            check=False,
        )

    ingested = newsletter("ingest", str(listing), NEWSLETTER_SEMANTIC="false")
    assert ingested.returncode == 0, ingested.stderr
    first = newsletter("recommender", "embed", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"embedded": 3}
    again = newsletter("recommender", "embed")
    assert (again.returncode, again.stdout) == (0, "0 papers embedded\n")


def test_ingest_reports_the_embedding_as_its_own_progress(sessions: SessionFactory) -> None:
    records = read_jsonl(DAILY / "2026-05-27.jsonl", today=WED).records[:40]
    looked_at: list[tuple[int, int | None]] = []
    embedded: list[tuple[int, int | None]] = []
    with sessions.begin() as session:
        upsert_papers(
            session,
            records,
            embed=True,
            progress=lambda n, total: looked_at.append((n, total)),
            embed_progress=lambda n, total: embedded.append((n, total)),
        )
    papers = _vectors(sessions)
    assert papers > 0
    assert sum(n for n, _ in embedded) == papers  # advances add up to the papers embedded
    assert {total for _, total in embedded} == {papers}
    assert sum(n for n, _ in looked_at) == papers  # the upsert phase counted separately
