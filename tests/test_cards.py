"""Paper cards rendered once per paper (newsletter.mail.cards) through the real Renderer."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

from newsletter.errors import TemplateError
from newsletter.mail.cards import CardCache
from newsletter.mail.render import IssueView, PaperView, Renderer

MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-raw>{% for paper in papers %}{% call(card) paper_card(paper) %}</mj-raw>
<mj-text><a href="{{ card.url }}">{{ card.title }}</a>
 {{ _("Abstract") }}: {{ card.abstract }}</mj-text>
<mj-raw>{% endcall %}</mj-raw>
<mj-text>{{ loop.index }} {{ paper.terms }} <a href="{{ paper.more_url }}">more</a></mj-text>
<mj-raw>{% endfor %}</mj-raw>
<mj-text>{{ email }}</mj-text>
</mj-column></mj-section></mj-body></mjml>
"""
TEXT = """{% for paper in papers %}{{ loop.index }}. {% call(card) paper_card(paper) -%}
{{ card.title }}
   {{ card.url }}
{% endcall %}   {{ paper.terms }} {{ paper.more_url }}
{% endfor %}{{ email }}
"""
SUBJECT = "{{ papers[0].title }}\n"

BASES = [
    PaperView(
        title=f"Paper <{n}> & co",
        url=f"https://arxiv.org/abs/2605.0000{n}",
        authors="A. Author",
        categories="cs.CL",
        abstract=f"Abstract {n} with ünïcode.",
        terms="",
        score=0.0,
    )
    for n in range(3)
]


def write_templates(directory: Path, *, mjml: str = MJML, text: str = TEXT) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "issue.mjml").write_text(mjml, encoding="utf-8")
    (directory / "issue.txt").write_text(text, encoding="utf-8")
    (directory / "issue.subject.txt").write_text(SUBJECT, encoding="utf-8")
    return directory


def view_for(email: str, picks: list[int], terms: str) -> tuple[IssueView, list[PaperView]]:
    shared = [BASES[n] for n in picks]
    papers = tuple(
        replace(base, terms=f"{terms}{rank}", score=0.5, more_url=f"https://x/{email}/{rank}")
        for rank, base in enumerate(shared, 1)
    )
    view = IssueView(
        email=email,
        list_name="Papers",
        edition_label="29 May 2026",
        heading="new papers",
        interests_line="",
        preheader="",
        papers=papers,
        manage_url="https://x/m",
        unsubscribe_url="https://x/u",
        view_url="https://x/v",
    )
    return view, shared


def test_cached_cards_render_exactly_what_the_uncached_path_renders(tmp_path: Path) -> None:
    renderer = Renderer(write_templates(tmp_path / "t"))
    renderer.check()
    cache = CardCache()
    readers = [
        view_for("ada@example.org", [0, 1, 2], "llm"),
        view_for("bob@example.org", [2, 0], "vision"),
        view_for("cy@example.org", [1, 2, 0], "speech"),
    ]
    for view, shared in readers:
        cached = renderer.render_issue(view, cards=cache, shared=shared)
        plain = renderer.render_issue(view)
        assert cached == plain
        # the personal parts are the reader's own, the card the paper's
        assert view.email in cached.text
        assert view.email in cached.html
        assert all(p.more_url in cached.text for p in view.papers)
    assert "Paper &lt;0&gt; &amp; co" in plain.html  # still escaped in the cached block
    # three papers, two templates with a card block: rendered six times, reused after
    assert cache.misses == 6
    assert cache.hits == 2 * (3 + 2 + 3) - 6


def test_a_changed_template_is_not_served_from_the_cache(tmp_path: Path) -> None:
    directory = write_templates(tmp_path / "t")
    renderer = Renderer(directory, recheck_seconds=0)
    cache = CardCache()
    view, shared = view_for("ada@example.org", [0], "llm")
    before = renderer.render_issue(view, cards=cache, shared=shared)
    write_templates(directory, text=TEXT.replace("{{ card.url }}", "<{{ card.url }}>"))
    os.utime(directory / "issue.txt", (1, 2_000_000_000))  # a new mtime, even on coarse clocks
    after = renderer.render_issue(view, cards=cache, shared=shared)
    assert f"<{BASES[0].url}>" in after.text
    assert f"<{BASES[0].url}>" not in before.text


@pytest.mark.parametrize(
    ("block", "why"),
    [
        ("{{ paper.title }}", "reads 'paper'"),
        ("{{ loop.index }}", "reads 'loop'"),
        ("{{ email }}", "reads 'email'"),
        ("{{ card.terms }}", "card.terms differs per reader"),
        ("{{ card.more_url }}", "card.more_url differs per reader"),
        ("{{ card['why'] }}", "card['why'] differs per reader"),
    ],
)
def test_a_card_block_that_reads_personal_data_is_refused_at_check(
    tmp_path: Path, block: str, why: str
) -> None:
    text = (
        "{% for paper in papers %}{% call(card) paper_card(paper) %}"
        + block
        + ("{% endcall %}{% endfor %}")
    )
    renderer = Renderer(write_templates(tmp_path / "t", text=text))
    with pytest.raises(TemplateError, match=re.escape(why)):
        renderer.check()


def test_names_set_inside_the_block_and_translations_are_allowed(tmp_path: Path) -> None:
    text = (
        "{% for paper in papers %}{% call(card) paper_card(paper) %}"
        "{% set link = card.url %}{{ _('PDF') }} {{ link }} "
        "{% for word in card.title.split() %}{{ loop.index }}{{ word }}{% endfor %}"
        "{% endcall %}{% endfor %}"
    )
    renderer = Renderer(write_templates(tmp_path / "t", text=text))
    renderer.check()
    view, shared = view_for("ada@example.org", [0], "llm")
    rendered = renderer.render_issue(view, cards=CardCache(), shared=shared)
    assert f"PDF {BASES[0].url} 1Paper" in rendered.text


def test_the_cache_stays_bounded(tmp_path: Path) -> None:
    renderer = Renderer(write_templates(tmp_path / "t"))
    cache = CardCache(max_entries=4)
    for picks in ([0, 1], [2], [1, 2, 0]):
        view, shared = view_for("ada@example.org", picks, "llm")
        assert renderer.render_issue(view, cards=cache, shared=shared) == renderer.render_issue(
            view
        )
        assert len(cache) <= 4
