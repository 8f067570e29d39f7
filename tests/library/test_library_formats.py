"""Reading library files: every format, every bad line reported, nothing else lost."""

from __future__ import annotations

import json

import pytest

from newsletter.subscribers.library_formats import (
    MAX_BYTES,
    MAX_ENTRIES,
    MAX_PROBLEMS,
    LibraryError,
    arxiv_id_of,
    doi_of,
    normalise_title,
    parse_library,
)


def test_bibtex_entries_carry_ids_text_and_their_line() -> None:
    parsed = parse_library(
        rb"""% exported by Zotero
@article{vaswani2017,
  title = {Attention Is {All} You Need},
  author = {Vaswani, Ashish and Shazeer, Noam},
  journal = {arXiv preprint arXiv:1706.03762},
  abstract = {The dominant sequence transduction models.}
}

@inproceedings{erdos,
  title = {On random graphs {\"U}ber alles},
  author = {Erd{\H{o}}s, Paul},
  doi = {https://doi.org/10.1145/ABC.123}
}
""",
        name="mine.bib",
    )
    assert parsed.format == "bibtex"
    assert parsed.problems == []
    first, second = parsed.entries
    assert (first.where, first.label, first.arxiv_id) == (
        "line 2",
        "@article{vaswani2017}",
        "1706.03762",
    )
    assert first.title == "Attention Is All You Need"
    assert first.authors == ("Vaswani, Ashish", "Shazeer, Noam")
    assert first.abstract.startswith("The dominant")
    assert (second.where, second.doi, second.arxiv_id) == ("line 9", "10.1145/abc.123", None)
    assert second.title == "On random graphs Über alles"
    assert second.authors == ("Erdős, Paul",)


def test_a_broken_bibtex_entry_is_reported_and_the_others_kept() -> None:
    parsed = parse_library(
        b"@article{a, title={One}}\n@article{b, title={Two\n@article{c, title={Three}}\n"
        b"@article{a, title={Again}}\n"
    )
    assert [e.title for e in parsed.entries] == ["One", "Three"]
    reasons = [(p.where, p.reason) for p in parsed.problems]
    assert reasons[0][0] == "line 2"
    assert reasons[0][1].startswith("not valid BibTeX")
    assert reasons[1] == ("line 4", "not valid BibTeX: the citation key 'a' appears twice")


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"Dear editor, please find my CV attached.", "cv.bib", "cv.bib is not BibTeX"),
        (b"Dear editor,\nplease find my CV attached.", "cv.txt", "not BibTeX, RIS, CSL-JSON"),
        (b"\xff\xd8\xff\xe0 JFIF", "photo.bib", "not a text file (not UTF-8)"),
        (b"PK\x03\x04\x00\x00", "library.zip", "not a text file"),
        (b"   \n\n", "empty.txt", "the file holds no papers"),
        (b"[{'title': 1}]", "x.json", "not valid JSON (line 1"),
        (b"[" * 100_000 + b"]" * 100_000, "deep.json", "not CSL-JSON: nested too deeply"),
        (b"x" * (MAX_BYTES + 1), "huge.bib", "at most 5 MB (2,000 entries): split it"),
    ],
)
def test_a_file_that_is_not_a_library_is_refused_whole(
    data: bytes, name: str, message: str
) -> None:
    with pytest.raises(LibraryError, match=None) as raised:
        parse_library(data, name=name)
    assert message in str(raised.value)


def test_more_entries_than_the_limit_are_reported_from_the_first_one_over() -> None:
    lines = "\n".join(f"2601.{n:05d}" for n in range(MAX_ENTRIES + 5))
    parsed = parse_library(lines.encode())
    assert len(parsed.entries) == MAX_ENTRIES
    (problem,) = parsed.problems
    assert problem.where == f"line {MAX_ENTRIES + 1}"
    assert "over the limit of 2,000 entries" in problem.reason
    assert "the 4 after it were not imported" in problem.reason


def test_a_doi_list_with_junk_lines_reports_each_by_line() -> None:
    parsed = parse_library(
        b"10.1038/nature14539\n"
        b"see also:\n"
        b"https://doi.org/10.1145/3366423.3380211\n"
        b"doi:10.48550/arXiv.2301.00001\n"
        b"\n"
        b"# a comment\n"
        b"arxiv.org/abs/nothing\n"
        b"http://arxiv.org/pdf/2301.00002v2.pdf\n"
    )
    assert [(e.where, e.doi, e.arxiv_id) for e in parsed.entries] == [
        ("line 1", "10.1038/nature14539", None),
        ("line 3", "10.1145/3366423.3380211", None),
        ("line 4", None, "2301.00001"),
        ("line 8", None, "2301.00002"),
    ]
    assert [(p.where, p.label) for p in parsed.problems] == [
        ("line 2", "see also:"),
        ("line 7", "arxiv.org/abs/nothing"),
    ]


