"""Followed authors: a new paper by an author a reader follows is always in their issue.

Names are matched by a rule, not by identity (arXiv has no author ids):

- accents, case, dots and hyphens are ignored ("Émile" = "emile", "J.-P." = "j p");
- "Family, Given" (BibTeX, RIS) is read as "Given Family";
- the family name is the last word, with the particles before it joined on
  ("Yann Le Cun" and "Yann LeCun" both have the family name "lecun");
- the given name is the first word: two full given names must be equal, an initial
  matches any given name with that letter ("Y. LeCun" = "Yann LeCun", not "Yan LeCun"
  when both are written out);
- a followed name of one word (a family name alone) matches everyone of that name.

Limits: a family name written with and without its particle differs ("van Beethoven"
is not "Beethoven"); names written family-first without a comma (common for Chinese
names, "Li Wei") are read given-first; an initial matches every author of that family
name with that letter (following "Y. Li" brings papers of every Yang, Yi and Yu Li);
middle names are ignored.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.models import FollowedAuthor
from newsletter.planning.readers import id_conditions

PARTICLES = frozenset(
    {"de", "der", "den", "van", "von", "le", "la", "du", "da", "di", "del", "della", "ter", "dos"}
)


@dataclass(frozen=True)
class NameKey:
    family: str
    given: str  # "" when only a family name was given; one letter for an initial

    def __str__(self) -> str:
        return f"{self.family}|{self.given}"

    @classmethod
    def parse(cls, stored: str) -> NameKey:
        family, _, given = stored.partition("|")
        return cls(family, given)

    def matches(self, author: NameKey) -> bool:
        """Whether a paper's ``author`` is this followed name (see the module's rule)."""
        if self.family != author.family or not self.family:
            return False
        if not self.given or not author.given:
            return not self.given
        if len(self.given) == 1 or len(author.given) == 1:
            return self.given[0] == author.given[0]
        return self.given == author.given


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return re.sub(r"[^\w,]+", " ", plain.replace("ß", "ss")).strip()


@lru_cache(maxsize=1 << 16)
def name_key(name: str) -> NameKey | None:
    """The key ``name`` is matched by, or None when there is no name in it (cached: each
    batch of a planning run looks at the same candidates' authors)."""
    folded = _fold(name)
    if "," in folded:
        family_part, _, given_part = folded.partition(",")
        words = given_part.replace(",", " ").split() + family_part.split()
    else:
        words = folded.split()
    words = [w for w in words if w not in {"jr", "sr", "ii", "iii"}]
    if not words:
        return None
    family_words = [words[-1]]
    rest = words[:-1]
    while rest and rest[-1] in PARTICLES:
        family_words.insert(0, rest.pop())
    return NameKey("".join(family_words), rest[0] if rest else "")


def display_name(name: str) -> str:
    """A typed or BibTeX name as a reader would write it: "LeCun, Yann" -> "Yann LeCun"."""
    cleaned = " ".join(name.replace("{", "").replace("}", "").split())
    if cleaned.count(",") == 1:
        family, given = (part.strip() for part in cleaned.split(","))
        cleaned = f"{given} {family}".strip()
    return cleaned[:200]


class PaperLike(Protocol):
    id: int
    authors: list[str]


@dataclass(frozen=True)
class FollowMatch:
    paper_id: int
    name: str  # the followed name, as the reader gave it


def followed_matches(
    session: Session, subscriber_ids: Sequence[int], papers: Sequence[PaperLike]
) -> dict[int, list[FollowMatch]]:
    """Subscriber id -> the ``papers`` by an author they follow, in ``papers``' order
    (one query for a batch's id range). Follows are indexed by family name and initial,
    so a common family name followed by many readers costs only its own initials."""
    # (family, initial) -> follows; initial "" for a family name followed alone.
    follows: dict[tuple[str, str], list[tuple[int, NameKey, str]]] = defaultdict(list)
    wanted = set(subscriber_ids)
    for condition in id_conditions(FollowedAuthor.subscriber_id, subscriber_ids):
        for subscriber_id, name, stored in session.execute(
            select(FollowedAuthor.subscriber_id, FollowedAuthor.name, FollowedAuthor.key)
            .where(condition)
            .order_by(FollowedAuthor.id)
        ):
            if subscriber_id not in wanted:
                continue
            parsed = NameKey.parse(stored)
            follows[(parsed.family, parsed.given[:1])].append((subscriber_id, parsed, name))
    found: dict[int, list[FollowMatch]] = defaultdict(list)
    if not follows:
        return found
    for paper in papers:
        hit: set[int] = set()
        for author in paper.authors or ():
            written = name_key(author)
            if written is None:
                continue
            candidates = follows.get((written.family, ""), [])
            if written.given:
                candidates = candidates + follows.get((written.family, written.given[0]), [])
            for subscriber_id, followed, name in candidates:
                if subscriber_id not in hit and followed.matches(written):
                    hit.add(subscriber_id)
                    found[subscriber_id].append(FollowMatch(paper.id, name))
    return found


def followed_papers(
    session: Session, subscriber_ids: Sequence[int], papers: Sequence[PaperLike]
) -> dict[int, list[int]]:
    """Subscriber id -> ids of ``papers`` by an author they follow (for the planner)."""
    return {
        s: [m.paper_id for m in matches]
        for s, matches in followed_matches(session, subscriber_ids, papers).items()
    }


def frequent_authors(author_lists: Iterable[Sequence[str]], *, limit: int = 8) -> list[str]:
    """The names that come up most often (at least twice), one spelling per person."""
    counts: Counter[str] = Counter()
    spelling: dict[str, str] = {}
    for authors in author_lists:
        for author in dict.fromkeys(authors):
            key = name_key(author)
            if key is None or not key.given:
                continue
            short = f"{key.family}|{key.given[0]}"
            counts[short] += 1
            current = spelling.get(short, "")
            shown = display_name(author)
            if len(shown) > len(current):  # the fullest spelling: "Yann LeCun", not "Y. LeCun"
                spelling[short] = shown
    return [spelling[k] for k, n in counts.most_common() if n >= 2][:limit]


def followed_author(authors: Sequence[str], followed: Sequence[tuple[str, str]]) -> str | None:
    """The name (as the reader gave it) of the first followed author among ``authors``,
    given ``followed`` as (stored key, name) pairs; None when there is none."""
    if not followed:
        return None
    keys = [(NameKey.parse(key), name) for key, name in followed]
    for author in authors:
        written = name_key(author)
        if written is None:
            continue
        for key, name in keys:
            if key.matches(written):
                return name
    return None


_P = TypeVar("_P", bound=tuple[Any, ...])


def merge_followed(picks: list[_P], followed: Sequence[_P], *, limit: int) -> list[_P]:
    """An issue's picks with the papers by followed authors first: every one of them
    (they are always in the issue, even past ``limit``), then the ranked picks that are
    not among them, up to ``limit`` in all. Picks are tuples whose first item is the
    paper (with an ``id``); ``followed`` holds picks made for the followed papers."""
    if not followed:
        return picks
    first = {pick[0].id for pick in followed}
    ranked = {pick[0].id: pick for pick in picks}
    merged = [ranked.get(pick[0].id, pick) for pick in followed]
    merged += [pick for pick in picks if pick[0].id not in first]
    return merged[: max(limit, len(followed))]
