"""Following authors: the name rule, and which papers a follow brings."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from newsletter.db import SessionFactory
from newsletter.models import FollowedAuthor, Subscriber
from newsletter.planning.follows import (
    display_name,
    followed_matches,
    followed_papers,
    frequent_authors,
    merge_followed,
    name_key,
)


@pytest.mark.parametrize(
    ("followed", "author", "same"),
    [
        ("Yann LeCun", "Y. LeCun", True),
        ("Yann LeCun", "Yann Le Cun", True),
        ("LeCun, Yann", "yann lecun", True),
        ("Y. LeCun", "Yann LeCun", True),
        ("Yann LeCun", "Yan LeCun", False),
        ("Émile Borel", "E. Borel", True),
        ("Emile Borel", "Émile Borel", True),
        ("J.-P. Serre", "Jean-Pierre Serre", True),
        ("LeCun", "Yann LeCun", True),  # a family name alone: everyone of that name
        ("Yann LeCun", "LeCun", False),
        ("Yoshua Bengio", "Samy Bengio", False),
        ("Ludwig van Beethoven", "L. Beethoven", False),  # a documented limit
    ],
)
def test_name_matching(followed: str, author: str, same: bool) -> None:
    key, other = name_key(followed), name_key(author)
    assert key is not None
    assert other is not None
    assert key.matches(other) is same


def test_not_a_name() -> None:
    assert name_key("...") is None
    assert display_name("LeCun, Yann") == "Yann LeCun"


def test_frequent_authors_count_people_not_spellings() -> None:
    lists = [
        ["Y. LeCun", "A. Other"],
        ["LeCun, Yann", "B. Once"],
        ["Yann LeCun"],
        ["A. Other"],
    ]
    assert frequent_authors(lists) == ["Yann LeCun", "A. Other"]


@dataclass
class _Paper:
    id: int
    authors: list[str] = field(default_factory=list)


@pytest.mark.sqlite_only
def test_followed_papers_per_subscriber(sessions: SessionFactory) -> None:
    with sessions.begin() as session:
        ada, bob = Subscriber(email="ada@example.org"), Subscriber(email="bob@example.org")
        session.add_all([ada, bob])
        session.flush()
        for subscriber, name in [(ada, "Yann LeCun"), (ada, "Fei-Fei Li"), (bob, "Bengio")]:
            session.add(
                FollowedAuthor(subscriber_id=subscriber.id, name=name, key=str(name_key(name)))
            )
        session.flush()
        papers = [
            _Paper(1, ["A. Author", "Y. LeCun"]),
            _Paper(2, ["Samy Bengio", "Yoshua Bengio"]),
            _Paper(3, ["F. Li", "Yann Le Cun"]),
            _Paper(4, []),
        ]
        found = followed_papers(session, [ada.id, bob.id], papers)
        matches = followed_matches(session, [ada.id], papers)
        assert found == {ada.id: [1, 3], bob.id: [2]}
        assert [m.name for m in matches[ada.id]] == ["Yann LeCun", "Fei-Fei Li"]


def test_merge_followed_puts_every_followed_paper_first() -> None:
    a, b, c, d = (_Paper(i) for i in range(1, 5))
    ranked = [(a, 0.9, ["x"]), (b, 0.8, ["y"]), (c, 0.7, [])]
    merged = merge_followed(ranked, [(c, 0.0, []), (d, 0.0, [])], limit=3)
    assert [(p.id, score) for p, score, _ in merged] == [(3, 0.7), (4, 0.0), (1, 0.9)]
    # Past the limit when more followed papers than room: they are always in.
    assert len(merge_followed(ranked, [(p, 0.0, []) for p in (a, b, c, d)], limit=2)) == 4
    assert merge_followed(ranked, [], limit=1) == ranked