def test_ris_records_and_their_problems() -> None:
    parsed = parse_library(
        b"TY  - JOUR\n"
        b"TI  - Deep learning\n"
        b"AU  - LeCun, Yann\n"
        b"AU  - Bengio, Yoshua\n"
        b"AB  - Deep learning allows\n"
        b"  computational models.\n"
        b"DO  - 10.1038/nature14539\n"
        b"ER  - \n"
        b"garbage between records\n"
        b"TY  - JOUR\n"
        b"UR  - https://arxiv.org/abs/1706.03762\n"
    )
    assert parsed.format == "ris"
    first, second = parsed.entries
    assert (first.where, first.title, first.doi) == (
        "line 1",
        "Deep learning",
        "10.1038/nature14539",
    )
    assert first.abstract == "Deep learning allows computational models."
    assert first.authors == ("LeCun, Yann", "Bengio, Yoshua")
    assert (second.where, second.arxiv_id) == ("line 10", "1706.03762")
    assert [(p.where, p.reason) for p in parsed.problems] == [
        ("line 9", "not a RIS line (TAG  - value)"),
        ("line 10", "record without ER line"),
    ]


def test_csl_json_as_zotero_exports_it() -> None:
    items = [
        {
            "id": "http://zotero.org/users/1/items/ABC",
            "type": "article",
            "title": "Attention is all you need",
            "author": [{"family": "Vaswani", "given": "Ashish"}, {"literal": "Google Brain"}],
            "number": "arXiv:1706.03762",
            "DOI": "10.48550/arXiv.1706.03762",
        },
        "not an item",
        {"title": "Plain", "abstract": "Text."},
    ]
    parsed = parse_library(json.dumps(items).encode())
    assert parsed.format == "csl-json"
    assert [(e.where, e.arxiv_id, e.doi) for e in parsed.entries] == [
        ("entry 1", "1706.03762", None),  # an arXiv DOI says only the arXiv id
        ("entry 3", None, None),
    ]
    assert parsed.entries[0].authors == ("Ashish Vaswani", "Google Brain")
    assert [(p.where, p.reason) for p in parsed.problems] == [
        ("entry 2", "not a CSL-JSON item (an object)")
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1706.03762", "1706.03762"),
        ("1706.03762v7", "1706.03762"),
        ("arXiv:2301.12345", "2301.12345"),
        ("https://arxiv.org/abs/hep-th/9901001v2", "hep-th/9901001"),
        ("https://export.arxiv.org/pdf/2301.12345.pdf", "2301.12345"),
        ("10.48550/ARXIV.2301.12345", "2301.12345"),
        ("2301.123", None),
        ("2613.00001", None),  # no 13th month
        ("https://example.org/abs/2301.12345", None),
    ],
)
def test_arxiv_ids(text: str, expected: str | None) -> None:
    assert arxiv_id_of(text) == expected


def test_dois_and_titles_normalise() -> None:
    assert doi_of("https://dx.doi.org/10.1000/ABC.") == "10.1000/abc"
    assert doi_of("10.1/short") is None
    assert normalise_title("Über  {Graphs}: a Study!") == normalise_title("uber graphs a study")


def test_a_flood_of_bad_lines_stops_the_reading_and_keeps_the_good_entries() -> None:
    parsed = parse_library(b"2401.01234\n" + b"x\n" * (MAX_PROBLEMS + 500) + b"2401.05678\n")
    assert [e.arxiv_id for e in parsed.entries] == ["2401.01234"]
    assert len(parsed.problems) == MAX_PROBLEMS + 1
    last = parsed.problems[-1]
    assert last.where == f"line {MAX_PROBLEMS + 1}"
    assert "the file was not read past this one" in last.reason


def test_only_as_many_bibtex_blocks_as_can_be_entries_are_parsed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocks = MAX_ENTRIES + 500
    parsed = parse_library(b"@article{k, title={Kept}}\n" + b"@a{\n" * (blocks + 1000))
    assert [e.title for e in parsed.entries] == ["Kept"]
    # blocks past the limit were never handed to bibtexparser
    assert len(parsed.problems) == blocks - 1 + 1
    assert parsed.problems[-1].where == f"line {blocks + 1}"
    assert "the file was not read past line" in parsed.problems[-1].reason
    assert not [r for r in caplog.records if r.name.startswith("bibtexparser")]


def test_a_ris_value_wrapped_over_many_lines_is_joined_once() -> None:
    lines = b"".join(b"  part %d\n" % n for n in range(20_000))
    parsed = parse_library(b"TY  - JOUR\nTI  - Long\nAB  - start\n" + lines + b"ER  - \n")
    (entry,) = parsed.entries
    assert entry.abstract.startswith("start part 0 part 1 part 2 ")
    assert len(entry.abstract) == 20_000  # cut to the abstract limit, after the join


def test_a_csl_json_item_with_a_bad_author_is_reported_and_the_others_kept() -> None:
    items = [
        {"title": "x", "author": 5},
        {"title": "Kept", "author": ["Ada Lovelace", {"family": "Hopper"}]},
        {"title": "y", "author": [["nested"]]},
    ]
    parsed = parse_library(json.dumps(items).encode())
    assert [(e.title, e.authors) for e in parsed.entries] == [("Kept", ("Ada Lovelace", "Hopper"))]
    assert [(p.where, p.label, p.reason) for p in parsed.problems] == [
        ("entry 1", "x", "its author is not a list of names"),
        ("entry 3", "y", "its author is not a list of names"),
    ]
