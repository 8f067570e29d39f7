"""Reading a reader's library: BibTeX, RIS, CSL-JSON (as Zotero exports them) or a plain
list of arXiv ids, arXiv URLs and DOIs, one per line.

Pure: bytes in, entries and per-line problems out; nothing is looked up here. Each
entry keeps the line (or, for CSL-JSON, the position) it came from, so a report can say
which line was not imported and why, and one bad entry never loses the others.

RIS is read by the small parser below rather than a library: the one maintained RIS
reader (rispy) reports neither lines nor the record a bad tag belongs to, and RIS is a
line format of two-letter tags that takes a page to read.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from bibtexparser.entrypoint import parse_string

from newsletter.errors import NewsletterError
from newsletter.mail.latex import latex_weight, readable

MAX_BYTES = 5 * 1024 * 1024
MAX_ENTRIES = 2000
# Lines (or entries) that are not papers: past this many the rest of the file is not
# read, and only the first REPORTED of them are kept in the report. BibTeX blocks past
# MAX_ENTRIES + _BLOCK_MARGIN (comments, @string, broken ones) are not parsed at all.
MAX_PROBLEMS = 5000
REPORTED_PROBLEMS = 200
_BLOCK_MARGIN = 500
_TITLE_LIMIT = 1000
_ABSTRACT_LIMIT = 20_000

_NEW_ID = r"\d{2}(?:0[1-9]|1[0-2])\.\d{4,5}"  # YYMM.NNNNN: a month 01-12
_OLD_ID = r"[a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7}"
ARXIV_ID = re.compile(rf"^(?:arxiv:)?({_NEW_ID}|{_OLD_ID})(?:v\d+)?$", re.IGNORECASE)
_ARXIV_URL = re.compile(
    rf"^https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf|html)/({_NEW_ID}|{_OLD_ID})"
    r"(?:v\d+)?(?:\.pdf)?/?(?:[?#].*)?$",
    re.IGNORECASE,
)
_ARXIV_IN_TEXT = re.compile(rf"arxiv[:./\s]*(?:abs/|pdf/)?({_NEW_ID}|{_OLD_ID})", re.IGNORECASE)
_DOI = re.compile(r"^(?:doi:\s*|https?://(?:dx\.)?doi\.org/)?(10\.\d{4,9}/\S+)$", re.IGNORECASE)
_ARXIV_DOI = re.compile(rf"^10\.48550/arxiv\.({_NEW_ID}|{_OLD_ID})$", re.IGNORECASE)
_BIBTEX_START = re.compile(r"^\s*@\s*[a-zA-Z]+\s*[{(]", re.MULTILINE)
_RIS_TAG = re.compile(r"^([A-Z][A-Z0-9])  -(?: (.*))?$")
# Where bibtexparser starts a block: an @ at the start of a line, after blanks.
_BIBTEX_BLOCK = re.compile(r"^[ \t]*@", re.MULTILINE)

# LaTeX in the fields read (title, author, abstract) is decoded by ``readable``, which
# hands only the LaTeX pieces to pylatexenc: bibtexparser's LatexDecodingMiddleware
# decoded every field, prose and all, at ~11 ms per KB (a 1 MB export took 11 s, a
# 5 MB one ten minutes, inside a web request). Past this many LaTeX marks (\ and $)
# in one file, the rest of its markup is dropped by a plain rule, so a file of
# nothing but macros costs no more than a real library.
_LATEX_MARKS = 5_000  # arXiv abstracts hold about one per paper: 2,000 in 2,000 entries
# And past this many characters of LaTeX handed to the parser (it costs ~8 ms per KB of
# formula): one mark can open a long formula, so counting marks alone let a 3.7 MB file
# of long formulas cost 28 s. Real abstracts hold a few dozen characters of it each.
_LATEX_CHARS = 100_000
_MARKS = re.compile(r"[\\$]")
_PLAIN_MACRO = re.compile(r"\\(?:[A-Za-z]+\*?|.)")
_UNESCAPED_BRACE = re.compile(r"(?<!\\)[{}]")

# bibtexparser logs a multi-line warning per block it cannot read: those blocks are in
# the reader's report, and one upload must not flood the log with them.
logging.getLogger("bibtexparser").setLevel(logging.ERROR)


class LibraryError(NewsletterError):
    """The whole file cannot be read as a library (too large, not text, no format)."""


@dataclass(frozen=True)
class LibraryEntry:
    """One paper of a library: ids and/or its own title and abstract."""

    where: str  # "line 12" (or "entry 3" in CSL-JSON): what a report points at
    label: str  # how the report names it: a citation key, an id, a title
    arxiv_id: str | None = None
    doi: str | None = None
    title: str = ""
    abstract: str = ""
    authors: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "label": self.label,
            "arxiv_id": self.arxiv_id,
            "doi": self.doi,
            "title": self.title,
            "abstract": self.abstract,
            "authors": list(self.authors),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LibraryEntry:
        return cls(
            where=raw["where"],
            label=raw["label"],
            arxiv_id=raw.get("arxiv_id"),
            doi=raw.get("doi"),
            title=raw.get("title") or "",
            abstract=raw.get("abstract") or "",
            authors=tuple(raw.get("authors") or ()),
        )


@dataclass(frozen=True)
class EntryProblem:
    """An entry (or line) that was not imported, and why."""

    where: str
    label: str
    reason: str


@dataclass
class ParsedLibrary:
    format: str  # bibtex | ris | csl-json | list
    entries: list[LibraryEntry] = field(default_factory=list)
    problems: list[EntryProblem] = field(default_factory=list)
    # Entries past MAX_ENTRIES are counted, not kept: the first of them, and how many.
    first_over: LibraryEntry | None = None
    over: int = 0

    def add(self, entry: LibraryEntry) -> None:
        """Keep ``entry``, or only count it once MAX_ENTRIES are kept."""
        if len(self.entries) < MAX_ENTRIES:
            self.entries.append(entry)
        else:
            self.first_over = self.first_over or entry
            self.over += 1

    def problem(self, where: str, label: str, reason: str) -> bool:
        """Report a line that is not a paper; False once there are too many to go on
        (the last problem then says the rest of the file was not read)."""
        self.problems.append(EntryProblem(where, label, reason))
        if len(self.problems) < MAX_PROBLEMS:
            return True
        self.problems.append(
            EntryProblem(
                where,
                "",
                f"{MAX_PROBLEMS:,} lines or entries were not papers: the file was not read "
                "past this one (is it a library?)",
            )
        )
        return False


def normalise_title(title: str) -> str:
    """The key titles are matched by: accents, case, punctuation and spacing ignored."""
    decomposed = unicodedata.normalize("NFKD", title)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", plain).split())[:300]


def arxiv_id_of(text: str) -> str | None:
    """The arXiv id (no version) in an id, an arXiv URL, ``arXiv:ID`` or an arXiv DOI."""
    text = text.strip()
    for pattern in (ARXIV_ID, _ARXIV_URL, _ARXIV_DOI):
        found = pattern.match(text)
        if found:
            return found.group(1)
    doi = doi_of(text)
    if doi:
        found = _ARXIV_DOI.match(doi)
        if found:
            return found.group(1)
    return None


def doi_of(text: str) -> str | None:
    """The DOI (lower case, as DOIs compare) in a bare DOI, ``doi:...`` or a doi.org URL."""
    found = _DOI.match(text.strip())
    return found.group(1).rstrip(".,;").lower() if found else None


def _clean(text: str, limit: int) -> str:
    return " ".join(text.replace("{", "").replace("}", "").split())[:limit]


def _entry(
    where: str,
    label: str,
    *,
    ids: list[str],
    title: str,
    abstract: str,
    authors: tuple[str, ...],
) -> LibraryEntry:
    arxiv_id = doi = None
    for value in ids:
        value = value.strip()
        if not value:
            continue
        arxiv_id = arxiv_id or arxiv_id_of(value)
        if arxiv_id is None:
            found = _ARXIV_IN_TEXT.search(value)
            arxiv_id = found.group(1) if found else None
        doi = doi or doi_of(value)
    if doi and _ARXIV_DOI.match(doi):
        doi = None  # an arXiv DOI says no more than the arXiv id it names
    return LibraryEntry(
        where=where,
        label=label,
        arxiv_id=arxiv_id,
        doi=doi,
        title=_clean(title, _TITLE_LIMIT),
        abstract=_clean(abstract, _ABSTRACT_LIMIT),
        authors=tuple(a for a in (_clean(a, 200) for a in authors) if a)[:100],
    )


class _Decoder:
    """BibTeX field text as plain text, within the file's budget of LaTeX marks."""

    def __init__(self) -> None:
        self.marks = _LATEX_MARKS
        self.chars = _LATEX_CHARS

    def __call__(self, value: str) -> str:
        marks = len(_MARKS.findall(value))
        weight = latex_weight(value) if marks else 0
        if marks and self.marks >= marks and self.chars >= weight:
            self.marks -= marks
            self.chars -= weight
            value = readable(value)
        elif marks:  # over the budget: the markup goes, the words stay
            value = _PLAIN_MACRO.sub("", value).replace("$", "")
        # Braces only protect capitals from a BibTeX style: {BERT}, {\"U}ber.
        return " ".join(_UNESCAPED_BRACE.sub("", value).split())


