"""MIME assembly: multipart/alternative, encoded headers, no header injection."""

from __future__ import annotations

import binascii
import re
from dataclasses import replace
from datetime import UTC, date, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.mail import message as message_module
from newsletter.mail.message import MessageHeaders, build_message, message_id_for, one_line
from newsletter.mail.render import IssueView, PaperView, RenderedIssue, Renderer

UNSUBSCRIBE_URL = (
    "https://papers.example.org/unsubscribe/WzQyLDNd.aww-yg.6VWQjqhvtW3s92WkgnJsGvMat4s"
)
EXPECTED_HEADERS = {
    "list-unsubscribe",
    "list-unsubscribe-post",
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-id",
    "mime-version",
    "content-type",
}
HOSTILE = [
    "\r\nBcc: x@example.org",
    "\nX-Injected: 1",
    "\rBcc: x@example.org",
    "\r",
    "a\u2028b",
    "a\u2029b\x85c\x0bd\x0ce\x1cf",
    "\x00",
    "y" * 2000,
    "long words " * 200,
    "📚 New papers 🚀 for you ✨",
    "Jürgen Müller",
    '"Quoted" <evil@example.org>, other@example.org',
    "\r\n\r\n<html>body injection</html>",
    "--===============boundary==\r\nContent-Type: text/html",
]
HOSTILE_IDS = [
    "crlf-bcc",
    "lf-header",
    "cr-bcc",
    "cr",
    "u2028",
    "unicode-breaks",
    "nul",
    "2000-chars",
    "long-words",
    "emoji",
    "umlauts",
    "address-list",
    "body-injection",
    "boundary",
]
FIELDS = ["subject", "to_name", "list_name"]


@pytest.fixture(scope="module")
def rendered() -> RenderedIssue:
    papers = tuple(
        PaperView(
            title=f"Sparse attention für lange Dokumente {i} — 📚",
            url=f"https://arxiv.org/abs/2605.{27000 + i}",
            authors="Jürgen Müller, Zoë Ørsted, 王小明 et al.",
            categories="cs.CL",
            abstract="We study attention. " * 20,
            terms="attention, transformer",
            score=0.4,
        )
        for i in range(3)
    )
    view = IssueView(
        email="ada@example.com",
        list_name="Paper Newsletter",
        edition_label="Wednesday 27 May 2026",
        heading="3 new papers for you",
        interests_line="Picked for your interests: “graphs”",
        preheader=papers[0].title,
        papers=papers,
        manage_url="https://papers.example.org/manage/WzQyLDNd.aww-yg.Q_UreFVwNqfANIuvfVNM",
        unsubscribe_url=UNSUBSCRIBE_URL,
        view_url="https://papers.example.org/view/WzQyLDMsN10.aww-yg.ZfdMY0ARZ7HcaxY5MHpT",
    )
    return Renderer().render_issue(view)


@pytest.fixture(scope="module")
def small() -> RenderedIssue:
    """A short issue for the many header tests (building big bodies is slow)."""
    return RenderedIssue(
        subject="Paper Newsletter · Über 📚", html="<p>Grüße</p>\n", text="Grüße\n"
    )


def make_headers(**changes: object) -> MessageHeaders:
    headers = MessageHeaders(
        sender="Paper Newsletter <newsletter@example.org>",
        to_address="ada@example.com",
        to_name="Ada Lovelace",
        message_id=message_id_for(
            delivery_id=7, edition=date(2026, 5, 27), sender_address="newsletter@example.org"
        ),
        list_id="papers.example.org",
        list_name="Paper Newsletter",
        unsubscribe_url=UNSUBSCRIBE_URL,
        date=datetime(2026, 5, 27, 7, 0, tzinfo=UTC),
    )
    return replace(headers, **changes)


def parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def as_ascii_html(html: str) -> str:
    return html.encode("ascii", "xmlcharrefreplace").decode("ascii")


def header_block(raw: bytes) -> bytes:
    head, separator, _ = raw.partition(b"\r\n\r\n")
    assert separator
    return head


