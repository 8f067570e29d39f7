"""The designed issue: size, text part, links, colours, languages, spam score, screenshots."""

from __future__ import annotations

import email
import json
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, date, datetime
from email import policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from markupsafe import escape
from sqlalchemy import Engine, text

from newsletter import i18n
from newsletter.mail.message import MessageHeaders, build_message, message_id_for
from newsletter.mail.readers import Reader
from newsletter.mail.render import IssueView, RenderedIssue, Renderer
from newsletter.mail.view import ItemView, build_issue_view, interests_text, paper_base
from newsletter.models import Subscriber
from newsletter.resources import resource_path
from newsletter.settings import Settings, load_settings
from newsletter.tokens import Tokens
from newsletter.web.mailer import Mail, Mailer
from recommender.explanations import ReaderInterests
from tests.conftest import REPO, TEST_SECRET
from tests.test_message import EXPECTED_HEADERS

PUBLIC_URL = "https://papers.example.org"
CONTACT = "Paper Newsletter · 1 Example Street, 10115 Berlin · hello@papers.example.org"
EDITION = date(2026, 5, 27)
GMAIL_CLIP_BYTES = 102_000
SCREENSHOTS = REPO / "screenshots" / "email"
WHY_COLOUR = "#0f766e"


@pytest.fixture(scope="module")
def prod_settings() -> Settings:
    """A production-like configuration: public URL over HTTPS."""
    return load_settings(
        overrides={
            "secret_key": TEST_SECRET,
            "public_url": PUBLIC_URL,
            "sender": "Paper Newsletter <issues@papers.example.org>",
        }
    )


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


@pytest.fixture(scope="module")
def records() -> list[dict[str, object]]:
    path = REPO.parent / "shared" / "data" / "arxiv-daily" / "2026-05-27.jsonl"
    with path.open(encoding="utf-8") as feed:
        return [json.loads(line) for line in feed]


READER = Reader(
    ReaderInterests(
        keywords=["retrieval augmented generation"],
        topics={"cs.CL": "Computation and Language", "cs.LG": "Machine Learning"},
    )
)


def make_view(
    settings: Settings,
    records: list[dict[str, object]],
    *,
    count: int = 8,
    locale: str = "en",
    longest: bool = False,
) -> IssueView:
    """The view of a delivery of ``count`` real papers, as the delivery workers build it."""
    chosen = list(records)
    if longest:  # a worst case for size: the longest titles and abstracts
        chosen.sort(key=lambda r: len(str(r["title"])) + len(str(r["summary"])), reverse=True)
    items = [
        ItemView(
            rank=rank,
            score=0.4 - rank / 100,
            terms=["language models", "retrieval", "evaluation"][: 1 + rank % 3],
            paper=paper_base(
                title=" ".join(str(r["title"]).split()),
                url=str(r["abs"]),
                authors=list(r["authors"]),  # type: ignore[call-overload]
                categories=list(r["categories"]),  # type: ignore[call-overload]
                abstract=" ".join(str(r["summary"]).split()),
            ),
        )
        for rank, r in enumerate(chosen[:count], start=1)
    ]
    view = build_issue_view(
        settings=settings,
        tokens=Tokens(TEST_SECRET),
        delivery_id=1234,
        subscriber_id=42,
        token_version=3,
        email="ada.lovelace@example.org",
        edition=EDITION,
        interests=interests_text(
            ["Computation and Language", "Machine Learning"], ["retrieval augmented generation"]
        ),
        items=items,
        locale=locale,
        reader=READER,
    )
    return replace(view, contact_line=CONTACT)


def assemble(view: IssueView, rendered: RenderedIssue, settings: Settings) -> bytes:
    return build_message(
        rendered,
        MessageHeaders(
            sender=settings.sender,
            to_address=view.email,
            to_name="Ada Lovelace",
            message_id=message_id_for(
                delivery_id=1234, edition=EDITION, sender_address=settings.sender_address
            ),
            list_id=settings.effective_list_id,
            list_name=view.list_name,
            unsubscribe_url=view.unsubscribe_url,
            date=datetime(2026, 5, 27, 6, 0, tzinfo=UTC),
        ),
    )