def _bibtex(text: str) -> ParsedLibrary:
    parsed = ParsedLibrary("bibtex")
    # bibtexparser costs time and memory per block, even an empty one: read only as
    # many blocks as can be entries (and a margin for comments and @strings).
    starts = _BIBTEX_BLOCK.finditer(text)
    cut = next(itertools.islice(starts, MAX_ENTRIES + _BLOCK_MARGIN, None), None)
    if cut is not None:
        line = text.count("\n", 0, cut.start()) + 1
        text = text[: cut.start()]
    library = parse_string(text)
    decode = _Decoder()
    for block in library.failed_blocks:
        line_of = f"line {(block.start_line or 0) + 1}"
        if not parsed.problem(
            line_of, (block.raw or "").strip()[:60], f"not valid BibTeX: {_why(block)}"
        ):
            break
    if cut is not None:
        parsed.problems.append(
            EntryProblem(
                f"line {line}",
                "",
                f"more than {MAX_ENTRIES + _BLOCK_MARGIN:,} @ blocks: the file was not read "
                f"past line {line} (a library may hold {MAX_ENTRIES:,} entries)",
            )
        )
    for entry in library.entries:
        fields = {k.lower(): str(f.value) for k, f in entry.fields_dict.items()}
        authors = tuple(
            decode(a) for a in re.split(r"\s+and\s+", fields.get("author", "")) if a.strip()
        )
        prefix = fields.get("archiveprefix", "") + fields.get("eprinttype", "")
        eprint = fields.get("eprint", "")
        ids = [fields.get("arxivid", ""), fields.get("doi", ""), fields.get("url", "")]
        if eprint and ("arxiv" in prefix.lower() or ARXIV_ID.match(eprint)):
            ids.insert(0, eprint)
        ids += [fields.get("journal", ""), fields.get("note", "")]
        parsed.add(
            _entry(
                f"line {(entry.start_line or 0) + 1}",
                f"@{entry.entry_type}{{{entry.key}}}",
                ids=ids,
                title=decode(fields.get("title", "")[:_TITLE_LIMIT]),
                abstract=decode(fields.get("abstract", "")[:_ABSTRACT_LIMIT]),
                authors=authors,
            )
        )
    return parsed