def header_names(raw: bytes) -> list[str]:
    """The names of the top-level header fields, read from the raw bytes."""
    names = []
    for line in header_block(raw).split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            continue  # a folded continuation line
        name, colon, _ = line.partition(b":")
        assert colon, line
        names.append(name.decode("ascii").lower())
    return names


def build_hostile(rendered: RenderedIssue, field: str, value: str) -> bytes:
    if field == "subject":
        return build_message(replace(rendered, subject=value), make_headers())
    return build_message(rendered, make_headers(**{field: value}))


# --- structure -----------------------------------------------------------------------


def test_build_message_returns_parseable_bytes(rendered: RenderedIssue) -> None:
    raw = build_message(rendered, make_headers())
    assert isinstance(raw, bytes)
    message = parse(raw)
    assert not message.defects
    assert message.get_content_type() == "multipart/alternative"


def test_parts_are_text_then_html_in_utf8(rendered: RenderedIssue) -> None:
    message = parse(build_message(rendered, make_headers()))
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert [p.get_content_charset() for p in parts] == ["utf-8", "utf-8"]
    assert all(not p.defects for p in parts)


def test_parts_decode_back_to_the_rendered_text_and_html(rendered: RenderedIssue) -> None:
    message = parse(build_message(rendered, make_headers()))
    text_part, html_part = message.iter_parts()
    text = text_part.get_content().replace("\r\n", "\n")
    html = html_part.get_content().replace("\r\n", "\n")
    assert text.rstrip("\n") == rendered.text.rstrip("\n")
    # Non-ASCII travels in the HTML part as character references, which mean the same.
    assert html.rstrip("\n") == as_ascii_html(rendered.html).rstrip("\n")
    assert not rendered.html.isascii()
    body = message.get_body(preferencelist=("html",))
    assert body is not None
    assert body.get_content_type() == "text/html"


def test_message_uses_crlf_line_ends_only(rendered: RenderedIssue) -> None:
    raw = build_message(rendered, make_headers())
    assert re.search(rb"(?<!\r)\n", raw) is None
    assert re.search(rb"\r(?!\n)", raw) is None


@pytest.mark.parametrize("value", HOSTILE, ids=HOSTILE_IDS)
def test_hostile_bodies_and_headers_still_give_crlf_line_ends_only(
    small: RenderedIssue, value: str
) -> None:
    """The delivery workers hand composed messages to the SMTP client as CRLF-clean
    (``crlf=True``, no normalising pass): whatever the rendered parts hold, that is true."""
    hostile = replace(small, subject=value, text=value + "\n" + value, html=value + "\r" + value)
    raw = build_message(hostile, make_headers(to_name=value, list_name=value))
    assert raw.count(b"\r\n") == raw.count(b"\n") == raw.count(b"\r")
    assert raw.endswith(b"\r\n")


def test_headers(rendered: RenderedIssue) -> None:
    raw = build_message(rendered, make_headers())
    message = parse(raw)
    assert set(header_names(raw)) == EXPECTED_HEADERS
    assert sorted(header_names(raw)) == sorted(set(header_names(raw)))  # each one once
    assert message["From"].addresses[0].display_name == "Paper Newsletter"
    assert message["From"].addresses[0].addr_spec == "newsletter@example.org"
    assert message["To"].addresses[0].display_name == "Ada Lovelace"
    assert message["To"].addresses[0].addr_spec == "ada@example.com"
    assert message["Subject"] == rendered.subject
    assert message["Date"].datetime == datetime(2026, 5, 27, 7, 0, tzinfo=UTC)
    assert message["Message-ID"] == "<issue-20260527-7@example.org>"
    assert message["List-Id"] == "Paper Newsletter <papers.example.org>"
    assert message["MIME-Version"] == "1.0"
    assert message["List-Unsubscribe"] == f"<{UNSUBSCRIBE_URL}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_list_unsubscribe_is_one_unencoded_line(rendered: RenderedIssue) -> None:
    raw = build_message(rendered, make_headers())
    lines = header_block(raw).split(b"\r\n")
    expected = b"List-Unsubscribe: <" + UNSUBSCRIBE_URL.encode("ascii") + b">"
    assert expected in lines
    index = lines.index(expected)
    assert not lines[index + 1].startswith((b" ", b"\t"))  # not folded
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines


