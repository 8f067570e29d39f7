"""Local files as sources: CSV with a documented header, and JSON Lines (as ``ingest``).

CSV (UTF-8, comma-separated, one paper per row, the first row the header)::

    id,title,abstract,authors,categories,date,url,pdf,comment

- ``id`` (required): an arXiv id, optionally with a version (``2605.00134v2``)
- ``title`` (required); ``abstract``: free text
- ``authors``: separated by ``;`` (``Ada Lovelace; Alan Turing``)
- ``categories``: separated by ``;`` or spaces (``cs.CL; cs.LG``); ACM/MSC codes allowed
- ``date``: the listing date ``YYYY-MM-DD`` (empty: today)
- ``url``, ``pdf``: http(s) URLs (``url`` empty: the arXiv abstract page)
- ``comment``: free text

Only ``id`` and ``title`` columns must be present; unknown columns are an error, so a
misspelt header is never silently ignored. ``path`` may be a file or a directory (every
``*.csv`` / ``*.jsonl`` / ``*.jsonl.gz`` in it, by name). With ``since``, rows listed
before it are left out.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from newsletter.papers.sources import ParseReport, Problem
from newsletter.papers.sources.http import FetchError
from newsletter.papers.sources.jsonl import RecordError, parse_record, read_jsonl
from newsletter.papers.sources.registry import FetchResult

CSV_COLUMNS = ("id", "title", "abstract", "authors", "categories", "date", "url", "pdf", "comment")
REQUIRED_COLUMNS = ("id", "title")
_CATEGORY_SPLIT = re.compile(r"[;\s]+")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def row_to_raw(row: dict[str, str]) -> dict[str, Any]:
    """One CSV row in the JSONL record's shape."""

    def cell(name: str) -> str:
        return (row.get(name) or "").strip()

    return {
        "id": cell("id") or None,
        "title": cell("title") or None,
        "summary": cell("abstract"),
        "authors": [a for a in (p.strip() for p in cell("authors").split(";")) if a],
        "categories": [c for c in _CATEGORY_SPLIT.split(cell("categories")) if c],
        "date": cell("date") or None,
        "abs": cell("url") or None,
        "pdf": cell("pdf") or None,
        "comment": cell("comment") or None,
    }


def has_undecodable_cells(row: dict[str | Any, Any]) -> bool:
    """Whether a cell holds bytes that were not UTF-8 (kept as lone surrogates)."""
    return any(isinstance(cell, str) and _ESCAPED_BYTE.search(cell) for cell in row.values())


def csv_rows(reader: csv.DictReader[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Each row of a CSV opened with ``errors="surrogateescape"``, with its line number,
    or the reason it cannot be read (not CSV, not UTF-8): one bad row costs only itself."""
    while True:
        start = reader.line_num + 1  # where the next row begins
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, f"not CSV ({exc})"
            continue
        if has_undecodable_cells(row):
            yield reader.line_num, "not UTF-8"
            continue
        yield reader.line_num, row


def read_csv(path: Path, *, today: date) -> ParseReport:
    """Parse a CSV file; bad rows become problems (file:line: reason), and each row
    stands alone: one that is not UTF-8 or not CSV costs only itself."""
    report = ParseReport()
    try:
        # surrogateescape: a byte that is not UTF-8 spoils its row, not the rest.
        with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            unknown = [c for c in header if c not in CSV_COLUMNS]
            if missing or unknown:
                reason = (
                    f"missing column {missing[0]!r}"
                    if missing
                    else f"unknown column {unknown[0]!r}"
                )
                report.problems.append(
                    Problem(f"{path}:1", f"{reason}; the header is {','.join(CSV_COLUMNS)}")
                )
                return report
            reader.fieldnames = header
            for line, row in csv_rows(reader):
                if isinstance(row, str):
                    report.problems.append(Problem(f"{path}:{line}", row))
                    continue
                if None in row:
                    report.problems.append(Problem(f"{path}:{line}", "more cells than columns"))
                    continue
                try:
                    report.records.append(parse_record(row_to_raw(row), default_date=today))
                except RecordError as exc:
                    report.problems.append(Problem(f"{path}:{line}", str(exc)))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        report.problems.append(Problem(str(path), f"cannot read file: {exc}"))
    return report


class _FileSource:
    kind = "file"
    patterns: tuple[str, ...] = ()

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path

    def close(self) -> None:
        """Nothing to release."""

    def files(self) -> list[Path]:
        if self.path.is_dir():
            found = {p for pattern in self.patterns for p in self.path.glob(pattern)}
            return sorted(found)
        if self.path.is_file():
            return [self.path]
        raise FetchError(f"source {self.name!r}: {self.path} does not exist")

    def read(self, path: Path, today: date) -> ParseReport:
        raise NotImplementedError

    def fetch(self, *, since: date | None, state: str | None, today: date) -> FetchResult:
        result = FetchResult()
        for path in self.files():
            report = self.read(path, today)
            result.records.extend(
                r for r in report.records if since is None or r.listed_on >= since
            )
            result.problems.extend(report.problems)
        return result


class CsvSource(_FileSource):
    kind = "csv"
    patterns = ("*.csv",)

    def read(self, path: Path, today: date) -> ParseReport:
        return read_csv(path, today=today)


class JsonlSource(_FileSource):
    kind = "jsonl"
    patterns = ("*.jsonl", "*.jsonl.gz")

    def read(self, path: Path, today: date) -> ParseReport:
        return read_jsonl(path, today=today)
