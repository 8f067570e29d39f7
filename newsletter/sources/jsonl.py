"""JSON Lines feeds in the format of arXiv daily listings (one paper per line).

The listing date of a record is its ``date`` field if it has one, else a
``YYYY-MM-DD`` in the file name, else today. ``.gz`` files are read transparently.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import IO, Any

from newsletter.sources import (
    ARXIV_CATEGORY,
    ARXIV_ID,
    PaperRecord,
    ParseReport,
    Problem,
    normalise_space,
)

_DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")
_DATE_FIELDS = ("date", "listed_on", "listing_date")


class RecordError(ValueError):
    """One record is malformed; the message says why."""


def date_from_name(path: Path) -> date | None:
    """The first valid ``YYYY-MM-DD`` in a file name, if any."""
    for match in _DATE_IN_NAME.finditer(path.name):
        try:
            return date.fromisoformat(match.group(1))
        except ValueError:
            continue
    return None


def _text(value: Any, name: str, *, required: bool) -> str:
    if value is None:
        if required:
            raise RecordError(f"missing {name!r}")
        return ""
    if not isinstance(value, str):
        raise RecordError(f"{name!r} must be a string, not {type(value).__name__}")
    text = normalise_space(value)
    if required and not text:
        raise RecordError(f"empty {name!r}")
    return text


def _strings(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecordError(f"{name!r} must be a list of strings")
    return [t for t in (normalise_space(v) for v in value) if t]


def _url(value: Any, name: str, fallback: str | None) -> str | None:
    if value is None or value == "":
        return fallback
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise RecordError(f"{name!r} must be an http(s) URL")
    return value.strip()


def parse_record(raw: Any, *, default_date: date) -> PaperRecord:
    """Validate and normalise one decoded JSON object."""
    if not isinstance(raw, dict):
        raise RecordError(f"expected a JSON object, got {type(raw).__name__}")
    match = ARXIV_ID.match(_text(raw.get("id"), "id", required=True))
    if match is None:
        raise RecordError(f"'id' {raw.get('id')!r} is not an arXiv identifier")
    external_id = match.group("id")
    version = int(match.group("version")) if match.group("version") else None
    title = _text(raw.get("title"), "title", required=True)
    abstract = _text(raw.get("summary", raw.get("abstract")), "summary", required=False)
    listed_on = default_date
    for key in _DATE_FIELDS:
        if raw.get(key):
            value = raw[key]
            try:
                listed_on = date.fromisoformat(str(value)[:10])
            except ValueError:
                raise RecordError(f"{key!r} {value!r} is not a YYYY-MM-DD date") from None
            break
    labels = _strings(raw.get("categories"), "categories")
    comment = _text(raw.get("comment"), "comment", required=False) or None
    abs_url = f"https://arxiv.org/abs/{external_id}"
    return PaperRecord(
        external_id=external_id,
        version=version,
        title=title,
        abstract=abstract,
        authors=tuple(_strings(raw.get("authors"), "authors")),
        categories=tuple(c for c in labels if ARXIV_CATEGORY.match(c)),
        class_codes=tuple(c for c in labels if not ARXIV_CATEGORY.match(c)),
        url=_url(raw.get("abs"), "abs", abs_url) or abs_url,
        pdf_url=_url(raw.get("pdf"), "pdf", None),
        comment=comment,
        listed_on=listed_on,
    )


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered non-blank lines of a (possibly gzipped) text file."""
    with _open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


def read_jsonl(path: Path, *, today: date) -> ParseReport:
    """Parse a whole file; bad lines become problems (file:line: reason), never exceptions."""
    report = ParseReport()
    default_date = date_from_name(path) or today
    try:
        for number, line in iter_lines(path):
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                report.problems.append(Problem(f"{path}:{number}", f"not JSON ({exc.msg})"))
                continue
            try:
                report.records.append(parse_record(raw, default_date=default_date))
            except RecordError as exc:
                report.problems.append(Problem(f"{path}:{number}", str(exc)))
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        report.problems.append(Problem(str(path), f"cannot read file: {exc}"))
    return report
