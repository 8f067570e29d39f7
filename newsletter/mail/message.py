"""MIME assembly of one issue: multipart/alternative (text, then HTML) and its headers.

Every header value is collapsed to one line before it is written, so no subscriber
or paper data can add a header or a MIME part; non-ASCII is RFC 2047 encoded and
long lines are folded. The tests parse every variant back with the ``email``
package, which is the reference this fast path is held to.
"""

from __future__ import annotations

import binascii
import functools
import itertools
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import format_datetime, formataddr, parseaddr

import numpy as np

from newsletter.mail.render import RenderedIssue

# Unicode category Cc: the C0 controls, DEL and the C1 controls.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_TOKEN = re.compile("[!-~]+")  # printable ASCII, no space


def one_line(value: str, *, limit: int = 500) -> str:
    """One printable line: whitespace runs (line breaks too) become single spaces,
    control characters (NUL, ESC, DEL ...) go, and the result is cut at ``limit``
    characters so that no header line can outgrow RFC 5322's 998 bytes."""
    text = _CONTROL.sub("", " ".join(value.split()))
    return text[:limit].rstrip()


def message_id_for(*, delivery_id: int, edition: date, sender_address: str) -> str:
    """A Message-ID derived from the delivery, so a resend is recognisable as the same issue."""
    domain = sender_address.rpartition("@")[2] if "@" in sender_address else ""
    return f"<issue-{edition:%Y%m%d}-{delivery_id}@{domain or 'localhost'}>"


@dataclass(frozen=True)
class MessageHeaders:
    sender: str  # 'Name <address>'
    to_address: str
    to_name: str
    message_id: str
    list_id: str
    list_name: str
    unsubscribe_url: str
    date: datetime
    unsubscribe_mailto: str | None = None  # a mailto: URI offered beside the URL


def build_message(rendered: RenderedIssue, headers: MessageHeaders) -> bytes:
    """The message as bytes ready for SMTP (CRLF line ends), multipart/alternative.

    Assembled as bytes rather than through ``email.message.EmailMessage``, which
    costs ~3 ms for a 60 KB issue and sits on the hot path of every send. What makes
    hand assembly safe: every header value is collapsed to one printable line first;
    values that are not plain ASCII (or look like encoded words) are RFC 2047
    encoded words; addresses are formatted by ``email.utils``; the text part is
    quoted-printable (``binascii``, in C); the HTML part is 7bit with non-ASCII as
    character references when its lines fit, else quoted-printable; the boundary is
    checked against both bodies.
    """
    sender_name, sender_address = _parse_sender(headers.sender)
    lines = [
        _list_unsubscribe(headers.unsubscribe_url, headers.unsubscribe_mailto),
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        _address_header("From", one_line(sender_name), sender_address),
        _address_header("To", one_line(headers.to_name, limit=200), headers.to_address),
        _text_header("Subject", one_line(rendered.subject)),
        "Date: " + format_datetime(headers.date),
        "Message-ID: " + _token_value(headers.message_id),
        _text_header("List-Id", one_line(headers.list_name), suffix=f" <{headers.list_id}>"),
        "MIME-Version: 1.0",
    ]
    head = "\r\n".join(lines).encode("ascii" if _all_ascii(lines) else "utf-8")
    text = rendered.text_qp if rendered.text_qp is not None else quoted_printable(rendered.text)
    html = _html_part(rendered.html, rendered.html_7bit)
    boundary = _boundary(text, html)
    return b"".join(
        (
            head,
            b'\r\nContent-Type: multipart/alternative; boundary="',
            boundary.encode("ascii"),
            b'"\r\n\r\n--',
            boundary.encode("ascii"),
            _PART_TEXT,
            text,
            b"\r\n--",
            boundary.encode("ascii"),
            html,
            b"\r\n--",
            boundary.encode("ascii"),
            b"--\r\n",
        )
    )


@functools.lru_cache(maxsize=16)
def _parse_sender(sender: str) -> tuple[str, str]:
    return parseaddr(sender)


# Boundaries: unpredictable per process, unique per message, and checked against the
# bodies (the HTML part may travel as 7bit, where "=_" is no guarantee).
_BOUNDARY_PREFIX = "=_issue_" + secrets.token_hex(8) + "_"
_boundary_counter = itertools.count(1)


