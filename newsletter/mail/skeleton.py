"""An issue rendered by Jinja once per shape, then filled per message by string joins.

Most of an issue is the same for every reader of an edition: MJML's table markup, the
labels, each paper's card (``newsletter.mail.cards``). What differs is a few dozen
values: the reader's address and links, the heading, each pick's why, terms and rating
links. ``IssueSkeletons`` renders the issue templates through Jinja with markers in
place of those values (``newsletter.mail.markers``), keeps what lies between them, and
fills every later message with the values themselves, escaped as Jinja escapes them
(``markupsafe.escape`` in the HTML part, nothing in the text and subject). On the way
it makes the HTML part's 7bit body and the text part's quoted-printable, each literal
and card encoded once (``newsletter.mail.message``: both encodings go piece by piece).

What makes that exact:

- the templates' branches (``{% if preheader %}``, ``{% if paper.why %}`` ...) depend on
  whether a value is empty and how many reasons a pick has; that *shape* selects the
  skeleton, and a marker view has the shape of the view it stands for;
- an issue is its frame before the papers, one segment per paper, and the frame after
  them; a segment depends only on its pick's shape and place (the text part numbers
  the picks), so it is made once per (frame shape, place, pick shape);
- every skeleton is checked against Jinja the first time a message uses it (the whole
  message rendered both ways, both encodings compared too); a difference turns the
  skeletons off for that template and the issue renders through Jinja, as it does for
  a template that is not the packaged one (an operator's template may use values in
  ways a marker cannot stand for, such as a filter or a comparison).
"""

from __future__ import annotations

import functools
import logging
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2
from markupsafe import escape

from newsletter.mail.cards import CardCache
from newsletter.mail.markers import (
    CARD,
    FRAME_FIELDS,
    PICK_FIELDS,
    SUBJECT,
    WHY,
    Meaning,
    NotASkeleton,
    PickShape,
    Slot,
    cut_at_markers,
    frame_shape,
    pick_shape,
    render_marked,
    split_issue,
)
from newsletter.mail.message import (
    EncodedLines,
    encoded_lines,
    quoted_printable,
    quoted_printable_of,
    seven_bit,
)
from newsletter.mail.render import PaperView, RenderedIssue, Renderer
from newsletter.mail.view import CardView, Issue

log = logging.getLogger(__name__)

_MAX_SEGMENTS = 20_000


@dataclass(frozen=True)
class _Pieces:
    """Literal text around slots: ``literals[0] slot[0] literals[1] ... literals[-1]``,
    and the literals as a 7bit HTML part carries them (``message.seven_bit``) and with
    their whole lines quoted-printable (``message.encoded_lines``)."""

    literals: tuple[str, ...]
    slots: tuple[Slot, ...]
    encoded: tuple[bytes, ...]
    lines: tuple[str | EncodedLines, ...]  # as a quoted-printable part takes them
    # The slots' values from the list of the frame's values (``_FRAME_SLOTS``) or of the
    # pick's (``_pick_slots``), in order.
    take: Callable[[Sequence[Any]], Sequence[Any]]


# Per part (subject, text, HTML).
_Parts = tuple[_Pieces, _Pieces, _Pieces]


def _pieces(text: str, meaning: Meaning, place: int) -> _Pieces:
    """``text`` cut at its markers, all of which must belong to ``place`` (0: the frame),
    with its literals in every form a part takes them."""
    literals, slots = cut_at_markers(text, meaning, place)
    order = _FRAME_SLOTS if place == 0 else _pick_slots(len(PICK_FIELDS) + _MAX_REASONS)
    positions = [order.index(slot) for slot in slots]
    take: Callable[[Sequence[Any]], Sequence[Any]]
    if len(positions) > 1:
        take = operator.itemgetter(*positions)
    else:
        take = lambda values: [values[at] for at in positions]  # noqa: E731 (0 or 1 slot)
    return _Pieces(
        literals,
        tuple(slots),
        tuple(map(seven_bit, literals)),
        tuple(map(_lines, literals)),
        take,
    )


