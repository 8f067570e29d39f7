"""Issues filled into skeletons (newsletter.mail.skeleton) against Jinja's own render.

The skeletons are held to the full Jinja render of the same view: subject, text and
HTML equal, and the HTML part's 7bit body equal to what the message builder makes of
Jinja's HTML. The corner cases of the fill (a CR or a NUL in a value, many reasons, a
template that uses a value in a way a marker cannot stand for) each have a test here;
the whole-message comparison over stored deliveries is tests/test_delivery_fastpath.py.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from newsletter.mail.cards import CardCache
from newsletter.mail.message import _html_part, _longest_line, quoted_printable, seven_bit
from newsletter.mail.readers import Reader
from newsletter.mail.render import RenderedIssue, Renderer
from newsletter.mail.skeleton import IssueSkeletons
from newsletter.mail.view import Issue, ItemView, build_issue_view, paper_base
from newsletter.resources import resource_path
from newsletter.settings import load_settings
from newsletter.tokens import Tokens
from recommender.explanations import LikedPaper, ReaderInterests, words_of

SECRET = "s" * 40
CARDS = [
    paper_base(
        title=f"Paper {n}: über <graphs> & “models”",
        url=f"https://arxiv.org/abs/2605.0100{n}",
        authors=["Ada Lovelace", "Jürgen Müller"],
        categories=["cs.CL", "cs.LG"],
        abstract=f"Abstract {n}. We study retrieval & language models at scale. " * 5,
        listed_on=date(2026, 5, 28),
    )
    for n in range(4)
]


def _view(
    *,
    email: str = "reader@example.org",
    interests: str = "Picked for your interests: Computation and Language",
    keywords: tuple[str, ...] = ("retrieval",),
    terms: tuple[str, ...] = ("retrieval", "language models"),
    picks: int = 4,
    locale: str = "en",
    contact_line: str = "",
) -> tuple[Issue, list[object]]:
    settings = load_settings(overrides={"secret_key": SECRET, "contact_line": contact_line})
    liked = [LikedPaper("Scaling <laws> & retrieval", words_of("scaling laws retrieval"))]
    reader = Reader(ReaderInterests(keywords, {"cs.CL": "Computation & Language"}, liked))
    items = [ItemView(rank, 1.0 / rank, terms, CARDS[rank - 1]) for rank in range(1, picks + 1)]
    view = build_issue_view(
        settings=settings,
        tokens=Tokens(SECRET),
        delivery_id=7,
        subscriber_id=3,
        token_version=1,
        email=email,
        edition=date(2026, 5, 29),
        interests=interests,
        items=items,
        locale=locale,
        reader=reader,
    )
    return view, [item.paper for item in items]


def _check(
    skeletons: IssueSkeletons, renderer: Renderer, view: Issue, shared: list
) -> RenderedIssue:
    filled = skeletons.render(view, shared)
    reference = renderer.render_issue(view)
    assert (filled.subject, filled.text, filled.html) == (
        reference.subject,
        reference.text,
        reference.html,
    )
    assert _html_part(filled.html, filled.html_7bit) == _html_part(reference.html)
    assert filled.text_qp in (None, quoted_printable(reference.text))
    return filled


def _warm(skeletons: IssueSkeletons, view: Issue, shared: list[object]) -> None:
    """Two renders: the cards cached, then the skeletons made and checked."""
    skeletons.render(view, shared)
    skeletons.render(view, shared)


@pytest.fixture
def renderer() -> Renderer:
    return Renderer()


@pytest.fixture
def skeletons(renderer: Renderer) -> IssueSkeletons:
    return IssueSkeletons(renderer, CardCache())


@pytest.mark.parametrize("locale", ["en", "de"])
@pytest.mark.parametrize("picks", [0, 1, 4])
@pytest.mark.parametrize("contact_line", ["", "1 Example Street & <Co>"])
def test_filled_issues_are_jinja_s(
    renderer: Renderer, skeletons: IssueSkeletons, locale: str, picks: int, contact_line: str
) -> None:
    view, shared = _view(picks=picks, locale=locale, contact_line=contact_line)
    _warm(skeletons, view, shared)
    before = skeletons.filled
    filled = _check(skeletons, renderer, view, shared)
    assert skeletons.filled == before + 1
    assert filled.html_7bit == seven_bit(filled.html)
    assert filled.text_qp == quoted_printable(filled.text)


def test_picks_of_other_shapes_and_places_combine(
    renderer: Renderer, skeletons: IssueSkeletons
) -> None:
    """Segments made for one issue serve another that mixes them differently."""
    first, shared = _view(terms=("retrieval",))
    second, _ = _view(terms=(), keywords=(), email="other@example.org")
    for view in (first, second):
        _warm(skeletons, view, shared)
    mixed = Issue(
        **{
            **vars(first),
            "papers": (second.papers[0], first.papers[1], second.papers[2], first.papers[3]),
        }
    )
    before = skeletons.filled
    _check(skeletons, renderer, mixed, shared)
    assert skeletons.filled == before + 1


@pytest.mark.parametrize(
    "interests",
    [
        "Picked for your interests: a\r\nb",  # a CR: the HTML part is encoded as before
        "Picked for your interests: a\x00b",  # a NUL: the values escaped one by one
        "Picked for your interests: “<b>&amp;</b>” 'quoted'",
    ],
)
def test_awkward_values(renderer: Renderer, skeletons: IssueSkeletons, interests: str) -> None:
    view, shared = _view(interests=interests)
    _warm(skeletons, view, shared)
    before = skeletons.filled
    filled = _check(skeletons, renderer, view, shared)
    assert skeletons.filled == before + 1
    assert (filled.html_7bit is None) == ("\r" in interests)
    assert (filled.text_qp is None) == ("\r" in interests)


def test_a_template_the_skeletons_get_wrong_is_caught_and_rendered_by_jinja(
    renderer: Renderer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filter on a value cannot be filled from a marker: the check on first use sees
    the difference, turns the skeletons off for the template and Jinja renders."""
    directory = tmp_path / "email"
    shutil.copytree(resource_path("templates") / "email", directory)
    path = directory / "issue.txt"
    path.write_text(path.read_text(encoding="utf-8") + "{{ email|upper }}\n", encoding="utf-8")
    changed = Renderer(directory)
    monkeypatch.setattr(Renderer, "is_packaged", lambda self, base="issue": True)
    skeletons = IssueSkeletons(changed, CardCache())
    view, shared = _view()
    for _ in range(3):
        assert skeletons.render(view, shared) == changed.render_issue(view)
    assert "READER@EXAMPLE.ORG" in skeletons.render(view, shared).text
    assert skeletons.filled == 0


