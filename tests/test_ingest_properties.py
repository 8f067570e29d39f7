"""Property tests of the ingest path: whatever is mixed into a real listing, reading
never raises, every good line is kept and every other line is one problem; whatever
``parse_record`` accepts, both databases store (issue 12, item 5).

Reproducible: hypothesis is derandomized and keeps no example database.
"""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from newsletter.db import SessionFactory
from newsletter.models import Paper
from newsletter.papers.ingest import ingest_file
from newsletter.papers.sources import jsonl
from newsletter.papers.sources.jsonl import RecordError, parse_record, read_jsonl
from tests.conftest import DAILY

pytestmark = pytest.mark.slow  # hypothesis-heavy property tests

TODAY = date(2026, 11, 29)
REAL = (DAILY / "2026-05-27.jsonl").read_bytes().splitlines()[:20]
REAL_IDS = [json.loads(line)["id"] for line in REAL]
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None)

# Text nobody types, beside whatever hypothesis makes up (lone surrogates included).
any_text = st.text(st.characters(exclude_categories=()), max_size=30)
nasty_text = st.sampled_from(
    ["", " ", "\x00", "a\x00b", "\ud800", "\udfff", "\x07", "\u2028", "\ufeff", "t" * 1001]
)
text = st.one_of(any_text, nasty_text)
json_value = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.integers(-(10**30), 10**30), text
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
field_value = st.one_of(text, json_value, st.lists(text, max_size=4))