def _why(block: Any) -> str:
    error = getattr(block, "error", None)
    name = type(block).__name__
    if name == "DuplicateBlockKeyBlock":
        return f"the citation key {getattr(block, 'key', '')!r} appears twice"
    message = str(error).strip() if error is not None else ""
    return message.splitlines()[0] if message else "unreadable entry (unbalanced braces?)"


def _ris(lines: list[str]) -> ParsedLibrary:
    parsed = ParsedLibrary("ris")
    # tag -> values, each value the parts of its wrapped lines (joined once, at the end:
    # appending to a string per line would copy it each time)
    record: dict[str, list[list[str]]] | None = None
    start = 0
    last_tag = ""

    def close(parts: dict[str, list[list[str]]]) -> None:
        record = {tag: [" ".join(p) for p in values] for tag, values in parts.items()}
        title = (record.get("TI") or record.get("T1") or record.get("CT") or [""])[0]
        ids = record.get("DO", []) + record.get("UR", []) + record.get("L1", [])
        ids += record.get("M3", []) + record.get("JO", []) + record.get("T2", [])
        ids += record.get("AN", []) + record.get("N1", [])
        parsed.add(
            _entry(
                f"line {start}",
                title[:60] or f"record at line {start}",
                ids=ids,
                title=title,
                abstract=" ".join(record.get("AB", []) or record.get("N2", [])),
                authors=tuple(record.get("AU", []) + record.get("A1", [])),
            )
        )

    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip()
        if not line.strip():
            continue
        found = _RIS_TAG.match(line)
        going = True
        if found is None:
            if record is not None and last_tag:
                record[last_tag][-1].append(line.strip())  # a wrapped value
            else:
                going = parsed.problem(f"line {number}", line[:60], "not a RIS line (TAG  - value)")
        else:
            tag, value = found.group(1), (found.group(2) or "").strip()
            if tag == "TY":
                if record is not None:
                    going = parsed.problem(
                        f"line {start}", "", "record without ER (end of record) line"
                    )
                    close(record)
                record, start, last_tag = {}, number, ""
            elif tag == "ER":
                if record is None:
                    going = parsed.problem(f"line {number}", line[:60], "ER without TY")
                else:
                    close(record)
                record, last_tag = None, ""
            elif record is None:
                going = parsed.problem(
                    f"line {number}", line[:60], "a tag outside a record (no TY line)"
                )
            else:
                record.setdefault(tag, []).append([value])
                last_tag = tag
        if not going:
            return parsed
    if record is not None:
        parsed.problems.append(EntryProblem(f"line {start}", "", "record without ER line"))
        close(record)
    return parsed