def test_long_unsubscribe_url_stays_on_one_line(rendered: RenderedIssue) -> None:
    url = "https://papers.example.org/unsubscribe/" + "A" * (978 - 39)
    assert len(url) == 978
    raw = build_message(rendered, make_headers(unsubscribe_url=url))
    line = b"List-Unsubscribe: <" + url.encode("ascii") + b">"
    assert len(line) == 998
    assert line in header_block(raw).split(b"\r\n")
    assert parse(raw)["List-Unsubscribe"] == f"<{url}>"


def test_too_long_unsubscribe_url_is_refused(rendered: RenderedIssue) -> None:
    url = "https://papers.example.org/unsubscribe/" + "A" * 940
    with pytest.raises(ValueError, match="too long"):
        build_message(rendered, make_headers(unsubscribe_url=url))


@pytest.mark.parametrize(
    "url",
    [
        "https://papers.example.org/unsubscribe/a b",
        "https://papers.example.org/unsubscribe/a\r\nBcc: x@example.org",
        "https://papers.example.org/unsubscribe/a\nBcc: x@example.org",
        "https://papers.example.org/unsubscribe/a\r",
        "https://papers.example.org/unsubscribe/a\tb",
        "https://papers.example.org/unsubscribe/a\x00",
        "https://papers.example.org/unsubscribe/a\x7f",
        "https://papers.example.org/unsubscribe/ä",
        "https://papers.example.org/unsubscribe/a\u2028b",
        "https://papers.example.org/unsubscribe/a\u00a0b",
        "https://papers.example.org/unsubscribe/📚",
        # An angle bracket would end the <URL> early and smuggle in a second URI.
        "https://papers.example.org/unsubscribe/a>,<mailto:evil@example.org",
    ],
    ids=[
        "space",
        "crlf",
        "lf",
        "cr",
        "tab",
        "nul",
        "del",
        "umlaut",
        "u2028",
        "nbsp",
        "emoji",
        "angle-bracket",
    ],
)
def test_unsafe_unsubscribe_url_is_refused(rendered: RenderedIssue, url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        build_message(rendered, make_headers(unsubscribe_url=url))


# --- encoding of non-ASCII headers ------------------------------------------------------


def test_non_ascii_names_and_subject_are_rfc2047_encoded(rendered: RenderedIssue) -> None:
    subject = "Neue Artikel für Sie: Über Graphen — 📚"
    raw = build_message(
        replace(rendered, subject=subject),
        make_headers(sender="Jürgen Müller <news@example.org>", to_name="Zoë Ørsted"),
    )
    head = header_block(raw)
    assert head.isascii()
    assert b"=?utf-8?" in head.lower()
    message = parse(raw)
    assert message["Subject"] == subject
    assert message["From"].addresses[0].display_name == "Jürgen Müller"
    assert message["From"].addresses[0].addr_spec == "news@example.org"
    assert message["To"].addresses[0].display_name == "Zoë Ørsted"
    assert message["To"].addresses[0].addr_spec == "ada@example.com"


def test_non_ascii_list_name_is_encoded(rendered: RenderedIssue) -> None:
    raw = build_message(rendered, make_headers(list_name="Lettre des articles — été"))
    assert header_block(raw).isascii()
    assert parse(raw)["List-Id"] == "Lettre des articles — été <papers.example.org>"


def test_header_block_of_a_rendered_issue_is_ascii(rendered: RenderedIssue) -> None:
    assert not rendered.subject.isascii()  # the rendered titles have umlauts and emoji
    raw = build_message(rendered, make_headers(to_name="Jürgen Müller"))
    assert header_block(raw).isascii()


# --- header injection --------------------------------------------------------------------


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", HOSTILE, ids=HOSTILE_IDS)
def test_hostile_values_add_no_header(small: RenderedIssue, field: str, value: str) -> None:
    raw = build_hostile(small, field, value)
    names = header_names(raw)
    assert set(names) == EXPECTED_HEADERS
    assert len(names) == len(EXPECTED_HEADERS)
    message = parse(raw)
    assert message["Bcc"] is None
    assert message["X-Injected"] is None
    assert message["Content-Type"].content_type == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    for line in header_block(raw).split(b"\r\n"):
        assert not line.lower().startswith((b"bcc:", b"x-injected:", b"content-type: text"))


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", HOSTILE, ids=HOSTILE_IDS)
def test_hostile_values_round_trip_as_one_line(
    small: RenderedIssue, field: str, value: str
) -> None:
    message = parse(build_hostile(small, field, value))
    expected = one_line(value)
    if field == "subject":
        assert message["Subject"] == expected
    elif field == "to_name":
        (address,) = message["To"].addresses
        # Display names are cut at 200 characters (a To line must stay under 998 bytes).
        assert address.display_name == one_line(value, limit=200)
        assert address.addr_spec == "ada@example.com"
    else:
        assert str(message["List-Id"]).endswith("<papers.example.org>")
        assert str(message["List-Id"]).removesuffix("<papers.example.org>").strip() == expected


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", HOSTILE, ids=HOSTILE_IDS)
def test_no_line_is_longer_than_998_bytes(small: RenderedIssue, field: str, value: str) -> None:
    raw = build_hostile(small, field, value)
    longest = max(len(line) for line in raw.split(b"\r\n"))
    assert longest <= 998


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize(
    "value",
    ["\x00", "a\x01b", "\x1b[31mred", "a\x7fb", "x\x00" * 50],
    ids=["nul", "soh", "esc", "del", "many-nul"],
)
def test_header_block_has_no_control_characters(
    small: RenderedIssue, field: str, value: str
) -> None:
    head = header_block(build_hostile(small, field, value))
    assert re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", head.replace(b"\r\n", b"")) is None
    assert not parse(build_hostile(small, field, value))["To"].defects


def test_long_html_and_text_lines_are_encoded_within_998_bytes() -> None:
    rendered = RenderedIssue(
        subject="Long lines",
        html="<html><body>" + "<p>" + "ü" * 5000 + "</p>" + "x" * 5000 + "</body></html>",
        text="w" * 5000 + "\n" + "é " * 3000 + "\n",
    )
    raw = build_message(rendered, make_headers())
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    text_part, html_part = parse(raw).iter_parts()
    text = text_part.get_content().replace("\r\n", "\n")
    assert text.rstrip("\n") == rendered.text.rstrip("\n")
    assert html_part.get_content().replace("\r\n", "\n").rstrip("\n") == rendered.html


def test_sender_display_name_is_collapsed_to_one_line(rendered: RenderedIssue) -> None:
    raw = build_message(rendered, make_headers(sender="News\r\n Letter <news@example.org>"))
    assert set(header_names(raw)) == EXPECTED_HEADERS
    assert parse(raw)["From"].addresses[0].display_name == "News Letter"


# --- one_line and Message-ID -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a\r\nb", "a b"),
        ("  a \t b  ", "a b"),
        ("a\u2028b\u2029c\x85d", "a b c d"),
        ("\r\n", ""),
        ("plain", "plain"),
    ],
)
def test_one_line(value: str, expected: str) -> None:
    assert one_line(value) == expected


