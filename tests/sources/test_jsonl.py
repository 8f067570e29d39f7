from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path

import pytest

from newsletter.papers.sources.jsonl import RecordError, date_from_name, parse_record, read_jsonl

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


# --- one bad line costs only itself (issue 12, item 5) -----------------------------------


def _listing(count: int) -> list[bytes]:
    return [json.dumps({**GOOD, "id": f"2605.{i:05d}"}).encode() for i in range(count)]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_invalid_utf8_costs_only_its_line(tmp_path: Path, suffix: str) -> None:
    lines = _listing(300)
    lines[4] = lines[4].replace(b"Compatible", b"Compat\xffible")
    path = tmp_path / f"2026-05-04{suffix}"
    payload = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(payload) if suffix.endswith(".gz") else payload)
    report = read_jsonl(path, today=TODAY)
    assert len(report.records) == 299
    assert "2605.00004" not in {r.external_id for r in report.records}
    column = lines[4].index(b"\xff") + 1
    assert [str(p) for p in report.problems] == [
        f"{path}:5: not UTF-8 (byte 0xff at column {column})"
    ]


def test_a_byte_order_mark_is_no_problem(tmp_path: Path) -> None:
    path = tmp_path / "2026-05-04.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(_listing(2)) + b"\r\n")
    report = read_jsonl(path, today=TODAY)
    assert report.problems == []
    assert len(report.records) == 2


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"[" * 100_000, "not JSON (nested too deeply)"),
        (b'{"id": ' + b"7" * 5000 + b"}", "not JSON (Exceeds the limit"),
        (b'{"id": NaN, "title": Infinity}', "'id' must be a string, not float"),
        (b'"\xed\xa0\x80"', "not UTF-8 (byte 0xed at column 2)"),
    ],
)
def test_lines_json_cannot_take_cost_only_themselves(
    tmp_path: Path, line: bytes, reason: str
) -> None:
    path = tmp_path / "2026-05-04.jsonl"
    lines = _listing(3)
    path.write_bytes(b"\n".join([lines[0], line, *lines[1:]]) + b"\n")
    report = read_jsonl(path, today=TODAY)
    assert [r.external_id for r in report.records] == ["2605.00000", "2605.00001", "2605.00002"]
    assert len(report.problems) == 1
    assert str(report.problems[0]).startswith(f"{path}:2: {reason}")
    assert len(str(report.problems[0])) < len(str(path)) + 200


def test_a_line_too_long_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    import tracemalloc

    path = tmp_path / "2026-05-04.jsonl"
    good = _listing(2)
    with path.open("wb") as handle:
        handle.write(good[0] + b'\n{"id": "2605.99999", "title": "')
        for _ in range(60):
            handle.write(b"x" * 1_000_000)
        handle.write(b'"}\n' + good[1] + b"\n")
    tracemalloc.start()
    try:
        report = read_jsonl(path, today=TODAY)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r.external_id for r in report.records] == ["2605.00000", "2605.00001"]
    assert [str(p) for p in report.problems] == [
        f"{path}:2: line longer than 2097152 bytes (2 MiB)"
    ]
    assert peak < 16_000_000