_WORTH_ENCODING = 256  # bytes of whole lines: below, one more b2a_qp call costs more


def _lines(literal: str) -> str | EncodedLines:
    """A literal of the text part with its whole lines encoded, when there are enough."""
    lines = encoded_lines(literal)
    if isinstance(lines, EncodedLines) and len(lines.lines) >= _WORTH_ENCODING:
        return lines
    return literal


_Card = tuple[PaperView, str, bytes, str, "str | EncodedLines"]


@dataclass
class _Skeleton:
    """The skeletons of one version of the issue templates in one locale."""

    templates: tuple[jinja2.Template, ...]
    usable: bool  # False: the packaged template is not in use, or a check failed
    frames: dict[tuple[object, ...], tuple[_Parts, _Parts]] = field(default_factory=dict)
    # (frame shape, place, pick shape) -> the pick's segment of each part
    segments: dict[tuple[object, ...], _Parts] = field(default_factory=dict)
    checked: set[tuple[object, ...]] = field(default_factory=set)  # held to Jinja once
    # A paper's shared view's id -> it, its card in the HTML part (as text and 7bit) and
    # in the text part (as text and ``encoded_lines``): the CardCache's, looked up once.
    cards: dict[int, _Card] = field(default_factory=dict)


_ANY_PICK = (1, True, True, True)