def _boundary(*bodies: bytes) -> str:
    while True:
        boundary = f"{_BOUNDARY_PREFIX}{next(_boundary_counter)}"
        marker = b"--" + boundary.encode("ascii")
        if not any(marker in body for body in bodies):
            return boundary


_PART_TEXT = (
    b'\r\nContent-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
)
_PART_HTML = b'\r\nContent-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: '
_MAX_BODY_LINE = 998
_FOLD_AT = 78  # RFC 5322's recommended line length


def _all_ascii(lines: list[str]) -> bool:
    return all(line.isascii() for line in lines)


def quoted_printable(body: str) -> bytes:
    """Quoted-printable with CRLF line ends and lines of at most 76 characters."""
    if "\r" in body:
        body = body.replace("\r\n", "\n").replace("\r", "\n")
    return _qp(body).replace(b"\n", b"\r\n")


def _qp(text: str) -> bytes:
    return binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)


@dataclass(frozen=True)
class EncodedLines:
    """A piece of text with its whole lines encoded once: ``head`` up to and with its
    first LF, ``lines`` the whole lines after it quoted-printable (LF line ends), ``tail``
    after its last LF.

    Quoted-printable (``binascii.b2a_qp`` on LF text) works line by line: a soft break,
    a trailing space or a lone dot depends on its own line only, so text cut after an
    LF encodes to the encodings of its parts joined. A paper's card, the same in every
    issue, is encoded once this way (``quoted_printable_of``).
    """

    head: str
    lines: bytes
    tail: str


def encoded_lines(text: str) -> EncodedLines | str:
    """``text`` as ``EncodedLines``, or as it is when it has no whole line to encode
    (or holds a CR, which ``quoted_printable`` would first turn into a line end)."""
    first = text.find("\n")
    last = text.rfind("\n")
    if first == last or "\r" in text:
        return text
    return EncodedLines(text[: first + 1], _qp(text[first + 1 : last + 1]), text[last + 1 :])


def quoted_printable_of(pieces: Sequence[str | EncodedLines]) -> bytes:
    """``quoted_printable`` of the text the pieces make (each ``EncodedLines`` standing
    for its head, lines and tail), the whole lines of each ``EncodedLines`` encoded
    already; for a text without CR."""
    out: list[bytes] = []
    start = 0
    carry = ""
    for at in [at for at, piece in enumerate(pieces) if type(piece) is EncodedLines]:
        piece = pieces[at]
        assert isinstance(piece, EncodedLines)
        # From a line start to an LF: whole lines, which encode on their own.
        out.append(_qp(carry + "".join(pieces[start:at]) + piece.head))  # type: ignore[arg-type]
        out.append(piece.lines)
        carry = piece.tail
        start = at + 1
    out.append(_qp(carry + "".join(pieces[start:])))  # type: ignore[arg-type]
    return b"".join(out).replace(b"\n", b"\r\n")


def _longest_line(data: bytes, *, crlf: bool = False) -> int:
    """The length of the longest line of ``data`` (numpy: a 50 KB part has hundreds of
    lines, and splitting it into objects costs more than the rest), line ends LF or,
    with ``crlf``, CRLF (not counted)."""
    breaks = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    if not len(breaks):
        return len(data)
    end = 2 if crlf else 1
    inner = int(np.diff(breaks).max(initial=1)) - end
    return max(int(breaks[0]) - end + 1, inner, len(data) - int(breaks[-1]) - 1)


def seven_bit(html: str) -> bytes:
    """HTML as a 7bit body carries it: ASCII, non-ASCII characters as numeric character
    references (which mean the same in HTML), CRLF line ends (``html`` holds no CR).
    Character by character: the pieces of a text encode to the pieces of its encoding."""
    return html.encode("ascii", "xmlcharrefreplace").replace(b"\n", b"\r\n")


def _html_part(html: str, ready: bytes | None = None) -> bytes:
    """The HTML part's headers and body: 7bit when possible, else quoted-printable.

    Non-ASCII characters become numeric character references, so the part is ASCII;
    if every line also fits SMTP's 998 bytes it needs no transfer encoding at all,
    which is ~15 times cheaper than quoted-printable. ``ready`` is ``seven_bit(html)``
    when the renderer made it already.
    """
    if ready is not None and _longest_line(ready, crlf=True) <= _MAX_BODY_LINE:
        return b"".join((_PART_HTML, b"7bit\r\n\r\n", ready))
    if "\r" in html:
        html = html.replace("\r\n", "\n").replace("\r", "\n")
    data = html.encode("ascii", "xmlcharrefreplace")
    if _longest_line(data) <= _MAX_BODY_LINE:
        return b"".join((_PART_HTML, b"7bit\r\n\r\n", data.replace(b"\n", b"\r\n")))
    return b"".join((_PART_HTML, b"quoted-printable\r\n\r\n", quoted_printable(html)))