def test_message_id_is_deterministic() -> None:
    first = message_id_for(
        delivery_id=7, edition=date(2026, 5, 27), sender_address="news@example.org"
    )
    again = message_id_for(
        delivery_id=7, edition=date(2026, 5, 27), sender_address="news@example.org"
    )
    assert first == again


def test_message_id_differs_between_deliveries_and_editions() -> None:
    ids = {
        message_id_for(delivery_id=d, edition=e, sender_address="news@example.org")
        for d in (1, 2, 11, 12)
        for e in (date(2026, 5, 27), date(2026, 5, 28), date(2027, 5, 27))
    }
    assert len(ids) == 12


def test_message_id_uses_the_sender_domain() -> None:
    value = message_id_for(
        delivery_id=7, edition=date(2026, 5, 27), sender_address="news@papers.example.org"
    )
    assert re.fullmatch(r"<[^<>@\s]+@papers\.example\.org>", value)


@pytest.mark.parametrize("sender_address", ["", "news", "news@"])
def test_message_id_falls_back_to_localhost_without_a_domain(sender_address: str) -> None:
    value = message_id_for(delivery_id=7, edition=date(2026, 5, 27), sender_address=sender_address)
    assert value == "<issue-20260527-7@localhost>"


def test_message_id_header_is_the_given_one(rendered: RenderedIssue) -> None:
    message_id = message_id_for(
        delivery_id=123, edition=date(2026, 1, 2), sender_address="n@example.net"
    )
    message = parse(build_message(rendered, make_headers(message_id=message_id)))
    assert message["Message-ID"] == message_id == "<issue-20260102-123@example.net>"