def _csl_name(author: Any) -> str:
    if isinstance(author, str):
        return author
    if not isinstance(author, dict):
        return ""
    if author.get("literal"):
        return str(author["literal"])
    return " ".join(str(author.get(k, "")) for k in ("given", "family") if author.get(k))


def _csl_authors(item: dict[str, Any]) -> tuple[str, ...] | None:
    """The item's author names; None when ``author`` is not a list of names."""
    authors = item.get("author") or []
    if not isinstance(authors, list) or not all(isinstance(a, dict | str) for a in authors):
        return None
    return tuple(name for name in (_csl_name(a) for a in authors) if name)


def _csl_json(text: str) -> ParsedLibrary:
    parsed = ParsedLibrary("csl-json")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LibraryError(f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except (RecursionError, ValueError):  # nested past the parser's depth, huge numbers
        raise LibraryError("not CSL-JSON: nested too deeply (or a number too long)") from None
    items = data if isinstance(data, list) else [data]
    for number, item in enumerate(items, start=1):
        where = f"entry {number}"
        if not isinstance(item, dict):
            if not parsed.problem(where, "", "not a CSL-JSON item (an object)"):
                break
            continue
        authors = _csl_authors(item)
        if authors is None:
            label = str(item.get("title", ""))[:60]
            if not parsed.problem(where, label, "its author is not a list of names"):
                break
            continue
        keys = ("DOI", "URL", "number", "arxiv", "archive_location", "note", "id")
        ids = [str(item.get(k, "")) for k in keys]
        title = str(item.get("title", ""))
        parsed.add(
            _entry(
                where,
                title[:60] or str(item.get("id", ""))[:60],
                ids=ids,
                title=title,
                abstract=str(item.get("abstract", "")),
                authors=authors,
            )
        )
    return parsed


def _id_list(lines: list[str]) -> ParsedLibrary:
    parsed = ParsedLibrary("list")
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        arxiv_id = arxiv_id_of(line)
        doi = None if arxiv_id else doi_of(line)
        where = f"line {number}"
        if arxiv_id is None and doi is None:
            if not parsed.problem(where, line[:60], "not an arXiv id, an arXiv URL or a DOI"):
                break
            continue
        parsed.add(LibraryEntry(where, line[:60], arxiv_id=arxiv_id, doi=doi))
    return parsed


def detect_format(text: str) -> str:
    """bibtex, ris, csl-json or list (the fallback: one id per line)."""
    head = text.lstrip("\ufeff \t\r\n")
    if head.startswith(("[", "{")):
        return "csl-json"
    if re.search(r"^TY  - ", text, re.MULTILINE):
        return "ris"
    if _BIBTEX_START.search(text):
        return "bibtex"
    return "list"


def parse_library(data: bytes, *, name: str = "") -> ParsedLibrary:
    """Every entry of a library file, and a problem per line or entry that is not one.

    Raises ``LibraryError`` when the whole file cannot be read: larger than
    ``MAX_BYTES``, not UTF-8 text, a ``.bib`` file with no BibTeX in it, or nothing
    in it that names a paper. Entries past ``MAX_ENTRIES`` are reported, not imported.
    """
    if len(data) > MAX_BYTES:
        raise LibraryError(
            f"the file is {len(data) / 1_048_576:.1f} MB; a library may be at most "
            f"{MAX_BYTES // 1_048_576} MB ({MAX_ENTRIES:,} entries): split it"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LibraryError(
            "not a text file (not UTF-8): give BibTeX, RIS, CSL-JSON or a list of ids"
        ) from None
    if "\x00" in text:
        raise LibraryError("not a text file: give BibTeX, RIS, CSL-JSON or a list of ids")
    kind = detect_format(text)
    if name.lower().endswith(".bib") and kind != "bibtex":
        raise LibraryError(f"{name} is not BibTeX: no @article{{...}} (or other) entry in it")
    if kind == "bibtex":
        parsed = _bibtex(text)
    elif kind == "ris":
        parsed = _ris(text.splitlines())
    elif kind == "csl-json":
        parsed = _csl_json(text)
    else:
        parsed = _id_list(text.splitlines())
        if not parsed.entries and parsed.problems:
            raise LibraryError(
                "this is not BibTeX, RIS, CSL-JSON or a list of arXiv ids / DOIs: "
                f"no line of it names a paper (line 1: {parsed.problems[0].label!r})"
            )
    if not parsed.entries and not parsed.problems:
        raise LibraryError("the file holds no papers (it is empty)")
    if parsed.first_over is not None:
        first = parsed.first_over
        parsed.problems.append(
            EntryProblem(
                first.where,
                first.label,
                f"over the limit of {MAX_ENTRIES:,} entries per library: this entry and the "
                f"{parsed.over - 1:,} after it were not imported",
            )
        )
    return parsed