def _needs_encoding(value: str) -> bool:
    return not value.isascii() or "=?" in value


def _fold(name: str, value: str) -> str:
    """``Name: value`` folded at spaces so lines stay near 78 characters."""
    line = f"{name}: {value}"
    if len(line) <= _FOLD_AT:
        return line
    out: list[str] = []
    current = f"{name}:"
    for word in value.split(" "):
        if len(current) + 1 + len(word) > _FOLD_AT and current != f"{name}:":
            out.append(current)
            current = " " + word
        else:
            current += " " + word
    out.append(current)
    return "\r\n".join(out)


_WORD_BYTES = 40  # UTF-8 bytes per encoded word: 12 + 56 base64 characters, under 75


def _encoded_words(value: str) -> str:
    """RFC 2047 base64 encoded words, one per folded line, never splitting a character.

    Written here because ``email.header.Header`` weighs quoted-printable against
    base64 character by character (~0.7 ms for a subject line) on the hot path. Each
    word takes as many whole UTF-8 characters as fit in ``_WORD_BYTES`` bytes.
    """
    data = value.encode("utf-8")
    words: list[bytes] = []
    start = 0
    while len(data) - start > _WORD_BYTES:
        cut = start + _WORD_BYTES
        while data[cut] & 0xC0 == 0x80:  # a continuation byte: the cut backs off to its lead
            cut -= 1
        words.append(data[start:cut])
        start = cut
    words.append(data[start:])
    return "\r\n ".join(
        "=?utf-8?b?" + binascii.b2a_base64(word, newline=False).decode("ascii") + "?="
        for word in words
    )


def _text_header(name: str, value: str, *, suffix: str = "") -> str:
    if not value:
        return f"{name}:{suffix}" if suffix else f"{name}: "
    if _needs_encoding(value):
        return f"{name}: {_encoded_words(value)}{suffix}"
    return _fold(name, value + suffix)


def _address_header(name: str, display_name: str, address: str) -> str:
    _address_value(address)
    if not display_name:
        return f"{name}: {address}"
    if _needs_encoding(display_name):
        return f"{name}: {_encoded_words(display_name)} <{address}>"
    return _fold(name, formataddr((display_name, address)))


def _address_value(address: str) -> str:
    """An address for a header: one unbroken token; non-ASCII (an internationalised local
    part, written as UTF-8 as RFC 6532 allows) only as printable characters."""
    if address.isascii() or not _UNSAFE_IN_ADDRESS.search(address):
        return _token_value(address) if address.isascii() else address
    raise ValueError(f"address not safe in a header: {address!r}")


# Whitespace, controls, the Unicode separators and the brackets that delimit an address.
_UNSAFE_IN_ADDRESS = re.compile(r"[\s\x00-\x1f\x7f-\x9f<>\u2028\u2029\ufeff]")


def _token_value(value: str) -> str:
    """A value that must be one unbroken token (Message-ID): no spaces, no controls."""
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"header value not safe: {value!r}")
    return value


def _list_unsubscribe(url: str, mailto: str | None) -> str:
    line = f"List-Unsubscribe: <{_header_url(url)}>"
    if mailto:
        # The mailto URI goes on a folded line of its own: the URL may already fill one.
        line += f",\r\n <{_header_url(mailto)}>"
    return line


_MAX_HEADER_LINE = 998 - len("List-Unsubscribe: <>")


# RFC 3986 characters, less the angle brackets that delimit the URL in the header.
_URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


def _header_url(url: str) -> str:
    """Check that a URL can stand unencoded on one header line."""
    if not _URL_CHARACTERS.fullmatch(url):
        raise ValueError(f"URL not safe in a header: {url!r}")
    if len(url) > _MAX_HEADER_LINE:
        raise ValueError(f"URL too long for a header line ({len(url)} characters)")
    return url