class _Html(HTMLParser):
    """Links, visible text and the tags of an HTML part."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.anchor_texts: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._skip = 0
        self._anchor: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("style", "title"):
            self._skip += 1
        if tag == "a":
            self.hrefs.append(dict(attrs).get("href") or "")
            self._anchor = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title"):
            self._skip -= 1
        if tag == "a" and self._anchor is not None:
            self.anchor_texts.append(" ".join("".join(self._anchor).split()))
            self._anchor = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.text.append(data)
        if self._anchor is not None:
            self._anchor.append(data)

    @property
    def visible(self) -> str:
        return " ".join(" ".join(self.text).split())


def parse_html(html: str) -> _Html:
    parser = _Html()
    parser.feed(html)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def typical(
    prod_settings: Settings, records: list[dict[str, object]], renderer: Renderer
) -> tuple[IssueView, RenderedIssue]:
    view = make_view(prod_settings, records)
    return view, renderer.render_issue(view)


# --- size -----------------------------------------------------------------------------


def test_twenty_paper_issue_stays_under_gmail_clipping(
    prod_settings: Settings, records: list[dict[str, object]], renderer: Renderer
) -> None:
    view = make_view(prod_settings, records, count=20, longest=True)
    result = renderer.render_issue(view)
    size = len(result.html.encode("utf-8"))
    part = assemble(view, result, prod_settings)
    print(f"20-paper issue: HTML {size} bytes, whole message {len(part)} bytes")
    assert len(view.papers) == 20
    assert all(p.read_on and len(p.abstract) > 200 for p in view.papers)
    # Gmail clips past GMAIL_CLIP_BYTES; hand-written card tables keep the worst case
    # well inside it (an mj-section per card made this one 89 KB).
    assert size < 0.7 * GMAIL_CLIP_BYTES
    # Title, "read on" (the abstract page), PDF, more, less; three in the footer.
    assert len(parse_html(result.html).hrefs) == 20 * 5 + 3


# --- the text part says what the HTML says -------------------------------------------------


def test_every_link_of_the_html_is_in_the_text(typical: tuple[IssueView, RenderedIssue]) -> None:
    view, result = typical
    html = parse_html(result.html)
    assert len(html.hrefs) == 5 * len(view.papers) + 3
    for href in html.hrefs:
        assert href in result.text, href


def test_every_link_label_and_title_of_the_html_is_in_the_text(
    typical: tuple[IssueView, RenderedIssue],
) -> None:
    view, result = typical
    html = parse_html(result.html)
    for label in html.anchor_texts:
        assert label in result.text, label
    for paper in view.papers:
        assert paper.title in html.anchor_texts
        assert f". {paper.title}\n" in result.text


@pytest.mark.parametrize("locale", ["en", "de"])
def test_every_sentence_of_the_html_is_in_the_text(
    prod_settings: Settings, records: list[dict[str, object]], renderer: Renderer, locale: str
) -> None:
    result = renderer.render_issue(make_view(prod_settings, records, count=4, locale=locale))
    text = " ".join(result.text.split())
    html = parse_html(result.html)
    pieces = [p.strip(" ·") for p in re.split(r"\s{2,}|·", "  ".join(html.text))]
    pieces = [" ".join(p.split()) for p in pieces if p.strip(" ·\u00a0\u200a")]
    assert len(pieces) > 20
    for piece in pieces:
        assert piece in text, piece


def test_footer_and_contact_line_are_in_both_parts(
    typical: tuple[IssueView, RenderedIssue],
) -> None:
    view, result = typical
    assert f"Preferences: {view.manage_url}\n" in result.text
    assert f"Unsubscribe: {view.unsubscribe_url}\n" in result.text
    assert f"View online: {view.view_url}\n" in result.text
    assert CONTACT in result.text
    assert str(escape(CONTACT)) in result.html
    footer = result.html[result.html.index(str(escape(CONTACT))) - 3000 :]
    for url in (view.manage_url, view.unsubscribe_url, view.view_url):
        assert f'href="{url}"' in footer


def test_without_a_contact_line_the_footer_has_none(
    typical: tuple[IssueView, RenderedIssue], renderer: Renderer
) -> None:
    view, _ = typical
    result = renderer.render_issue(replace(view, contact_line=""))
    assert CONTACT not in result.text
    assert "Berlin" not in result.html
    assert result.text.rstrip().endswith(view.view_url)


# --- links, resources, colours -------------------------------------------------------------


def test_every_link_is_absolute_https(typical: tuple[IssueView, RenderedIssue]) -> None:
    _, result = typical
    hrefs = parse_html(result.html).hrefs
    assert hrefs
    for href in hrefs:
        assert href.startswith("https://"), href
    for url in re.findall(r"https?://\S+", result.text):
        assert url.startswith("https://"), url


def test_no_tracking_pixel_and_nothing_remote(typical: tuple[IssueView, RenderedIssue]) -> None:
    _, result = typical
    tags = parse_html(result.html).tags
    assert not [t for t, _ in tags if t in ("img", "link", "script", "iframe", "object")]
    assert not [a for _, a in tags if "src" in a or "background" in a]
    assert "url(" not in result.html
    assert "@import" not in result.html
    assert "@font-face" not in result.html


def _style_of(html: str, text: str) -> str:
    """The inline style of the element whose own text starts with ``text``."""
    match = re.search(r'<(?:div|td)(?: class="[^"]*")? style="([^"]*)">' + re.escape(text), html)
    assert match, text
    return match.group(1)


def test_why_line_has_its_own_colour_not_the_body_text_colour(
    typical: tuple[IssueView, RenderedIssue],
) -> None:
    _, result = typical
    style = _style_of(result.html, "Why: ")
    assert f"color:{WHY_COLOUR}" in style
    body = _style_of(result.html, str(escape(typical[0].papers[0].abstract))[:40])
    assert "color:#1f2933" in body


def test_dark_mode_overrides_the_inline_colours(typical: tuple[IssueView, RenderedIssue]) -> None:
    _, result = typical
    css = result.html[result.html.index("@media (prefers-color-scheme: dark)") :]
    css = css[: css.index("</style>")]
    rules = {rule.strip() for head in re.findall(r"([^{}]+)\{", css) for rule in head.split(",")}
    wanted = ("body", ".card", ".card td", ".card td.why", ".card td.muted", ".muted div")
    for rule in (*wanted, ".title a"):
        assert rule in rules, rule
    # Every dark colour must beat the inline light ones (MJML's and the cards').
    declarations = re.findall(r"(?:color|background-color):\s*[^;]+;", css)
    assert declarations
    assert all("!important" in d for d in declarations)
    # Light colours stay inline, so clients without the media query look as designed.
    assert 'style="word-spacing:normal;background-color:#eef2f6;"' in result.html
    assert "color-scheme: light dark" in result.html


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_preheader_is_visible_text_with_readable_contrast(
    typical: tuple[IssueView, RenderedIssue],
) -> None:
    view, result = typical
    html = parse_html(result.html)
    # A real preheader: what else is in the issue (the subject already names the top paper).
    assert view.preheader.startswith(f"Also: {view.papers[1].title[:40]}")
    assert view.preheader.endswith(f"and {len(view.papers) - 3} more")
    assert html.visible.startswith(view.preheader)
    assert "display:none" not in result.html.replace(" ", "")
    assert "mso-hide" not in result.html
    style = _style_of(result.html, "Also: ")
    colour = re.search(r"color:(#[0-9a-f]{6})", style)
    assert colour
    assert _contrast(colour.group(1), "#eef2f6") >= 4.5
    for size in re.findall(r"font-size:(\d+)px", result.html):
        assert size == "0" or int(size) >= 12  # 0: MJML's whitespace collapsing on cells


# --- languages --------------------------------------------------------------------------


def test_german_issue(
    prod_settings: Settings, records: list[dict[str, object]], renderer: Renderer
) -> None:
    view = make_view(prod_settings, records, count=3, locale="de")
    result = renderer.render_issue(view)
    assert view.edition_label == "Mittwoch, 27. Mai 2026"
    assert view.heading == "3 neue Paper für Sie"
    assert view.interests_line.startswith("Ausgewählt für Ihre Interessen: Computation")
    assert result.subject == view.papers[0].title
    assert view.preheader.startswith("Außerdem: ")
    assert '<html lang="de"' in result.html
    for phrase in (
        "Mehr davon",
        "Weniger davon",
        "Warum: passt zu Ihrem Stichwort",
        "Einstellungen",
    ):
        assert phrase in result.html
        assert phrase in result.text
    assert f"Abbestellen: {view.unsubscribe_url}" in result.text
    assert "More like this" not in result.html + result.text
    assert "Preferences" not in result.html + result.text


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("de", "de"), ("de_AT", "de"), ("de-CH", "de"), ("en", "en"), ("fr", "en"), (None, "en")],
)
def test_normalise_locale(locale: str | None, expected: str) -> None:
    assert i18n.normalise_locale(locale) == expected


def test_one_paper_heading_is_singular_in_both_languages(
    prod_settings: Settings, records: list[dict[str, object]]
) -> None:
    assert make_view(prod_settings, records, count=1).heading == "1 new paper for you"
    assert make_view(prod_settings, records, count=1, locale="de").heading == (
        "1 neues Paper für Sie"
    )


def test_translations_are_loaded_once_per_locale() -> None:
    assert i18n.translations("de") is i18n.translations("de")
    german = i18n.jinja_callables("de", autoescape=True)
    assert german is i18n.jinja_callables("de", autoescape=True)
    assert german is not i18n.jinja_callables("en", autoescape=True)
    assert german is not i18n.jinja_callables("de", autoescape=False)
    assert i18n.gettext("de", "Preferences") == "Einstellungen"


def test_translation_arguments_are_escaped_in_html_only(
    prod_settings: Settings, records: list[dict[str, object]], renderer: Renderer
) -> None:
    view = make_view(prod_settings, records, count=1, locale="de")
    hostile = replace(view.papers[0], terms='<b>bold</b> & "q"', why=())
    result = renderer.render_issue(replace(view, papers=(hostile,)))
    assert "Warum: passende Begriffe: &lt;b&gt;bold&lt;/b&gt; &amp; &#34;q&#34;" in result.html
    assert 'Warum: passende Begriffe: <b>bold</b> & "q"' in result.text


def _template_messages() -> set[str]:
    found: set[str] = set()
    method_map = [
        ("newsletter/mail/view.py", "python"),
        ("templates/email/issue.*", "jinja2"),
    ]
    keywords = {"mark": None, "gettext": (2,), "ngettext": (2, 3), "_": None}
    for _, _, message, *_ in extract_from_dir(str(REPO), method_map=method_map, keywords=keywords):
        found.add(message[0] if isinstance(message, tuple) else message)
    return found


def test_every_template_string_is_translated_to_german() -> None:
    messages = _template_messages()
    assert "More like this" in messages
    assert "Picked for your interests: " in messages
    assert "%(num)d new paper for you" in messages
    po_path = i18n.LOCALE_DIR / "de" / "LC_MESSAGES" / "messages.po"
    with po_path.open("rb") as handle:
        catalogue = read_po(handle)
    for message in messages:
        entry = catalogue.get(message)
        assert entry is not None, message
        assert entry.string, message
        assert all(entry.string), message
        assert not entry.fuzzy, message


def test_committed_mo_matches_its_po() -> None:
    directory = i18n.LOCALE_DIR / "de" / "LC_MESSAGES"
    with (directory / "messages.po").open("rb") as handle:
        po = read_po(handle)
    with (directory / "messages.mo").open("rb") as handle:
        mo = read_mo(handle)

    def entries(catalogue: Catalog) -> dict[str, tuple[str, ...]]:
        return {
            (m.id if isinstance(m.id, str) else m.id[0]): (
                (m.string,) if isinstance(m.string, str) else tuple(m.string)
            )
            for m in catalogue
            if m.id
        }

    expected = entries(po)
    compiled = entries(mo)
    assert len(compiled) >= 10
    assert compiled == expected, "run: pybabel compile -d newsletter/locale"


# --- the other mails in the same style -------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "context"),
    [
        ("confirm", {"confirm_url": PUBLIC_URL + "/confirm/abc"}),
        ("already", {"manage_url": PUBLIC_URL + "/manage/abc"}),
        ("address", {"address_url": PUBLIC_URL + "/address/abc", "old_email": "old@example.org"}),
        ("goodbye", {"subscribe_url": PUBLIC_URL + "/"}),
    ],
)
def test_account_mails_share_the_design(
    prod_settings: Settings, template: str, context: dict[str, str]
) -> None:
    mailer = Mailer(prod_settings, list_name="Paper Newsletter")
    result = mailer.render(Mail(to="ada@example.org", template=template, context=context))
    html = parse_html(result.html)
    (url,) = context.values() if template != "address" else (context["address_url"],)
    assert url in html.hrefs
    assert url in result.text
    assert "@media (prefers-color-scheme: dark)" in result.html
    assert "#eef2f6" in result.html
    assert "display:none" not in result.html.replace(" ", "")
    assert html.visible.startswith("Paper Newsletter")
    assert result.subject
    for label in html.anchor_texts:
        assert label in result.text


# --- headers: no injection from any data -------------------------------------------------------

_hostile = st.text(
    alphabet=st.sampled_from(list("aZ é€<>\"'=?:;,@\r\n\t\x00\x0b\x0c\x1b\x7f\x85\u2028\u2029")),
    min_size=1,
    max_size=80,
)


@pytest.mark.slow  # hypothesis-heavy
@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(title=_hostile, name=_hostile, keyword=_hostile)
def test_hostile_title_name_and_keyword_cannot_add_headers_or_parts(
    prod_settings: Settings,
    records: list[dict[str, object]],
    renderer: Renderer,
    title: str,
    name: str,
    keyword: str,
) -> None:
    view = make_view(prod_settings, records, count=2)
    papers = (replace(view.papers[0], title=title + "\r\nBcc: victim@example.org"), view.papers[1])
    view = replace(
        view,
        papers=papers,
        preheader=papers[0].title,
        subject_line=papers[0].title,
        interests_line=interests_text(["Computation and Language"], [keyword + "\nX-Evil: 1"]),
    )
    rendered = renderer.render_issue(view)
    data = build_message(
        rendered,
        MessageHeaders(
            sender=prod_settings.sender,
            to_address=view.email,
            to_name=name + "\r\nCc: victim@example.org",
            message_id="<issue-20260527-1@papers.example.org>",
            list_id=prod_settings.effective_list_id,
            list_name=view.list_name,
            unsubscribe_url=view.unsubscribe_url,
            date=datetime(2026, 5, 27, 6, 0, tzinfo=UTC),
        ),
    )
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        assert len(line) <= 998
        assert line[:1] in (b" ", b"\t") or b":" in line
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert {k.lower() for k in message} == EXPECTED_HEADERS
    assert not message.defects
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    subject = str(message["Subject"])
    assert "\r" not in subject
    assert "\n" not in subject
    assert "Bcc: victim@example.org" in subject  # kept as text, on the one line
    assert str(parts[0].get_content()).count(view.unsubscribe_url) == 1


# --- spam lint --------------------------------------------------------------------------------


def _spamassassin_score(message: bytes, tmp_path: Path) -> tuple[float, list[str]]:
    home = tmp_path / "sa-home"
    home.mkdir()
    result = subprocess.run(
        ["spamassassin", "-L", "-t", "-x"],
        input=message,
        capture_output=True,
        timeout=600,  # a hang guard, not a timing assertion (loaded CI machines)
        check=False,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
    )
    output = result.stdout.decode("utf-8", "replace")
    match = re.search(r"Content analysis details:\s+\((-?[\d.]+) points", output)
    assert match, output[-2000:] + result.stderr.decode("utf-8", "replace")
    report = output[match.start() :]
    rules = re.findall(r"^\s*-?[\d.]+\s+([A-Z0-9_]+)\s", report, flags=re.MULTILINE)
    return float(match.group(1)), rules


def test_typical_issue_passes_spamassassin(
    typical: tuple[IssueView, RenderedIssue], prod_settings: Settings, tmp_path: Path
) -> None:
    assert shutil.which("spamassassin"), "apt-get install -y spamassassin"
    view, rendered = typical
    score, rules = _spamassassin_score(assemble(view, rendered, prod_settings), tmp_path)
    print(f"SpamAssassin: {score} points; rules: {', '.join(rules)}")
    assert score <= 1.0, rules
    assert "HTML_MESSAGE" in rules  # proves the report was parsed, not an empty one


def test_spamassassin_catches_a_spammy_message(
    typical: tuple[IssueView, RenderedIssue], prod_settings: Settings, tmp_path: Path
) -> None:
    view, rendered = typical
    spammy = replace(
        rendered,
        subject="FREE MONEY!!! Viagra, cheap meds, 100% GUARANTEED, act now",
        html=rendered.html.replace(
            "Also: ",
            "<font color='#eef2f6'>viagra cialis</font> CLICK HERE buy now 100% free "
            "guaranteed winner $$$ earn extra cash",
        ),
    )
    assert "viagra cialis" in spammy.html  # the preheader was replaced
    score, _ = _spamassassin_score(assemble(view, spammy, prod_settings), tmp_path)
    assert score > 1.0


# --- the database column -----------------------------------------------------------------------


def test_subscriber_locale_defaults_to_english(engine: Engine) -> None:
    with engine.begin() as connection:
        # Raw SQL, as a row written before migration 0005 or by another tool would be.
        connection.execute(
            text(
                "INSERT INTO subscribers (email, name, status, timezone, send_hour, frequency, "
                "always_send, token_version, created_at) VALUES ('a@example.org', '', 'active', "
                "'UTC', 7, 'daily', false, 1, CURRENT_TIMESTAMP)"
            )
        )
        locale = connection.execute(text("SELECT locale FROM subscribers")).scalar_one()
    assert locale == "en"


def test_subscriber_locale_round_trips(engine: Engine) -> None:
    from newsletter.db import make_session_factory

    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        session.add(Subscriber(email="de@example.org", locale="de"))
        session.add(Subscriber(email="en@example.org"))
    with sessions() as session:
        rows = session.execute(text("SELECT email, locale FROM subscribers")).all()
        got = {email_address: locale for email_address, locale in rows}
    assert got == {"de@example.org": "de", "en@example.org": "en"}


# --- visual check --------------------------------------------------------------------------------


@pytest.mark.slow  # drives Chromium (Playwright)
@pytest.mark.parametrize("width", [600, 375])
def test_screenshots(
    prod_settings: Settings, records: list[dict[str, object]], renderer: Renderer, width: int
) -> None:
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = {
        "issue": renderer.render_issue(make_view(prod_settings, records, count=4)).html,
        "issue-de": renderer.render_issue(
            make_view(prod_settings, records, count=4, locale="de")
        ).html,
    }
    mailer = Mailer(prod_settings, list_name="Paper Newsletter")
    for template, context in (
        ("confirm", {"confirm_url": PUBLIC_URL + "/confirm/abc"}),
        ("goodbye", {"subscribe_url": PUBLIC_URL + "/"}),
    ):
        mail = Mail(to="ada@example.org", template=template, context=context)
        shots[template] = mailer.render(mail).html
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            for scheme in ("light", "dark"):
                page = browser.new_page(
                    viewport={"width": width, "height": 900}, color_scheme=scheme
                )
                requests: list[str] = []
                page.on("request", lambda r, seen=requests: seen.append(r.url))
                for name, html in shots.items():
                    page.set_content(html)
                    if name.startswith("issue"):
                        _assert_card_colours(page, scheme)
                    overflow = page.evaluate(
                        "document.documentElement.scrollWidth - window.innerWidth"
                    )
                    assert overflow <= 0, (name, width, overflow)
                    path = SCREENSHOTS / f"{name}-{width}-{scheme}.png"
                    page.screenshot(path=str(path), full_page=True)
                    assert path.stat().st_size > 10_000
                page.close()
                assert [r for r in requests if not r.startswith("about:")] == []
        finally:
            browser.close()


# What a card's parts compute to in each scheme (the dark rules must reach the cells that
# hold the text): background; title link, authors, abstract, why.
_CARD_COLOURS = {
    "light": ("rgb(255, 255, 255)", "rgb(26, 86, 219)", "rgb(82, 96, 109)", "rgb(31, 41, 51)",
              "rgb(15, 118, 110)"),
    "dark": ("rgb(27, 38, 49)", "rgb(168, 199, 250)", "rgb(159, 179, 200)", "rgb(217, 226, 236)",
             "rgb(94, 234, 212)"),
}  # fmt: skip


def _assert_card_colours(page: Any, scheme: str) -> None:
    found = page.evaluate(
        """() => {
            const card = document.querySelector('.card');
            const colour = (selector) => getComputedStyle(card.querySelector(selector)).color;
            return [getComputedStyle(card).backgroundColor, colour('td.title a'),
                    colour('td.muted'), colour('td.links'), colour('td.why')];
        }"""
    )
    assert tuple(found) == _CARD_COLOURS[scheme], scheme


def test_templates_directory_holds_the_goodbye_mail() -> None:
    directory = resource_path("templates") / "email"
    for suffix in (".mjml", ".txt", ".subject.txt"):
        assert (directory / f"goodbye{suffix}").is_file()
