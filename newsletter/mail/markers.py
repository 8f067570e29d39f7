"""Where each of a reader's values lands in a rendered issue (for ``mail.skeleton``).

An issue view whose values are *markers* (a private-use character pair around a
number) instead of the reader's own is rendered through the real templates; the
markers in the output say where each value goes, and what the template wrote around
them is the same for every reader whose view has the same *shape*: which values are
empty and how many reasons each pick has (what the templates branch on). Cutting an
issue of ``n`` picks against the same issue of ``n - 1`` gives the last pick's segment;
an issue of one pick against none gives the frame around the picks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from newsletter.mail.render import Renderer
from newsletter.mail.view import CardView, Issue, ReasonView

# The reader's values of the frame (every other field of ``Issue`` is the same for the
# whole edition, or is the papers).
FRAME_FIELDS = (
    "email",
    "list_name",
    "edition_label",
    "heading",
    "interests_line",
    "preheader",
    "manage_url",
    "unsubscribe_url",
    "view_url",
    "contact_line",
    "subject_line",
)
# A pick's own values outside its card (``why`` is one slot per reason).
PICK_FIELDS = ("terms", "more_url", "less_url")
CARD = "card"
WHY = "why"
SUBJECT = "subject"  # the one-line subject, as the HTML part shows it

_OPEN, _CLOSE = "\ue000", "\ue001"
MARKER = re.compile(f"{_OPEN}(\\d+){_CLOSE}")

# A slot: a frame field's name, or (field, reason index) of the pick it belongs to.
Slot = str | tuple[str, int]
# A marker's number -> the place of the pick it belongs to (0: the frame) and its slot.
Meaning = dict[int, tuple[int, Slot]]


def frame_shape(view: Issue) -> tuple[object, ...]:
    return (*(bool(getattr(view, name)) for name in FRAME_FIELDS), view.weekly)


PickShape = tuple[int, bool, bool, bool]


def pick_shape(paper: CardView) -> PickShape:
    return (len(paper.why), bool(paper.terms), bool(paper.more_url), bool(paper.less_url))


class Markers:
    """Numbered markers, and what each stands for (a frame slot, or a pick's slot)."""

    def __init__(self) -> None:
        self.meaning: Meaning = {}  # number -> (pick place or 0, slot)

    def __call__(self, place: int, slot: Slot) -> str:
        number = len(self.meaning)
        self.meaning[number] = (place, slot)
        return f"{_OPEN}{number}{_CLOSE}"


def marked_view(
    markers: Markers, view: Issue, shapes: Sequence[PickShape]
) -> tuple[Issue, dict[int, str]]:
    """A view of ``view``'s frame shape with ``shapes`` picks, markers for values."""
    values = {name: markers(0, name) if getattr(view, name) else "" for name in FRAME_FIELDS}
    cards: dict[int, str] = {}
    papers = []
    for place, (reasons, terms, more, less) in enumerate(shapes, 1):
        paper = CardView(
            title="",
            url="",
            authors="",
            categories="",
            abstract="",
            terms=markers(place, "terms") if terms else "",
            score=0.0,
            more_url=markers(place, "more_url") if more else "",
            less_url=markers(place, "less_url") if less else "",
            rank=place,
            why=tuple(ReasonView("", markers(place, (WHY, k))) for k in range(reasons)),
        )
        cards[id(paper)] = markers(place, CARD)
        papers.append(paper)
    marked = Issue(
        **values,
        papers=tuple(papers),
        locale=view.locale,
        weekly=view.weekly,
    )
    return marked, cards


def render_marked(
    renderer: Renderer, view: Issue, shapes: Sequence[PickShape]
) -> tuple[tuple[str, str, str], Meaning]:
    """The three parts of a marker view, and what each marker stands for.

    Markers are numbered subject, frame, then pick by pick: an issue with fewer picks
    of the same frame shape numbers its markers the same.
    """
    markers = Markers()
    subject = markers(0, SUBJECT)
    marked, cards = marked_view(markers, view, shapes)

    def paper_card(paper: Any, *, caller: Callable[[Any], str]) -> str:
        return cards[id(paper)]

    out = renderer.render_marked(marked, paper_card=paper_card, subject=subject)
    return (out.subject, out.text, out.html), markers.meaning


def common_prefix(a: str, b: str) -> int:
    """The length of the longest common prefix of ``a`` and ``b`` (slices compare in C)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle - 1
    return low


class NotASkeleton(Exception):
    """The template's output cannot be cut into a frame and segments."""


def split_issue(longer: str, shorter: str, meaning: Meaning, place: int) -> tuple[str, str, str]:
    """``longer`` = head + segment + tail and ``shorter`` = head + tail: the three.

    The head is their longest common prefix, but never past the first value of pick
    ``place`` (the segment's own).
    """
    cut = common_prefix(longer, shorter)
    for match in MARKER.finditer(longer):
        if meaning[int(match.group(1))][0] == place:
            cut = min(cut, match.start())
            break
    tail = shorter[cut:]
    if not longer.endswith(tail) or len(longer) - len(tail) < cut:
        raise NotASkeleton("the longer issue does not end as the shorter one")
    return shorter[:cut], longer[cut : len(longer) - len(tail)], tail


def cut_at_markers(text: str, meaning: Meaning, place: int) -> tuple[tuple[str, ...], list[Slot]]:
    """``text``'s literals and, between them, the slots its markers stand for, all of
    which must belong to ``place`` (0: the frame)."""
    parts = MARKER.split(text)
    slots = []
    for number in parts[1::2]:
        owner, slot = meaning[int(number)]
        if owner != place:
            raise NotASkeleton(f"a value of pick {owner} where pick {place} was expected")
        slots.append(slot)
    return tuple(parts[0::2]), slots