def test_a_copy_of_the_packaged_templates_is_packaged(tmp_path: Path) -> None:
    directory = tmp_path / "email"
    shutil.copytree(resource_path("templates") / "email", directory)
    assert Renderer(directory).is_packaged()
    (directory / "issue.subject.txt").write_text("{{ subject_line }}!\n", encoding="utf-8")
    assert not Renderer(directory).is_packaged()


@pytest.mark.parametrize(
    "html",
    ["", "one line", "a\nbb\nccc", "x" * 999, "a\n" + "y" * 999, "z" * 999 + "\nq", "é\n" * 3],
)
def test_longest_line_of_a_7bit_body_counts_as_the_lf_text(html: str) -> None:
    data = html.encode("ascii", "xmlcharrefreplace")
    assert _longest_line(seven_bit(html), crlf=True) == _longest_line(data)
    # A line past 998 bytes makes the part quoted-printable, whichever way it came.
    assert _html_part(html, seven_bit(html)) == _html_part(html)


def test_a_fault_in_the_fill_falls_back_to_jinja(
    renderer: Renderer, skeletons: IssueSkeletons, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the fill must not fail a delivery: the issue renders through Jinja and
    the skeletons stay off for the template."""
    view, shared = _view()
    _warm(skeletons, view, shared)
    before = skeletons.filled

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(IssueSkeletons, "_fill", broken)
    assert skeletons.render(view, shared) == renderer.render_issue(view)
    monkeypatch.undo()
    assert skeletons.render(view, shared) == renderer.render_issue(view)
    assert skeletons.filled == before  # off for this template since the fault
