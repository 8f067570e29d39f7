from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from newsletter.papers.sources.csv_source import CSV_COLUMNS, CsvSource, JsonlSource, read_csv
from newsletter.papers.sources.http import FetchError
from tests.conftest import DAILY

TODAY = date(2026, 11, 29)
HEADER = ",".join(CSV_COLUMNS)


def _write(path: Path, *rows: str, header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_documented_header_and_rows(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "papers.csv",
        '2605.00134v2,"Compatible  $k$-Relaxations, of Fairness",We study matching.,'
        "Tenma Wakasugi; Zhaohong Sun,cs.GT; I.2.10 68T50,2026-05-03,,,",
        "2605.00135,Second,,,,,https://example.org/p,https://example.org/p.pdf,a note",
    )
    report = read_csv(path, today=TODAY)
    assert report.problems == []
    first, second = report.records
    assert first.external_id == "2605.00134"
    assert first.version == 2
    assert first.title == "Compatible $k$-Relaxations, of Fairness"
    assert first.authors == ("Tenma Wakasugi", "Zhaohong Sun")
    assert first.categories == ("cs.GT",)
    assert first.class_codes == ("I.2.10", "68T50")
    assert first.listed_on == date(2026, 5, 3)
    assert first.url == "https://arxiv.org/abs/2605.00134"
    assert second.listed_on == TODAY
    assert second.url == "https://example.org/p"
    assert second.pdf_url == "https://example.org/p.pdf"
    assert second.comment == "a note"


def test_minimal_header_is_enough(tmp_path: Path) -> None:
    report = read_csv(
        _write(tmp_path / "p.csv", "A title,2605.00134", header="title,id"), today=TODAY
    )
    assert [r.title for r in report.records] == ["A title"]


@pytest.mark.parametrize(
    ("header", "reason"),
    [("id,titel", "missing column 'title'"), ("id,title,doi", "unknown column 'doi'")],
)
def test_a_bad_header_is_one_clear_problem(tmp_path: Path, header: str, reason: str) -> None:
    report = read_csv(_write(tmp_path / "p.csv", "2605.00134,x", header=header), today=TODAY)
    assert report.records == []
    assert len(report.problems) == 1
    assert reason in str(report.problems[0])
    assert HEADER in str(report.problems[0])


def test_bad_rows_are_reported_with_their_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "p.csv",
        "nonsense,A title",
        "2605.00134,Good",
        "2605.00135,",
        "2605.00136,Too,many,cells,here,2026-01-01,,,,,extra",
        header="id,title",
    )
    report = read_csv(path, today=TODAY)
    assert [r.external_id for r in report.records] == ["2605.00134"]
    assert [str(p) for p in report.problems] == [
        f"{path}:2: 'id' 'nonsense' is not an arXiv identifier",
        f"{path}:4: missing 'title'",
        f"{path}:5: more cells than columns",
    ]


def test_csv_source_reads_a_directory_and_filters_by_since(tmp_path: Path) -> None:
    _write(tmp_path / "a.csv", "2605.00001,Old,,,,2026-05-01,,,", "2605.00002,New,,,,2026-05-20,,,")
    _write(tmp_path / "b.csv", "2605.00003,Newer,,,,2026-05-21,,,")
    (tmp_path / "notes.txt").write_text("ignored")
    source = CsvSource("csv", tmp_path)
    result = source.fetch(since=date(2026, 5, 10), state=None, today=TODAY)
    assert [r.external_id for r in result.records] == ["2605.00002", "2605.00003"]
    assert result.state is None


def test_jsonl_source_reads_like_ingest(tmp_path: Path) -> None:
    shutil.copy(DAILY / "2026-05-27.jsonl", tmp_path / "2026-05-27.jsonl")
    result = JsonlSource("jsonl", tmp_path).fetch(since=None, state=None, today=TODAY)
    assert len(result.records) == 411
    assert all(r.listed_on == date(2026, 5, 27) for r in result.records)


def test_a_missing_path_is_a_fetch_error(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="does not exist"):
        CsvSource("csv", tmp_path / "nowhere.csv").fetch(since=None, state=None, today=TODAY)