def test_html_part_travels_as_7bit_with_character_references(rendered: RenderedIssue) -> None:
    raw = build_message(rendered, make_headers())
    _, html_part = parse(raw).iter_parts()
    assert html_part["Content-Transfer-Encoding"] == "7bit"
    assert b"f&#252;r lange Dokumente" in raw  # "für", as a character reference


def test_boundary_never_occurs_in_a_body(
    small: RenderedIssue, monkeypatch: pytest.MonkeyPatch
) -> None:
    import itertools

    from newsletter.mail import message as message_module

    monkeypatch.setattr(message_module, "_boundary_counter", itertools.count(5))
    taken = f"--{message_module._BOUNDARY_PREFIX}5"
    raw = build_message(replace(small, html=f"<p>{taken}</p>\n"), make_headers())
    message = parse(raw)
    assert message.get_boundary() == f"{message_module._BOUNDARY_PREFIX}6"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]


# --- the hot-path helpers against their plain definitions ---------------------------------

_LINES = st.lists(
    st.sampled_from(["", "a", "x" * 997, "x" * 998, "x" * 999, "é·", "\r", "<p>", " "]),
    max_size=30,
).map("\n".join)


@given(_LINES.map(lambda text: text.encode("utf-8")))
def test_longest_line_is_the_longest_lf_separated_line(data: bytes) -> None:
    assert message_module._longest_line(data) == max(map(len, data.split(b"\n")))


@given(st.text(max_size=200))
def test_encoded_words_decode_to_the_value_and_never_split_a_character(value: str) -> None:
    folded = message_module._encoded_words(value)
    words = folded.split("\r\n ")
    raw = [binascii.a2b_base64(w.removeprefix("=?utf-8?b?").removesuffix("?=")) for w in words]
    assert all(len(word) <= message_module._WORD_BYTES for word in raw)
    # Each word decodes alone (a split character would raise) and together they are
    # the value.
    assert "".join([word.decode("utf-8") for word in raw]) == value


# --- quoted-printable from pieces whose whole lines were encoded once ---------------------

# Lines that test quoted-printable's per-line rules: trailing blanks, a lone dot, "=",
# non-ASCII, tabs, and lines past 76 characters (soft breaks).
_QP_ALPHABET = st.sampled_from(["a", " ", "\t", ".", "=", "é", "€", "\n", "x" * 40, "“"])


@given(
    st.lists(st.lists(_QP_ALPHABET, max_size=30).map("".join), max_size=8),
    st.lists(st.booleans(), max_size=8),
)
def test_quoted_printable_of_pieces_is_that_of_the_whole_text(
    pieces: list[str], encode: list[bool]
) -> None:
    """Pieces with their whole lines encoded once join to the encoding of the text."""
    mixed = (
        [
            message_module.encoded_lines(piece) if encode[i % len(encode)] else piece
            for i, piece in enumerate(pieces)
        ]
        if encode
        else list(pieces)
    )
    text = "".join(pieces)
    assert message_module.quoted_printable_of(mixed) == message_module.quoted_printable(text)


@pytest.mark.parametrize(
    "text",
    ["one line", "a\nb", "trailing  \n.\nx" + "y" * 200 + " \nz", "é\n" * 5 + "=\n", "\n\n\n"],
)
def test_encoded_lines_keep_the_text(text: str) -> None:
    lines = message_module.encoded_lines(text)
    if isinstance(lines, str):
        assert lines == text
        assert text.count("\n") < 2
    else:
        middle = binascii.a2b_qp(lines.lines).decode("utf-8")
        assert lines.head + middle + lines.tail == text
        assert message_module.quoted_printable_of([lines]) == message_module.quoted_printable(text)