def test_truncated_gzip_keeps_the_lines_before_the_cut(tmp_path: Path) -> None:
    payload = b"\n".join(_listing(2000)) + b"\n"
    path = tmp_path / "2026-05-06.jsonl.gz"
    path.write_bytes(gzip.compress(payload)[: len(gzip.compress(payload)) // 2])
    report = read_jsonl(path, today=TODAY)
    kept = [r.external_id for r in report.records]
    assert len(kept) > 500
    assert kept == [f"2605.{i:05d}" for i in range(len(kept))]
    [problem] = report.problems
    assert problem.location == str(path)
    assert problem.reason.startswith(f"truncated after line {len(kept)}: cannot read file further")


def test_not_gzip_at_all_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "2026-05-06.jsonl.gz"
    path.write_bytes(b"\n".join(_listing(3)))
    report = read_jsonl(path, today=TODAY)
    assert report.records == []
    assert [p.location for p in report.problems] == [str(path)]
    assert report.problems[0].reason.startswith("cannot read file: Not a gzipped file")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": "2605.00134v99999999999999999999"}, "version must be 1 to 32767"),
        ({"id": "2605.00134v40000"}, "version must be 1 to 32767"),
        ({"id": "2605.00134v32768"}, "version must be 1 to 32767"),
        ({"id": "2605.00134v0"}, "version must be 1 to 32767"),
        ({"id": "2605.00134v" + "9" * 5000}, "'id' is longer than 64 characters"),
        ({"id": "٢٦٠٥.٠٠١٣٤"}, "'id' '٢٦٠٥.٠٠١٣٤' is not an arXiv identifier"),
        ({"id": "a" * 70 + "/0309136"}, "'id' is longer than 64 characters"),
        ({"id": "x" * 1_000_000}, "'id' is longer than 64 characters"),
        ({"title": "A\x00B"}, "'title' contains U+0000, a control character"),
        ({"title": "A\ud800B"}, "'title' contains U+D800, a lone surrogate"),
        ({"summary": "bell \x07"}, "'summary' contains U+0007, a control character"),
        ({"authors": ["Ada", "Al\x00an"]}, "'authors' contains U+0000"),
        ({"categories": ["cs.GT\udfff"]}, "'categories' contains U+DFFF"),
        ({"comment": "\x00"}, "'comment' contains U+0000"),
        ({"title": "t" * 1001}, "'title' is longer than 1000 characters"),
        ({"summary": "s" * 100_001}, "'summary' is longer than 100000 characters"),
        ({"comment": "c" * 10_001}, "'comment' is longer than 10000 characters"),
        ({"authors": ["a" * 501]}, "an entry of 'authors' is longer than 500 characters"),
        ({"authors": ["A"] * 10_001}, "'authors' has more than 10000 entries"),
        ({"categories": ["cs.AI"] * 101}, "'categories' has more than 100 entries"),
        ({"categories": ["c" * 65]}, "an entry of 'categories' is longer than 64 characters"),
        ({"pdf": "https://arxiv.org/" + "p" * 500}, "'pdf' is longer than 500 characters"),
        ({"abs": "https://arxiv.org/abs/ 2605"}, "'abs' must be an http(s) URL"),
        ({"pdf": "https://arxiv.org/\x00"}, "'pdf' must be an http(s) URL"),
        ({"pdf": 42}, "'pdf' must be an http(s) URL"),
        ({"date": "0001-01-01"}, "'date' 0001-01-01 is not between 1900-01-01 and 2999-12-31"),
        ({"date": "9999-12-31"}, "'date' 9999-12-31 is not between 1900-01-01 and 2999-12-31"),
        ({"date": ["2026-05-03"]}, "'date' must be a string, not list"),
        ({"date": 20260503}, "'date' must be a string, not int"),
        ({"title": "t" * 1_000_000, "id": "y" * 1_000_000}, "'id' is longer"),
    ],
)
def test_every_field_is_checked_against_what_can_be_stored(
    change: dict[str, object], reason: str
) -> None:
    with pytest.raises(RecordError) as raised:
        parse_record({**GOOD, **change}, default_date=TODAY)
    assert str(raised.value).startswith(reason)
    assert len(str(raised.value)) < 120


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"id": "2605.00134v32767"}, 32767),
        ({"id": "2605.00134v1"}, 1),
        ({"id": "2605.00134"}, None),
    ],
)
def test_versions_up_to_the_column_limit_are_kept(
    change: dict[str, object], expected: int | None
) -> None:
    assert parse_record({**GOOD, **change}, default_date=TODAY).version == expected


def test_limits_are_inclusive() -> None:
    record = parse_record(
        {
            **GOOD,
            "title": "t" * 1000,
            "summary": "s" * 100_000,
            "comment": "c" * 10_000,
            "authors": ["a" * 500] * 10_000,
            "categories": ["cs.AI"] * 100,
            "pdf": "https://arxiv.org/" + "p" * 482,
            "date": "1900-01-01",
        },
        default_date=TODAY,
    )
    assert len(record.title) == 1000
    assert record.listed_on == date(1900, 1, 1)
