from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.db import SessionFactory
from newsletter.models import Paper
from newsletter.papers.ingest import ingest_file
from tests.conftest import DAILY

TODAY = date(2026, 11, 29)


def _count(sessions: SessionFactory) -> int:
    with sessions() as session:
        return session.scalar(select(func.count(Paper.id))) or 0


def _write(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _record(arxiv_id: str, title: str, **extra: object) -> dict[str, object]:
    return {"id": arxiv_id, "title": title, "summary": "An abstract.", "authors": ["A"], **extra}


def test_ingest_real_day_then_again_changes_nothing(
    sessions: SessionFactory, daily_file: Path
) -> None:
    with sessions.begin() as session:
        first = ingest_file(session, daily_file, today=TODAY)
    assert (first.new, first.updated, first.skipped) == (319, 0, 0)
    assert first.unchanged == 0
    with sessions.begin() as session:
        second = ingest_file(session, daily_file, today=TODAY)
    assert (second.new, second.updated, second.unchanged) == (0, 0, 319)
    assert _count(sessions) == 319


def test_weekend_repeat_keeps_first_listing_date(sessions: SessionFactory) -> None:
    with sessions.begin() as session:
        ingest_file(session, DAILY / "2026-05-29.jsonl", today=TODAY)
    with sessions.begin() as session:
        repeat = ingest_file(session, DAILY / "2026-05-30.jsonl", today=TODAY)
    assert repeat.new == 0
    assert repeat.updated == 0
    with sessions() as session:
        dates = set(session.scalars(select(Paper.listed_on).distinct()))
    assert dates == {date(2026, 5, 29)}


def test_newest_version_wins_and_listing_date_is_the_first(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    with sessions.begin() as session:
        ingest_file(
            session,
            _write(tmp_path / "2026-05-04.jsonl", [_record("2605.00001v1", "Old title")]),
            today=TODAY,
        )
    with sessions.begin() as session:
        summary = ingest_file(
            session,
            _write(tmp_path / "2026-05-06.jsonl", [_record("2605.00001v2", "New  title")]),
            today=TODAY,
        )
    assert summary.updated == 1
    with sessions.begin() as session:
        older = ingest_file(
            session,
            _write(tmp_path / "2026-05-07.jsonl", [_record("2605.00001v1", "Old title")]),
            today=TODAY,
        )
    assert older.updated == 0
    with sessions() as session:
        paper = session.scalars(select(Paper)).one()
    assert paper.title == "New title"
    assert paper.version == 2
    assert paper.listed_on == date(2026, 5, 4)


def test_same_id_twice_in_one_file_is_one_paper(sessions: SessionFactory, tmp_path: Path) -> None:
    path = _write(
        tmp_path / "2026-05-04.jsonl",
        [_record("2605.00002v1", "First"), _record("2605.00002v3", "Third")],
    )
    with sessions.begin() as session:
        summary = ingest_file(session, path, today=TODAY)
    assert summary.new == 1
    with sessions() as session:
        assert session.scalars(select(Paper.title)).one() == "Third"


def test_malformed_lines_are_skipped_and_reported(sessions: SessionFactory, tmp_path: Path) -> None:
    path = tmp_path / "2026-05-04.jsonl"
    path.write_text(
        json.dumps(_record("2605.00003", "Fine"))
        + "\n{broken\n"
        + json.dumps({"id": "2605.00004"})
        + "\n"
    )
    with sessions.begin() as session:
        summary = ingest_file(session, path, today=TODAY)
    assert summary.new == 1
    assert summary.skipped == 2
    assert [p.location for p in summary.problems] == [f"{path}:2", f"{path}:3"]
    assert "missing 'title'" in summary.problems[1].reason
    assert str(summary) == "1 new, 0 updated, 0 unchanged, 2 skipped"


# Each of these aborted the whole file, or dropped the lines after it, before issue 12.
BAD_LINES = {
    "nul": (b'{"id": "2605.90001", "title": "A \\u0000 title"}', "'title' contains U+0000"),
    "smallint": (b'{"id": "2605.90002v40000", "title": "T"}', "version must be 1 to 32767"),
    "bigint": (b'{"id": "2605.90003v99999999999999999999", "title": "T"}', "version must be"),
    "surrogate": (b'{"id": "2605.90004", "title": "\\ud800"}', "'title' contains U+D800"),
    "url": (
        b'{"id": "2605.90005", "title": "T", "pdf": "https://x.org/' + b"p" * 600 + b'"}',
        "'pdf' is longer than 500 characters",
    ),
    "id": (b'{"id": "' + b"a" * 80 + b'/0309136", "title": "T"}', "'id' is longer than 64"),
    "utf8": (b'{"id": "2605.90007", "title": "\xff"}', "not UTF-8 (byte 0xff at column 32)"),
    "nested": (b"[" * 50_000, "not JSON (nested too deeply)"),
    "huge": (b'{"title": "' + b"t" * 3_000_000 + b'"}', "line longer than 2097152 bytes"),
    "title": (b'{"id": "2605.90009", "title": "' + b"t" * 5000 + b'"}', "'title' is longer"),
}


@pytest.mark.parametrize("kind", BAD_LINES)
def test_one_bad_line_costs_only_itself(
    sessions: SessionFactory, tmp_path: Path, daily_file: Path, kind: str
) -> None:
    line, reason = BAD_LINES[kind]
    real = daily_file.read_bytes().splitlines()[:120]
    path = tmp_path / "2026-05-27.jsonl"
    path.write_bytes(b"\n".join([*real[:3], line, *real[3:]]) + b"\n")
    with sessions.begin() as session:
        summary = ingest_file(session, path, today=TODAY)
    expected = {json.loads(record)["id"] for record in real}
    assert summary.new == len(expected)
    [problem] = summary.problems
    assert str(problem).startswith(f"{path}:4: {reason}")
    with sessions() as session:
        assert set(session.scalars(select(Paper.external_id))) == expected


def test_the_good_lines_of_a_truncated_gzip_are_kept(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    payload = b"".join(
        json.dumps(_record(f"2605.{i:05d}", f"Paper {i}")).encode() + b"\n" for i in range(3000)
    )
    compressed = gzip.compress(payload)
    path = tmp_path / "2026-05-04.jsonl.gz"
    path.write_bytes(compressed[: len(compressed) * 2 // 3])
    with sessions.begin() as session:
        summary = ingest_file(session, path, today=TODAY)
    assert summary.new > 1000
    [problem] = summary.problems
    assert problem.location == str(path)
    assert problem.reason.startswith(f"truncated after line {summary.new}:")
    assert _count(sessions) == summary.new
