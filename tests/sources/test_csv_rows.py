"""One bad CSV row costs only itself (issue 12, item 5): invalid UTF-8 or a cell over
the csv module's size limit used to end the reading of the file there."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from newsletter.papers.sources.csv_source import CSV_COLUMNS, read_csv

TODAY = date(2026, 11, 29)
HEADER = ",".join(CSV_COLUMNS).encode()


def _rows(count: int) -> list[bytes]:
    return [
        f"2605.{i:05d},Paper number {i},An abstract.,Ada,cs.CL,,,,".encode() for i in range(count)
    ]


def test_invalid_utf8_costs_only_its_row(tmp_path: Path) -> None:
    rows = _rows(300)
    rows[4] = rows[4].replace(b"number", b"num\xffber")
    path = tmp_path / "papers.csv"
    path.write_bytes(b"\n".join([HEADER, *rows]) + b"\n")
    report = read_csv(path, today=TODAY)
    assert len(report.records) == 299
    assert [str(p) for p in report.problems] == [f"{path}:6: not UTF-8"]


def test_a_cell_too_large_costs_only_its_row(tmp_path: Path) -> None:
    rows = _rows(3)
    rows[1] = b"2605.99999,Huge," + b"x" * 200_000 + b",,,,,,"
    path = tmp_path / "papers.csv"
    path.write_bytes(b"\n".join([HEADER, *rows]) + b"\n")
    report = read_csv(path, today=TODAY)
    assert [r.external_id for r in report.records] == ["2605.00000", "2605.00002"]
    assert [str(p) for p in report.problems] == [
        f"{path}:3: not CSV (field larger than field limit (131072))"
    ]
