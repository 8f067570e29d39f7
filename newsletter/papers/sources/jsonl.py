"""JSON Lines feeds in the format of arXiv daily listings (one paper per line).

The listing date of a record is its ``date`` field if it has one, else a
``YYYY-MM-DD`` in the file name, else today. ``.gz`` files are read transparently.

Every line stands alone: it is read as bytes and decoded and parsed on its own, so a
line that is too long, not UTF-8 or not JSON costs only itself, and a ``.gz`` cut short
keeps the lines before the cut. ``parse_record`` is the one check of a paper record,
which every source uses: whatever it accepts, both databases can store.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from newsletter.papers.sources import (
    ARXIV_CATEGORY,
    ARXIV_ID,
    PaperRecord,
    ParseReport,
    Problem,
    normalise_space,
    parse_day,
)

_DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")
_DATE_FIELDS = ("date", "listed_on", "listing_date")

# A line longer than this is skipped unread (the longest real listing line is ~50 kB).
MAX_LINE_BYTES = 2 * 1024 * 1024
_SKIP_CHUNK = 64 * 1024

# What one paper may hold: the papers table's column sizes, and otherwise far above
# any real record (arXiv titles run to ~250 characters, abstracts to ~2,000, author
# lists to a few thousand names).
MAX_ID = 64  # papers.external_id is VARCHAR(64)
MAX_VERSION = 32767  # papers.version is a SMALLINT
MAX_URL = 500  # papers.url and papers.pdf_url are VARCHAR(500)
MAX_TITLE = 1_000
MAX_ABSTRACT = 100_000
MAX_COMMENT = 10_000
MAX_AUTHORS = 10_000
MAX_AUTHOR = 500
MAX_CATEGORIES = 100
MAX_CATEGORY = 64

# Characters no column may hold: PostgreSQL text cannot store NUL, no UTF-8 encoder
# takes a lone surrogate (JSON's "\ud800"), and other C0 controls are garbage in a
# paper (whitespace among them is normalised away before this check).
_UNSTORABLE = re.compile("[\x00-\x1f\ud800-\udfff]")
_URL = re.compile("https?://[^\\s\x00-\x1f\x7f\ud800-\udfff]+")


class RecordError(ValueError):
    """One record is malformed; the message says why."""


def date_from_name(path: Path) -> date | None:
    """The first valid ``YYYY-MM-DD`` in a file name (within the days a listing may
    have), if any."""
    for match in _DATE_IN_NAME.finditer(path.name):
        try:
            return parse_day(match.group(1))
        except ValueError:
            continue
    return None


def _check_characters(text: str, name: str) -> str:
    bad = _UNSTORABLE.search(text)
    if bad is not None:
        char = bad.group()
        kind = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
        raise RecordError(f"{name!r} contains U+{ord(char):04X}, {kind}")
    return text


def _text(value: Any, name: str, *, required: bool, limit: int) -> str:
    if value is None:
        if required:
            raise RecordError(f"missing {name!r}")
        return ""
    if not isinstance(value, str):
        raise RecordError(f"{name!r} must be a string, not {type(value).__name__}")
    text = normalise_space(value)
    if required and not text:
        raise RecordError(f"empty {name!r}")
    if len(text) > limit:
        raise RecordError(f"{name!r} is longer than {limit} characters")
    return _check_characters(text, name)


def _strings(value: Any, name: str, *, count: int, limit: int) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecordError(f"{name!r} must be a list of strings")
    if len(value) > count:
        raise RecordError(f"{name!r} has more than {count} entries")
    texts = [t for t in (normalise_space(v) for v in value) if t]
    for text in texts:
        if len(text) > limit:
            raise RecordError(f"an entry of {name!r} is longer than {limit} characters")
        _check_characters(text, name)
    return texts


def _url(value: Any, name: str, fallback: str | None) -> str | None:
    if value is None or value == "":
        return fallback
    url = value.strip() if isinstance(value, str) else None
    if url is not None and len(url) > MAX_URL:
        raise RecordError(f"{name!r} is longer than {MAX_URL} characters")
    if url is None or not _URL.fullmatch(url):
        raise RecordError(f"{name!r} must be an http(s) URL")
    return url


def _listing_day(raw: dict[str, Any], default: date) -> date:
    for key in _DATE_FIELDS:
        value = raw.get(key)
        if not value:
            continue
        if not isinstance(value, str):
            raise RecordError(f"{key!r} must be a string, not {type(value).__name__}")
        try:
            return parse_day(value[:10])  # a timestamp's day
        except ValueError as exc:
            raise RecordError(f"{key!r} {exc}") from None
    return default


def parse_record(raw: Any, *, default_date: date) -> PaperRecord:
    """Validate and normalise one decoded JSON object (``RecordError`` says why not)."""
    if not isinstance(raw, dict):
        raise RecordError(f"expected a JSON object, got {type(raw).__name__}")
    given_id = _text(raw.get("id"), "id", required=True, limit=MAX_ID)
    match = ARXIV_ID.match(given_id)
    if match is None:
        raise RecordError(f"'id' {given_id!r} is not an arXiv identifier")
    external_id = match.group("id")
    digits = match.group("version")
    version = None
    if digits is not None:
        # Checked as text first: int() of thousands of digits is itself an error.
        if len(digits) > len(str(MAX_VERSION)) or not 1 <= int(digits) <= MAX_VERSION:
            raise RecordError(f"version must be 1 to {MAX_VERSION} in 'id' {given_id!r}")
        version = int(digits)
    title = _text(raw.get("title"), "title", required=True, limit=MAX_TITLE)
    abstract = _text(
        raw.get("summary", raw.get("abstract")), "summary", required=False, limit=MAX_ABSTRACT
    )
    listed_on = _listing_day(raw, default_date)
    labels = _strings(raw.get("categories"), "categories", count=MAX_CATEGORIES, limit=MAX_CATEGORY)
    comment = _text(raw.get("comment"), "comment", required=False, limit=MAX_COMMENT) or None
    authors = _strings(raw.get("authors"), "authors", count=MAX_AUTHORS, limit=MAX_AUTHOR)
    abs_url = f"https://arxiv.org/abs/{external_id}"
    return PaperRecord(
        external_id=external_id,
        version=version,
        title=title,
        abstract=abstract,
        authors=tuple(authors),
        categories=tuple(c for c in labels if ARXIV_CATEGORY.match(c)),
        class_codes=tuple(c for c in labels if not ARXIV_CATEGORY.match(c)),
        url=_url(raw.get("abs"), "abs", abs_url) or abs_url,
        pdf_url=_url(raw.get("pdf"), "pdf", None),
        comment=comment,
        listed_on=listed_on,
    )


def _open(path: Path) -> io.BufferedIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def _raw_lines(handle: io.BufferedIOBase) -> Iterator[tuple[int, bytes | None]]:
    """Numbered lines as bytes; ``None`` for a line longer than MAX_LINE_BYTES, which is
    skipped in chunks rather than held in memory."""
    number = 0
    while line := handle.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := handle.readline(_SKIP_CHUNK)) and not rest.endswith(b"\n"):
                pass
            yield number, None
        else:
            yield number, line


def _text_of(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = line[exc.start]
        raise RecordError(f"not UTF-8 (byte 0x{byte:02x} at column {exc.start + 1})") from None


def _json_of(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"not JSON ({exc.msg})") from None
    except RecursionError:
        raise RecordError("not JSON (nested too deeply)") from None
    except ValueError as exc:  # a number of more digits than int() takes
        raise RecordError(f"not JSON ({str(exc).split(';')[0]})") from None


def json_lines(path: Path, problems: list[Problem]) -> Iterator[tuple[str, Any]]:
    """The JSON value of each non-blank line, with its ``FILE:LINE``.

    A line that is too long, not UTF-8 or not JSON becomes a problem and the next line
    is read; a file that cannot be read to its end (a truncated or corrupt ``.gz``)
    keeps the lines before and ends with a problem of its own.
    """
    number = 0
    try:
        with _open(path) as handle:
            for number, line in _raw_lines(handle):
                location = f"{path}:{number}"
                if line is None:
                    size = f"{MAX_LINE_BYTES} bytes ({MAX_LINE_BYTES // 2**20} MiB)"
                    problems.append(Problem(location, f"line longer than {size}"))
                    continue
                if number == 1 and line.startswith(codecs.BOM_UTF8):
                    line = line[len(codecs.BOM_UTF8) :]
                try:
                    text = _text_of(line)
                    if not text.strip():
                        continue
                    value = _json_of(text)
                except RecordError as exc:
                    problems.append(Problem(location, str(exc)))
                    continue
                yield location, value
    except EOFError as exc:
        reason = f"truncated after line {number}: cannot read file further ({exc})"
        problems.append(Problem(str(path), reason))
    except (OSError, zlib.error) as exc:
        where = f" after line {number}" if number else ""
        problems.append(Problem(str(path), f"cannot read file{where}: {exc}"))


def read_jsonl(path: Path, *, today: date) -> ParseReport:
    """Parse a whole file; bad lines become problems (file:line: reason), never exceptions."""
    report = ParseReport()
    default_date = date_from_name(path) or today
    for location, raw in json_lines(path, report.problems):
        try:
            report.records.append(parse_record(raw, default_date=default_date))
        except RecordError as exc:
            report.problems.append(Problem(location, str(exc)))
    return report