class IssueSkeletons:
    """Issues filled into skeletons (one per worker, beside its ``CardCache``)."""

    def __init__(self, renderer: Renderer, cards: CardCache) -> None:
        self._renderer = renderer
        self._cards = cards
        self._skeletons: dict[tuple[object, ...], _Skeleton] = {}
        self.filled = 0  # messages filled into a skeleton (the rest went through Jinja)

    def render(self, view: Issue, shared: Sequence[PaperView]) -> RenderedIssue:
        """Subject, text and HTML of ``view``: what ``Renderer.render_issue`` with the
        card cache renders, byte for byte."""
        skeleton = self._skeleton(self._renderer.issue_templates(), view.locale)
        rendered: RenderedIssue | None = None
        fresh: list[tuple[object, ...]] = []
        if (
            skeleton.usable
            and view.subject_line
            and len(shared) == len(view.papers)
            and all(isinstance(paper, CardView) for paper in view.papers)
        ):
            try:
                rendered = self._fill(skeleton, view, shared, fresh)
            except NotASkeleton as exc:
                self._disable(skeleton, str(exc))
            except Exception as exc:  # a fault here must not fail a delivery: Jinja renders
                log.exception("filling an issue skeleton failed")
                self._disable(skeleton, f"{type(exc).__name__}: {exc}")
                fresh.clear()
        if rendered is not None and not fresh:
            self.filled += 1
            return rendered
        reference = self._renderer.render_issue(view, cards=self._cards, shared=shared)
        if rendered is not None:
            if (
                reference != rendered
                or rendered.html_7bit not in (None, seven_bit(reference.html))
                or rendered.text_qp not in (None, quoted_printable(reference.text))
            ):
                self._disable(skeleton, "a filled issue differs from Jinja's")
            else:
                skeleton.checked.update(fresh)
                self.filled += 1
        return reference

    @staticmethod
    def _disable(skeleton: _Skeleton, why: str) -> None:
        log.warning("issue skeletons off for this template (%s); rendering with Jinja", why)
        skeleton.usable = False

    def _skeleton(self, templates: tuple[jinja2.Template, ...], locale: str) -> _Skeleton:
        key = (*map(id, templates), locale)
        found = self._skeletons.get(key)
        if found is None or any(
            a is not b for a, b in zip(found.templates, templates, strict=True)
        ):
            if len(self._skeletons) > 64:
                self._skeletons.clear()
            found = _Skeleton(templates, usable=self._renderer.is_packaged("issue"))
            self._skeletons[key] = found  # it holds the templates: their ids stay theirs
        return found

    def _frame(
        self, skeleton: _Skeleton, view: Issue, shape: tuple[object, ...], first: PickShape
    ) -> tuple[_Parts, _Parts]:
        found = skeleton.frames.get(shape)
        if found is None:
            with_one, meaning = render_marked(self._renderer, view, [first])
            without, _ = render_marked(self._renderer, view, [])
            heads, tails = [], []
            for longer, shorter in zip(with_one, without, strict=True):
                head, _, tail = split_issue(longer, shorter, meaning, 1)
                heads.append(_pieces(head, meaning, 0))
                tails.append(_pieces(tail, meaning, 0))
            found = (_three(heads), _three(tails))
            skeleton.frames[shape] = found
        return found

    def _segment(
        self, skeleton: _Skeleton, view: Issue, key: tuple[object, ...], place: int, pick: PickShape
    ) -> _Parts:
        found = skeleton.segments.get(key)
        if found is None:
            longer, meaning = render_marked(self._renderer, view, [pick] * place)
            shorter, _ = render_marked(self._renderer, view, [pick] * (place - 1))
            parts = []
            for long_part, short_part in zip(longer, shorter, strict=True):
                _, segment, _ = split_issue(long_part, short_part, meaning, place)
                parts.append(_pieces(segment, meaning, place))
            found = _three(parts)
            if len(skeleton.segments) >= _MAX_SEGMENTS:
                skeleton.segments.clear()
            skeleton.segments[key] = found
        return found

    def _fill(
        self,
        skeleton: _Skeleton,
        view: Issue,
        shared: Sequence[PaperView],
        fresh: list[tuple[object, ...]],
    ) -> RenderedIssue | None:
        cards = self._picked_cards(skeleton, view.locale, shared)
        if cards is None:
            return None  # Jinja renders it (and caches the cards)
        shape = frame_shape(view)
        papers: Sequence[Any] = view.papers
        picks = [pick_shape(paper) for paper in papers]
        if any(pick[0] > _MAX_REASONS for pick in picks):
            return None
        heads, tails = self._frame(skeleton, view, shape, picks[0] if picks else _ANY_PICK)
        if (shape,) not in skeleton.checked:
            fresh.append((shape,))
        segments = []
        for place, pick in enumerate(picks, 1):
            key = (shape, place, pick)
            segments.append(self._segment(skeleton, view, key, place, pick))
            if key not in skeleton.checked:
                fresh.append(key)
        frame = [getattr(view, name) for name in FRAME_FIELDS]
        own = [_pick_values(paper) for paper in papers]
        text_picks = [[card[3], *values] for values, card in zip(own, cards, strict=True)]
        frame.append("")  # the subject's slot: the subject part has none
        subject = "".join(_interleave(heads[0], tails[0], segments, 0, frame, text_picks))
        frame[-1] = subject = " ".join(subject.split())
        text = "".join(_interleave(heads[1], tails[1], segments, 1, frame, text_picks))
        text_qp = None
        if "\r" not in text:
            # The cards' and the frame's whole lines were encoded once (``EncodedLines``).
            lines_picks = [[card[4], *values] for values, card in zip(own, cards, strict=True)]
            text_qp = quoted_printable_of(
                _interleave(heads[1], tails[1], segments, 1, frame, lines_picks, form="lines")
            )
        # Every value escaped in one call, and encoded in one (see ``_each``).
        flat = [*frame, *(value for values in own for value in values)]
        escaped = _each(flat, _escaped)
        html_frame, html_picks = _regroup(escaped, own, cards, 1)
        html = "".join(_interleave(heads[2], tails[2], segments, 2, html_frame, html_picks))
        html_7bit = None
        if "\r" not in html:
            # The same pieces, each as a 7bit part carries it (``message.seven_bit``).
            encoded = _each(escaped, seven_bit)
            seven_frame, seven_picks = _regroup(encoded, own, cards, 2)
            html_7bit = b"".join(
                _interleave(
                    heads[2], tails[2], segments, 2, seven_frame, seven_picks, form="encoded"
                )
            )
        return RenderedIssue(
            subject=subject, html=html, text=text, html_7bit=html_7bit, text_qp=text_qp
        )

    def _picked_cards(
        self, skeleton: _Skeleton, locale: str, shared: Sequence[PaperView]
    ) -> list[_Card] | None:
        found = skeleton.cards
        cards = []
        for base in shared:
            card = found.get(id(base))
            if card is None or card[0] is not base:
                html = self._cards.get(skeleton.templates[2], locale, base)
                text = self._cards.get(skeleton.templates[1], locale, base)
                if html is None or text is None:
                    return None
                if len(found) >= _MAX_SEGMENTS:
                    found.clear()
                card = (base, html, seven_bit(html), text, encoded_lines(text))
                found[id(base)] = card
            cards.append(card)
        return cards