def mostly(fair: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``fair`` four times in five: most records get through the checks to the database,
    with something odd in them now and then."""
    return st.integers(0, 4).flatmap(lambda n: odd if n == 0 else fair)


plain_text = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=40)
fair_text = mostly(plain_text, st.one_of(nasty_text, any_text, field_value))
arxiv_id = st.builds(
    "{}.{:05d}{}".format,
    mostly(st.sampled_from(["2699", "2698"]), st.just("٢٦٩٩")),
    st.integers(0, 99_999),
    st.one_of(
        st.just(""),
        mostly(st.integers(1, 32767), st.integers() | st.integers(32768, 10**25)).map("v{}".format),
    ),
)
url = st.builds("https://arxiv.org/{}".format, mostly(plain_text, any_text | st.just("p" * 490)))
record = st.fixed_dictionaries(
    {"id": mostly(arxiv_id, field_value), "title": fair_text},
    optional={
        "summary": fair_text,
        "comment": fair_text,
        "authors": mostly(st.lists(fair_text, max_size=4), field_value),
        "categories": mostly(st.lists(fair_text, max_size=4), field_value),
        "abs": mostly(url, field_value),
        "pdf": mostly(url, field_value),
        "date": mostly(st.dates().map(date.isoformat), field_value),
    },
)


def near(limit: int) -> st.SearchStrategy[int]:
    return st.integers(max(limit - 2, 0), limit + 2)


def long_text(limit: int) -> st.SearchStrategy[str]:
    """Text of about ``limit`` characters, one to four UTF-8 bytes each."""
    return st.builds(lambda char, n: char * n, st.sampled_from("tλ€𝛼"), near(limit))


# One character a database may not hold, in otherwise fair text.
spiked_text = st.builds(
    "{}{}{}".format, plain_text, st.sampled_from(["\x00", "\x07", "\x1b", "\ud800"]), plain_text
)
edge_text = {
    "title": long_text(jsonl.MAX_TITLE),
    "summary": long_text(jsonl.MAX_ABSTRACT),
    "comment": long_text(jsonl.MAX_COMMENT),
}
# A real record with one or two fields at the edges of what parse_record accepts.
edge_change = st.one_of(
    st.sampled_from(["title", "summary", "comment"]).flatmap(
        lambda name: st.tuples(st.just(name), st.one_of(spiked_text, edge_text[name]))
    ),
    st.tuples(
        st.sampled_from(["authors", "categories"]),
        st.lists(st.one_of(plain_text, spiked_text, long_text(jsonl.MAX_CATEGORY)), max_size=3),
    ),
    st.tuples(st.just("authors"), st.lists(long_text(jsonl.MAX_AUTHOR), max_size=2)),
    st.tuples(
        st.sampled_from(["abs", "pdf"]),
        st.one_of(
            near(jsonl.MAX_URL - len("https://arxiv.org/")).map(
                lambda n: "https://arxiv.org/" + "p" * n
            ),
            spiked_text.map("https://arxiv.org/{}".format),
        ),
    ),
    st.tuples(
        st.just("id"),
        st.one_of(
            st.builds(
                "2699.{:05d}v{}".format,
                st.integers(0, 99_999),
                st.one_of(near(jsonl.MAX_VERSION), st.integers(0, 10**25)),
            ),
            near(jsonl.MAX_ID - len("/0309136")).map(lambda n: "a" * n + "/0309136"),
        ),
    ),
    st.tuples(
        st.just("date"),
        st.one_of(
            st.dates(),
            st.sampled_from([date(1899, 12, 31), date(1900, 1, 1), date(2999, 12, 31)]),
        ).map(date.isoformat),
    ),
)


@st.composite
def edge_line(draw: st.DrawFn) -> bytes:
    data = json.loads(draw(st.sampled_from(REAL)))
    data["id"] = f"2699.{draw(st.integers(0, 99_999)):05d}"
    data.update(draw(st.lists(edge_change, min_size=1, max_size=2)))
    return json.dumps(data).encode()


@st.composite
def record_line(draw: st.DrawFn) -> bytes:
    """A near-valid record as one line, now and then written as UTF-8 that is not."""
    data = draw(record)
    if draw(st.booleans()):
        return json.dumps(data).encode()
    return json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass")


junk_line = st.one_of(
    st.binary(max_size=300).map(lambda raw: raw.replace(b"\n", b" ")),
    any_text.map(lambda t: t.replace("\n", " ").encode("utf-8", "surrogatepass")),
    st.sampled_from([b"[" * 5000, b'{"id": ' + b"9" * 5000 + b"}", b"\xef\xbb\xbf{}", b"null"]),
    record_line(),
)


# Junk lines with where they go among the real ones (after the first): drawn apart
# from the real lines, so that a failing example prints short.
junk_lines = st.lists(st.tuples(st.integers(1, len(REAL)), junk_line), max_size=12)
stored_lines = st.lists(
    st.tuples(st.integers(1, len(REAL)), st.one_of(edge_line(), record_line())), max_size=12
)


def listing(junk: list[tuple[int, bytes]]) -> list[bytes]:
    """The real lines in order, with the junk inserted among them."""
    lines = list(REAL)
    for position, line in junk:
        lines.insert(position, line)
    return lines


def _outcomes(line: bytes) -> int:
    """How many records or problems a line gives: none when blank, else one."""
    try:
        return 1 if line.decode("utf-8").strip() else 0
    except UnicodeDecodeError:
        return 1


def _write(path: Path, lines: list[bytes], *, gzipped: bool) -> None:
    payload = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(payload) if gzipped else payload)


@SETTINGS
@given(junk=junk_lines, gzipped=st.booleans())
def test_reading_never_raises_and_keeps_every_good_line(
    tmp_path_factory: pytest.TempPathFactory, junk: list[tuple[int, bytes]], gzipped: bool
) -> None:
    lines = listing(junk)
    path = tmp_path_factory.mktemp("listing") / ("2026-05-27.jsonl" + (".gz" if gzipped else ""))
    _write(path, lines, gzipped=gzipped)
    report = read_jsonl(path, today=TODAY)
    kept = [r.external_id for r in report.records]
    assert [i for i in kept if i in REAL_IDS] == REAL_IDS
    assert len(report.records) + len(report.problems) == sum(map(_outcomes, lines))
    for problem in report.problems:
        assert problem.location.startswith(f"{path}:")
        assert len(problem.reason) < 200


FOUR_THOUSAND_GZIPPED = gzip.compress(
    b"".join(b'{"id": "2605.%05d", "title": "Paper %d"}\n' % (i, i) for i in range(4000))
)


@SETTINGS
@given(cut=st.integers(0, 100_000))
def test_a_gzip_cut_anywhere_keeps_the_lines_before_the_cut(
    tmp_path_factory: pytest.TempPathFactory, cut: int
) -> None:
    compressed = FOUR_THOUSAND_GZIPPED
    cut = cut % (len(compressed) + 1)
    path = tmp_path_factory.mktemp("cut") / "2026-05-27.jsonl.gz"
    path.write_bytes(compressed[:cut])
    report = read_jsonl(path, today=TODAY)
    kept = [r.external_id for r in report.records]
    assert kept == [f"2605.{i:05d}" for i in range(len(kept))]
    if cut == len(compressed):
        assert (len(kept), report.problems) == (4000, [])
    elif cut:
        [problem] = report.problems
        assert problem.location == str(path)
        assert problem.reason.startswith(("truncated after line", "cannot read file"))


@SETTINGS
@given(data=record)
def test_parse_record_accepts_or_says_why_briefly(data: dict[str, Any]) -> None:
    reason = ""
    try:
        parse_record(data, default_date=TODAY)
    except RecordError as exc:
        reason = str(exc)
    assert len(reason) < 200


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(junk=stored_lines)
def test_whatever_is_accepted_is_stored_on_either_database(
    sessions: SessionFactory, tmp_path: Path, junk: list[tuple[int, bytes]]
) -> None:
    lines = listing(junk)
    path = tmp_path / "2026-05-27.jsonl"
    _write(path, lines, gzipped=False)
    try:
        with sessions.begin() as session:
            summary = ingest_file(session, path, today=TODAY)
        with sessions() as session:
            stored = set(session.scalars(select(Paper.external_id)))
        assert set(REAL_IDS) <= stored
        assert summary.new == len(stored)
        accepted = sum(map(_outcomes, lines)) - summary.skipped
        assert len(stored) <= accepted
    finally:
        with sessions.begin() as session:
            session.execute(delete(Paper))
