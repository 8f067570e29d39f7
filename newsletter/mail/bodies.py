"""Transfer encodings of a message's two bodies, with card blocks encoded once.

The text part travels quoted-printable; the HTML part as 7bit (non-ASCII as character
references) when every line fits SMTP's 998 bytes, else quoted-printable.
Quoted-printable works line by line: how a line is encoded depends on that line alone.
So a text body can be encoded in chunks cut just after a line break, and the chunks
joined are the bytes of the whole body encoded at once. Most of an issue's text part
is paper cards rendered once per edition (``newsletter.mail.cards``): the full lines of
a card are encoded the first time the card is used and kept on it, and per message
only the personal text around the cards (and the lines where it meets a card) is
encoded. The tests hold the chunked result byte for byte to the whole-body encoding.

The HTML part is encoded piece by piece as the template produced it (its cards, under
a third of the part, once per card): most pieces are ASCII, which Python encodes
with a copy, where the joined part goes character by character (``html_part_by_pieces``).
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence

import numpy as np

from newsletter.mail.cards import CardOutput

PART_TEXT = (
    b'\r\nContent-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
)
_PART_HTML = b'\r\nContent-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: '
_MAX_BODY_LINE = 998


def quoted_printable(body: str) -> bytes:
    """Quoted-printable with CRLF line ends and lines of at most 76 characters."""
    if "\r" in body:
        body = body.replace("\r\n", "\n").replace("\r", "\n")
    return _qp(body)


def _qp(body: str) -> bytes:
    encoded = binascii.b2a_qp(body.encode("utf-8"), quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\n", b"\r\n")


def _longest_line(data: bytes) -> int:
    """The length of the longest LF-separated line of ``data`` (numpy: a 50 KB part
    has hundreds of lines, and splitting it into objects costs more than the rest)."""
    breaks = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    if not len(breaks):
        return len(data)
    inner = int(np.diff(breaks).max(initial=1)) - 1
    return max(int(breaks[0]), inner, len(data) - int(breaks[-1]) - 1)


def html_part(html: str) -> bytes:
    """The HTML part's headers and body: 7bit when possible, else quoted-printable.

    Non-ASCII characters become numeric character references (which mean the same in
    HTML), so the part is ASCII; if every line also fits SMTP's 998 bytes it needs no
    transfer encoding at all, which is ~15 times cheaper than quoted-printable.
    """
    if "\r" in html:
        html = html.replace("\r\n", "\n").replace("\r", "\n")
    data = html.encode("ascii", "xmlcharrefreplace")
    if _longest_line(data) <= _MAX_BODY_LINE:
        return b"".join((_PART_HTML, b"7bit\r\n\r\n", data.replace(b"\n", b"\r\n")))
    return b"".join((_PART_HTML, b"quoted-printable\r\n\r\n", _qp(html)))


# --------------------------------------------------------------------- by chunks


def _pieces(body: str, cards: Sequence[CardOutput]) -> list[str | CardOutput] | None:
    """``body`` cut into the personal text and the card blocks it holds, in order;
    None if a card is not found as it is (then the whole body is encoded)."""
    pieces: list[str | CardOutput] = []
    position = 0
    for card in cards:
        if not card.text:
            continue
        at = body.find(card.text, position)
        if at < 0:
            return None
        pieces.append(body[position:at])
        pieces.append(card)
        position = at + len(card.text)
    pieces.append(body[position:])
    return pieces


class _Encoded:
    """A card's text cut at its first and last line break, its full lines encoded.

    ``head`` (up to and with the first break) and ``tail`` (after the last) join the
    personal text on either side; ``middle`` is the quoted-printable of the lines
    between.
    """

    __slots__ = ("head", "middle", "tail")

    def __init__(self, text: str) -> None:
        first = text.find("\n")
        last = text.rfind("\n")
        self.head = text[: first + 1]
        self.tail = text[last + 1 :]
        self.middle = _qp(text[first + 1 : last + 1])


def _encoded(card: CardOutput) -> _Encoded | None:
    """The card's quoted-printable, worked out the first time the card is used."""
    encoded = card.encoded
    if isinstance(encoded, _Encoded):  # a text card (an HTML card keeps bytes)
        return encoded
    if "\n" not in card.text:
        return None  # one line: it travels with the text around it
    encoded = _Encoded(card.text)
    card.encoded = encoded
    return encoded


def quoted_printable_by_cards(body: str, cards: Sequence[CardOutput]) -> bytes:
    """``quoted_printable(body)``, with the full lines of each card encoded once."""
    pieces = _pieces(body, cards) if cards and "\r" not in body else None
    if pieces is None:
        return quoted_printable(body)
    chunks: list[bytes] = []
    pending: list[str] = []
    for piece in pieces:
        encoded = None if isinstance(piece, str) else _encoded(piece)
        if encoded is None:
            pending.append(piece if isinstance(piece, str) else piece.text)
            continue
        pending.append(encoded.head)
        chunks.append(_qp("".join(pending)))
        chunks.append(encoded.middle)
        pending = [encoded.tail]
    chunks.append(_qp("".join(pending)))
    return b"".join(chunks)


def html_part_by_pieces(html: str, pieces: Sequence[str], cards: Sequence[CardOutput]) -> bytes:
    """``html_part(html)`` from the template's output strings (``pieces``, which join to
    ``html``), each card block's bytes made once per card.

    Encoding the pieces one by one is cheaper than encoding the joined string: most
    pieces are ASCII, and Python encodes an ASCII string with a copy, while the joined
    issue (with a character beyond Latin-1 anywhere) goes character by character.
    A piece is a card when it equals the next card block of ``cards`` (the template's
    output is a new string with the same text); equal strings encode alike, so which
    copy is taken for which does not matter.
    """
    if not pieces or "\r" in html:
        return html_part(html)
    encoded: list[bytes] = []
    cards_left = iter(cards)
    card = next(cards_left, None)
    for piece in pieces:
        if card is not None and len(piece) == len(card.text) and piece == card.text:
            data = card.encoded
            if not isinstance(data, bytes):
                data = card.text.encode("ascii", "xmlcharrefreplace")
                card.encoded = data
            encoded.append(data)
            card = next(cards_left, None)
        else:
            encoded.append(piece.encode("ascii", "xmlcharrefreplace"))
    data = b"".join(encoded)
    if _longest_line(data) <= _MAX_BODY_LINE:
        return b"".join((_PART_HTML, b"7bit\r\n\r\n", data.replace(b"\n", b"\r\n")))
    return html_part(html)  # quoted-printable, from the whole
