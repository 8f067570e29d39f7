from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path

import pytest

from newsletter.sources.jsonl import RecordError, date_from_name, parse_record, read_jsonl

TODAY = date(2026, 11, 29)
GOOD = {
    "id": "2605.00134v2",
    "categories": ["cs.GT", "I.2.10", "68T50", "math.OC"],
    "pdf": "https://arxiv.org/pdf/2605.00134",
    "abs": "https://arxiv.org/abs/2605.00134",
    "authors": ["  Tenma   Wakasugi ", "Zhaohong Sun"],
    "title": "Compatible  $k$-Relaxations\n  of Fairness",
    "comment": None,
    "summary": "We study\ntwo-sided   matching.",
}


def test_parse_normalises_a_real_shaped_record() -> None:
    record = parse_record(GOOD, default_date=TODAY)
    assert record.external_id == "2605.00134"
    assert record.version == 2
    assert record.title == "Compatible $k$-Relaxations of Fairness"
    assert record.abstract == "We study two-sided matching."
    assert record.authors == ("Tenma Wakasugi", "Zhaohong Sun")
    assert record.categories == ("cs.GT", "math.OC")
    assert record.class_codes == ("I.2.10", "68T50")
    assert record.listed_on == TODAY


def test_record_date_field_wins_over_file_name() -> None:
    record = parse_record({**GOOD, "date": "2026-05-03"}, default_date=TODAY)
    assert record.listed_on == date(2026, 5, 3)


def test_old_style_ids_are_accepted() -> None:
    record = parse_record({**GOOD, "id": "math.GT/0309136v1"}, default_date=TODAY)
    assert record.external_id == "math.GT/0309136"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": None}, "missing 'id'"),
        ({"id": "not-an-id"}, "not an arXiv identifier"),
        ({"title": "   "}, "empty 'title'"),
        ({"title": None}, "missing 'title'"),
        ({"title": 42}, "'title' must be a string"),
        ({"authors": "A. Person"}, "'authors' must be a list"),
        ({"date": "yesterday"}, "not a YYYY-MM-DD date"),
        ({"abs": "javascript:alert(1)"}, "http"),
    ],
)
def test_bad_records_say_why(change: dict[str, object], reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        parse_record({**GOOD, **change}, default_date=TODAY)


def test_date_from_name() -> None:
    assert date_from_name(Path("listing-2026-05-04.jsonl")) == date(2026, 5, 4)
    assert date_from_name(Path("2026-13-45.jsonl")) is None
    assert date_from_name(Path("feed.jsonl")) is None


def test_read_reports_bad_lines_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "2026-05-04.jsonl"
    lines = [
        json.dumps(GOOD),
        "{not json",
        json.dumps({**GOOD, "id": "2605.00135", "title": ""}),
        "",
        json.dumps([1, 2]),
        json.dumps({**GOOD, "id": "2605.00136"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    report = read_jsonl(path, today=TODAY)
    assert [r.external_id for r in report.records] == ["2605.00134", "2605.00136"]
    assert all(r.listed_on == date(2026, 5, 4) for r in report.records)
    assert [str(p) for p in report.problems] == [
        f"{path}:2: not JSON (Expecting property name enclosed in double quotes)",
        f"{path}:3: empty 'title'",
        f"{path}:5: expected a JSON object, got list",
    ]


def test_file_without_date_uses_today(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_text(json.dumps(GOOD) + "\n")
    assert read_jsonl(path, today=TODAY).records[0].listed_on == TODAY


def test_gzip_and_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "2026-05-05.jsonl.gz"
    payload = "\n".join(json.dumps({**GOOD, "id": f"2605.{i:05d}"}) for i in range(200)).encode()
    path.write_bytes(gzip.compress(payload))
    assert len(read_jsonl(path, today=TODAY).records) == 200
    broken = tmp_path / "2026-05-06.jsonl.gz"
    broken.write_bytes(gzip.compress(payload)[:-200])
    report = read_jsonl(broken, today=TODAY)
    assert report.problems
    assert "cannot read file" in str(report.problems[-1])


def test_whole_real_day_parses_cleanly(daily_file: Path) -> None:
    report = read_jsonl(daily_file, today=TODAY)
    assert report.problems == []
    assert len(report.records) == 411
    assert all(r.listed_on == date(2026, 5, 27) for r in report.records)
    assert all(r.title and r.url.startswith("https://arxiv.org/abs/") for r in report.records)
