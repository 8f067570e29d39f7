"""Renderer: MJML compiled once per template version, then filled per subscriber."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

import newsletter.mail.render as render_module
from newsletter.errors import TemplateError
from newsletter.mail.render import (
    IssueView,
    PaperView,
    RenderedIssue,
    Renderer,
    shorten_authors,
    trim_text,
)
from newsletter.resources import demo_feed_dir, resource_path

TEMPLATES = resource_path("templates") / "email"
PARTS = ("issue.mjml", "issue.txt", "issue.subject.txt")
GMAIL_CLIP_BYTES = 102_000  # Gmail clips HTML bodies above about 102 KB

HOSTILE_TITLE = '<script>alert(1)</script> & "q"'


def make_paper(index: int, **changes: str) -> PaperView:
    paper = PaperView(
        title=f"Sparse attention for long documents, part {index}",
        url=f"https://arxiv.org/abs/2605.{27000 + index}?v=2&src=feed",
        authors=f"Ada Lovelace{index}, Alan Turing, Grace Hopper et al.",
        categories="cs.CL, cs.LG",
        abstract=f"We study attention number {index} & show that <sparse> patterns suffice.",
        terms=f"attention{index}, transformer, long context",
        score=0.5 - index / 100,
    )
    return replace(paper, **changes)


def rendered_title(index: int) -> str:
    return make_paper(index).title


def make_view(papers: tuple[PaperView, ...]) -> IssueView:
    return IssueView(
        email="ada@example.com",
        list_name="Paper Newsletter",
        edition_label="Wednesday 27 May 2026",
        heading=f"{len(papers)} new papers for you",
        interests_line="Picked for your interests: Computation and Language, “graphs”",
        preheader=papers[0].title if papers else "",
        papers=papers,
        manage_url="https://papers.example.org/manage/WzQyLDNd.aww-yg.Q_UreFVwNqfANIuvfVNM",
        unsubscribe_url="https://papers.example.org/unsubscribe/WzQyLDNd.aww-yg.6VWQjqhvtW3s",
        view_url="https://papers.example.org/view/WzQyLDMsN10.aww-yg.ZfdMY0ARZ7HcaxY5MHpT",
    )


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


@pytest.fixture(scope="module")
def three_papers() -> tuple[PaperView, ...]:
    return (make_paper(1), make_paper(2, title=HOSTILE_TITLE), make_paper(3))


@pytest.fixture(scope="module")
def rendered(renderer: Renderer, three_papers: tuple[PaperView, ...]) -> RenderedIssue:
    return renderer.render_issue(make_view(three_papers))


@pytest.fixture
def templates_copy(tmp_path: Path) -> Path:
    target = tmp_path / "email"
    shutil.copytree(TEMPLATES, target)
    return target


def touch_forward(path: Path, seconds: float = 10.0) -> None:
    stat = path.stat()
    os.utime(path, (stat.st_atime + seconds, stat.st_mtime + seconds))


# --- rendering ---------------------------------------------------------------


def test_render_returns_all_three_parts(rendered: RenderedIssue) -> None:
    # A bare IssueView (no subject_line of mail.view.Issue): the list, date and top title.
    assert rendered.subject == f"Paper Newsletter · Wednesday 27 May 2026: {rendered_title(1)}"
    assert rendered.html.lstrip().lower().startswith("<!doctype html>")
    assert "</html>" in rendered.html
    assert rendered.text.startswith(f"{rendered_title(1)}\n")
    assert "\nPaper Newsletter · Wednesday 27 May 2026\n3 new papers for you\n" in rendered.text


@pytest.mark.parametrize("field", ["title", "url", "authors", "categories", "abstract", "terms"])
def test_every_paper_field_is_in_html_and_text(
    rendered: RenderedIssue, three_papers: tuple[PaperView, ...], field: str
) -> None:
    for paper in three_papers:
        value = getattr(paper, field)
        assert str(escape(value)) in rendered.html, (field, value)
        assert value in rendered.text, (field, value)


def test_why_line_is_in_html_and_text(
    rendered: RenderedIssue, three_papers: tuple[PaperView, ...]
) -> None:
    for paper in three_papers:
        assert f"Why: matched terms: {escape(paper.terms)}" in rendered.html
        assert f"Why: matched terms: {paper.terms}" in rendered.text


def test_papers_appear_in_order_in_both_parts(
    rendered: RenderedIssue, three_papers: tuple[PaperView, ...]
) -> None:
    html_positions = [rendered.html.index(str(escape(p.url))) for p in three_papers]
    text_positions = [rendered.text.index(p.url) for p in three_papers]
    assert html_positions == sorted(html_positions)
    assert text_positions == sorted(text_positions)
    for number, paper in enumerate(three_papers, start=1):
        assert f"{number}. {paper.title}\n" in rendered.text


def test_issue_level_fields_are_in_html_and_text(rendered: RenderedIssue) -> None:
    view = make_view(())
    for value in (view.edition_label, view.interests_line, view.email, view.list_name):
        assert str(escape(value)) in rendered.html, value
        assert value in rendered.text, value
    assert "3 new papers for you" in rendered.html
    assert "3 new papers for you" in rendered.text


@pytest.mark.parametrize("link", ["manage_url", "unsubscribe_url", "view_url"])
def test_footer_links_are_in_html_and_text(rendered: RenderedIssue, link: str) -> None:
    url = getattr(make_view(()), link)
    assert f'href="{escape(url)}"' in rendered.html
    assert url in rendered.text


def test_footer_links_are_labelled_in_text(rendered: RenderedIssue) -> None:
    view = make_view(())
    assert f"Preferences: {view.manage_url}\n" in rendered.text
    assert f"Unsubscribe: {view.unsubscribe_url}\n" in rendered.text
    assert f"View online: {view.view_url}\n" in rendered.text


def test_html_is_autoescaped(rendered: RenderedIssue) -> None:
    assert "<script" not in rendered.html
    assert "alert(1)</script>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;q&#34;" in rendered.html
    assert "&lt;sparse&gt;" in rendered.html
    assert "<sparse>" not in rendered.html


def test_text_is_not_escaped(rendered: RenderedIssue) -> None:
    assert HOSTILE_TITLE in rendered.text
    assert "&lt;" not in rendered.text
    assert "&amp;" not in rendered.text
    assert "https://arxiv.org/abs/2605.27001?v=2&src=feed" in rendered.text


def test_url_cannot_break_out_of_the_href_attribute(renderer: Renderer) -> None:
    evil = 'https://e.org/"><img src=x onerror=alert(1)>'
    result = renderer.render_issue(make_view((make_paper(1, url=evil),)))
    assert "<img src=x" not in result.html
    assert 'href="https://e.org/&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"' in result.html


def test_subject_is_one_line_even_if_the_title_has_line_breaks(renderer: Renderer) -> None:
    title = "Line one\r\nBcc: evil@example.org\nline three\rfour\u2028five\tsix"
    result = renderer.render_issue(make_view((make_paper(1, title=title), make_paper(2))))
    assert "\r" not in result.subject
    assert "\n" not in result.subject
    assert "\u2028" not in result.subject
    assert "  " not in result.subject
    assert result.subject.endswith(": Line one Bcc: evil@example.org line three four five six")


def test_subject_of_a_single_paper_issue_has_no_more_suffix(renderer: Renderer) -> None:
    result = renderer.render_issue(make_view((make_paper(1),)))
    assert result.subject == (
        "Paper Newsletter · Wednesday 27 May 2026: Sparse attention for long documents, part 1"
    )


def test_html_title_is_the_one_line_subject(renderer: Renderer) -> None:
    result = renderer.render_issue(make_view((make_paper(1, title="Two\nlines"),)))
    assert f"<title>{escape(result.subject)}</title>" in result.html


# --- compilation and caching -----------------------------------------------------


def test_compiled_template_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = render_module.mjml2html

    def counting(source: str, **options: Any) -> str:
        calls.append(source)
        return real(source, **options)

    monkeypatch.setattr(render_module, "mjml2html", counting)
    renderer = Renderer()
    first = renderer._compile("issue.mjml", mjml=True)
    second = renderer._compile("issue.mjml", mjml=True)
    assert first is second
    view = make_view((make_paper(1),))
    renderer.render_issue(view)
    renderer.render_issue(view)
    assert len(calls) == 1
    assert len(renderer._cache) == 3


def test_template_is_recompiled_when_its_file_changes(templates_copy: Path) -> None:
    renderer = Renderer(templates_copy, recheck_seconds=0)
    view = make_view((make_paper(1),))
    before = renderer.render_issue(view)
    assert "Preferences" in before.html
    mjml = templates_copy / "issue.mjml"
    mjml.write_text(mjml.read_text(encoding="utf-8").replace("Preferences", "Your settings"))
    text = templates_copy / "issue.txt"
    source = text.read_text(encoding="utf-8")
    assert '_("View online")' in source
    text.write_text(source.replace('_("View online")', '_("Read online")'))
    touch_forward(mjml)
    touch_forward(text)
    after = renderer.render_issue(view)
    assert "Your settings" in after.html
    assert "Preferences" not in after.html
    assert "Read online: " in after.text
    assert "View online:" not in after.text


def test_a_changed_template_is_seen_by_check_at_once(templates_copy: Path) -> None:
    renderer = Renderer(templates_copy)  # files are re-read at most once a second...
    view = make_view((make_paper(1),))
    assert "Preferences" in renderer.render_issue(view).html
    mjml = templates_copy / "issue.mjml"
    mjml.write_text(mjml.read_text(encoding="utf-8").replace("Preferences", "Your settings"))
    touch_forward(mjml)
    renderer.check()  # ...but check(), run before every send, looks now
    assert "Your settings" in renderer.render_issue(view).html


def test_unchanged_templates_are_not_recompiled_in_a_copy(templates_copy: Path) -> None:
    renderer = Renderer(templates_copy)
    renderer.check()
    compiled = renderer._compile("issue.mjml", mjml=True)
    touch_forward(templates_copy / "issue.txt")
    renderer.check()
    assert renderer._compile("issue.mjml", mjml=True) is compiled


@pytest.mark.parametrize(
    "source",
    [
        "<mjml><mj-body>",
        "<mjml><mj-body><mj-section><mj-column><mj-text>x</mj-column></mj-section></mj-body>",
        "",
        "<mjml><mj-bodyx></mj-bodyx></mjml>",
    ],
)
def test_broken_mjml_raises_template_error_naming_the_file(
    templates_copy: Path, source: str
) -> None:
    path = templates_copy / "issue.mjml"
    path.write_text(source, encoding="utf-8")
    renderer = Renderer(templates_copy)
    with pytest.raises(TemplateError, match="does not compile") as info:
        renderer.render_issue(make_view((make_paper(1),)))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", PARTS)
def test_jinja_syntax_error_raises_template_error_naming_the_file(
    templates_copy: Path, name: str
) -> None:
    path = templates_copy / name
    source = path.read_text(encoding="utf-8")
    # In the MJML, inside an mj-text so that the MJML stays valid and Jinja fails.
    source = source.replace("{{ edition_label }}", "{{ edition_label }}{% for %}", 1)
    assert "{% for %}" in source
    path.write_text(source, encoding="utf-8")
    renderer = Renderer(templates_copy)
    with pytest.raises(TemplateError) as info:
        renderer.render_issue(make_view((make_paper(1),)))
    assert str(path) in str(info.value)
    assert "does not compile" in str(info.value)


def test_template_in_another_encoding_raises_template_error(templates_copy: Path) -> None:
    path = templates_copy / "issue.txt"
    path.write_bytes("Grüße {{ heading }}\n".encode("latin-1"))
    renderer = Renderer(templates_copy)
    with pytest.raises(TemplateError) as info:
        renderer.check()
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", PARTS)
def test_missing_template_raises_template_error(templates_copy: Path, name: str) -> None:
    path = templates_copy / name
    path.unlink()
    renderer = Renderer(templates_copy)
    with pytest.raises(TemplateError, match="does not exist") as info:
        renderer.render_issue(make_view((make_paper(1),)))
    assert str(path) in str(info.value)


def test_missing_templates_directory_raises_template_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError):
        Renderer(tmp_path / "nowhere").check()


def test_check_compiles_all_three_parts(templates_copy: Path) -> None:
    renderer = Renderer(templates_copy)
    renderer.check()
    assert {name for name, _ in renderer._cache} == set(PARTS)


@pytest.mark.parametrize("name", PARTS)
def test_check_reports_a_broken_part(templates_copy: Path, name: str) -> None:
    path = templates_copy / name
    path.write_text("{% if %}", encoding="utf-8")
    with pytest.raises(TemplateError) as info:
        Renderer(templates_copy).check()
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", PARTS)
def test_undefined_variable_raises_template_error(templates_copy: Path, name: str) -> None:
    path = templates_copy / name
    source = path.read_text(encoding="utf-8")
    if name == "issue.mjml":
        source = source.replace("{{ heading }}", "{{ heading }} {{ no_such_variable }}")
    else:
        source = "{{ no_such_variable }}" + source
    path.write_text(source, encoding="utf-8")
    renderer = Renderer(templates_copy)
    renderer.check()  # compiles: the name is only unknown when filled
    with pytest.raises(TemplateError, match="no_such_variable") as info:
        renderer.render_issue(make_view((make_paper(1),)))
    assert str(path) in str(info.value)


def test_undefined_attribute_raises_template_error(templates_copy: Path) -> None:
    path = templates_copy / "issue.txt"
    path.write_text("{% for paper in papers %}{{ paper.doi }}{% endfor %}", encoding="utf-8")
    with pytest.raises(TemplateError, match="doi"):
        Renderer(templates_copy).render_issue(make_view((make_paper(1),)))


# --- size --------------------------------------------------------------------------


def realistic_papers(count: int) -> tuple[PaperView, ...]:
    """The papers of the demo feed with the longest titles and abstracts (a worst case)."""
    with gzip.open(demo_feed_dir() / "2026-05-27.jsonl.gz", "rt", encoding="utf-8") as feed:
        records = [json.loads(line) for line in feed]
    records.sort(key=lambda r: len(r["title"]) + len(r["summary"]), reverse=True)
    return tuple(
        PaperView(
            title=" ".join(r["title"].split()),
            url=r["abs"],
            authors=shorten_authors(r["authors"]),
            categories=", ".join(r["categories"]),
            abstract=trim_text(" ".join(r["summary"].split())),
            terms="graph neural networks, message passing, molecular property prediction",
            score=0.31,
        )
        for r in records[:count]
    )


def test_twenty_paper_issue_is_not_clipped_by_gmail(renderer: Renderer) -> None:
    papers = realistic_papers(20)
    assert all(len(p.abstract) > 400 for p in papers)
    result = renderer.render_issue(make_view(papers))
    size = len(result.html.encode("utf-8"))
    print(f"20-paper HTML: {size} bytes; text: {len(result.text.encode('utf-8'))} bytes")
    assert size < GMAIL_CLIP_BYTES
    for paper in papers:
        assert str(escape(paper.title)) in result.html
        assert paper.title in result.text


# --- helpers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authors", "expected"),
    [
        ([], ""),
        (["Ada Lovelace"], "Ada Lovelace"),
        (["A", "B"], "A, B"),
        (["A", "B", "C"], "A, B, C"),
        (["A", "B", "C", "D"], "A, B, C et al."),
        ([f"Author {i}" for i in range(50)], "Author 0, Author 1, Author 2 et al."),
    ],
)
def test_shorten_authors(authors: list[str], expected: str) -> None:
    assert shorten_authors(authors) == expected


def test_shorten_authors_keep() -> None:
    assert shorten_authors(["A", "B", "C"], keep=1) == "A et al."
    assert shorten_authors(["A", "B", "C"], keep=5) == "A, B, C"


@pytest.mark.parametrize("text", ["", "short", "x" * 420, "word " * 84])
def test_trim_text_leaves_short_text_alone(text: str) -> None:
    assert len(text) <= 420
    assert trim_text(text) == text


def test_trim_text_cuts_at_a_word_boundary() -> None:
    text = "alpha beta gamma delta epsilon zeta"
    result = trim_text(text, limit=20)
    assert result == "alpha beta gamma …"
    assert text.startswith(result.removesuffix(" …"))


def test_trim_text_never_cuts_inside_a_word() -> None:
    text = "We propose a polyconvex constitutive model for anisotropic hyperelasticity. " * 20
    words = set(text.split())
    for limit in range(10, 400, 7):
        result = trim_text(text, limit=limit)
        assert result.endswith(" …")
        kept = result.removesuffix(" …").split()
        assert kept
        assert all(word.rstrip(",;:.") in {w.rstrip(",;:.") for w in words} for word in kept)
        assert text.startswith(result.removesuffix(" …"))


def test_trim_text_drops_trailing_punctuation_before_the_mark() -> None:
    assert trim_text("one two, three four", limit=12) == "one two …"


@pytest.mark.parametrize("limit", [1, 5, 20, 100, 420])
def test_trim_text_is_never_longer_than_limit_plus_two(limit: int) -> None:
    for text in ("a" * 1000, "ab " * 500, "longword " * 200, "x" * (limit + 1)):
        assert len(trim_text(text, limit=limit)) <= limit + 2


def test_trim_text_default_limit() -> None:
    text = "lorem ipsum " * 100
    result = trim_text(text)
    assert len(result) <= 422
    assert result.endswith(" …")
    assert len(result) > 400


def test_issue_loads_nothing_remote(rendered: RenderedIssue) -> None:
    html = rendered.html
    assert "fonts.googleapis" not in html
    assert "<link" not in html
    assert "@import" not in html


def test_no_line_of_the_compiled_html_templates_starts_with_a_dot() -> None:
    # SMTP doubles such a dot on the wire (RFC 5321 4.5.2), a copy of the whole message;
    # MJML's head CSS has one (.mj-outlook-group-fix), which now starts with a space.
    from mjml import mjml2html

    for template in sorted((resource_path("templates") / "email").glob("*.mjml")):
        html = mjml2html(template.read_text(), fonts={})
        raw = render_module._BREAK_AFTER.sub("\\1\n", html)
        compiled = render_module.break_lines(html)
        assert "\n." not in compiled, template.name
        assert compiled.replace("\n .", "\n.") == raw, template.name
    assert "\n.mj-outlook-group-fix" in raw  # what the rule is for