def _three(parts: Sequence[_Pieces]) -> _Parts:
    subject, text, html = parts
    return subject, text, html


_MAX_REASONS = 16  # a pick with more (there are five kinds) renders through Jinja


def _pick_values(paper: CardView) -> list[str]:
    """A pick's own values, in the order of ``_pick_slots`` after the card."""
    values = [paper.terms, paper.more_url, paper.less_url]
    values.extend(reason.text for reason in paper.why)
    return values


@functools.cache
def _pick_slots(values: int) -> tuple[Slot, ...]:
    """The slots of a pick with ``values`` own values (the card first)."""
    return (CARD, *PICK_FIELDS, *((WHY, k) for k in range(values - len(PICK_FIELDS))))


_FRAME_SLOTS: tuple[Slot, ...] = (*FRAME_FIELDS, SUBJECT)


def _each(values: list[str], convert: Callable[[str], Any]) -> list[Any]:
    """``[convert(value) for value in values]`` for a ``convert`` that maps character by
    character and keeps NUL (escaping, encoding): the values joined by NUL, converted
    in one call and split again (one C call instead of dozens of Python ones); one by
    one if a value holds a NUL itself."""
    joined = convert("\0".join(values))
    out: list[Any] = joined.split(b"\0" if isinstance(joined, bytes) else "\0")
    if len(out) != len(values):
        out = [convert(value) for value in values]
    return out


def _escaped(value: str) -> str:
    return str(escape(value))  # as Jinja's autoescape writes a value


def _regroup(
    flat: list[Any], own: list[list[str]], cards: Sequence[tuple[Any, ...]], card_form: int
) -> tuple[list[Any], list[list[Any]]]:
    """The frame's values and each pick's (its card first, in form ``card_form`` of
    ``_picked_cards``), from ``flat``: the frame's, then each pick's own in turn."""
    at = len(_FRAME_SLOTS)
    picks = []
    for values, card in zip(own, cards, strict=True):
        end = at + len(values)
        pick = flat[at:end]
        pick.insert(0, card[card_form])
        picks.append(pick)
        at = end
    return flat[: len(_FRAME_SLOTS)], picks


def _interleave(
    head: _Pieces,
    tail: _Pieces,
    segments: Sequence[_Parts],
    part: int,
    frame: Sequence[Any],
    picks: Sequence[Sequence[Any]],
    *,
    form: str = "literals",
) -> list[Any]:
    """One part of the message in order: the head, each pick's segment, the tail, each
    as its literals in ``form`` (a field of ``_Pieces``) with its slots' values between
    them (strings, 7bit bytes or ``EncodedLines``, as the values come)."""
    literals: list[Any] = list(getattr(head, form))
    values: list[Any] = list(head.take(frame))
    empty = b"" if form == "encoded" else ""
    for pick, parts in zip(picks, segments, strict=True):
        pieces = parts[part]
        values.append(empty)
        literals.extend(getattr(pieces, form))
        values.extend(pieces.take(pick))
    values.append(empty)
    literals.extend(getattr(tail, form))
    values.extend(tail.take(frame))
    out: list[Any] = [empty] * (len(literals) + len(values))
    out[0::2] = literals
    out[1::2] = values
    return out
