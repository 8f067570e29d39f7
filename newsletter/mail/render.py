"""Render mails from templates: MJML compiled once, then Jinja per subscriber.

The one renderer of every mail: the issues (``render_issue``) and the account mails of
the web app (``render_mail``: confirm, already, address), each in the reader's
language through ``newsletter.i18n``. Each MJML template is compiled to HTML once per
template version (keyed by file modification time) and the HTML, which still holds its
Jinja placeholders, becomes an autoescaping Jinja template. Rendering is pure: plain
data in, strings out.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import jinja2
from mjml import mjml2html

from newsletter.errors import TemplateError
from newsletter.i18n import jinja_callables
from newsletter.mail.cards import CardCache, check_card_blocks, uncached_card
from newsletter.resources import resource_path


@dataclass(frozen=True)
class PaperView:
    title: str
    url: str
    authors: str
    categories: str
    abstract: str
    terms: str
    score: float
    more_url: str = ""  # "more like this" / "less like this" (the web app records them)
    less_url: str = ""


@dataclass(frozen=True)
class IssueView:
    email: str
    list_name: str
    edition_label: str
    heading: str
    interests_line: str
    preheader: str
    papers: tuple[PaperView, ...]
    manage_url: str
    unsubscribe_url: str
    view_url: str
    # Added with the email design (issue 7); defaults keep older callers working.
    contact_line: str = ""  # the sender's postal/contact line (settings.contact_line)
    locale: str = "en"  # the language of the issue (newsletter.i18n)


@dataclass(frozen=True)
class RenderedIssue:
    """A rendered message (an issue or an account mail): subject, HTML and text parts."""

    subject: str
    html: str
    text: str
    # ``html`` as a 7bit MIME body (character references, CRLF), when the renderer made
    # it on the way (``newsletter.mail.skeleton``); the message builder encodes it else.
    html_7bit: bytes | None = field(default=None, compare=False, repr=False)
    # ``text`` quoted-printable (CRLF), likewise.
    text_qp: bytes | None = field(default=None, compare=False, repr=False)


def shorten_authors(authors: list[str], *, keep: int = 3) -> str:
    """'A, B, C et al.' beyond ``keep`` names; all of them otherwise."""
    if len(authors) <= keep:
        return ", ".join(authors)
    return ", ".join(authors[:keep]) + " et al."


def trim_text(text: str, *, limit: int = 420) -> str:
    """Cut at a word boundary before ``limit`` characters, marking the cut."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(",;:.")
    return cut + " …"


# Points in MJML's output where a line break changes nothing a reader sees: after
# block-level and table tags and Outlook's conditional comments.
_BREAK_AFTER = re.compile(
    r"(</(?:div|table|tbody|tr|td|p|style|head)>|<(?:tbody|tr)>|<!\[endif\]-->)(?!\n)"
)


def break_lines(html: str) -> str:
    """Put line breaks into MJML's minified output (one line of tens of KB).

    Short lines let the HTML part travel as 7bit (no quoted-printable encoding, which
    costs more than the rest of MIME assembly); see ``newsletter.mail.message``.

    A line that would start with a dot (MJML's ``.mj-outlook-group-fix`` CSS rule does)
    starts with a space instead: the same CSS and HTML (outside ``<pre>``, which MJML
    does not write), and SMTP then has no line of the template to dot-stuff, which
    cost a copy of every 60 KB message (``delivery.smtp_session.wire_data``).
    """
    return _BREAK_AFTER.sub("\\1\n", html).replace("\n.", "\n .")


_RECHECK_SECONDS = 1.0


class Renderer:
    """Loads, compiles and caches the email templates of one templates directory."""

    def __init__(
        self,
        templates_dir: Path | None = None,
        *,
        recheck_seconds: float = _RECHECK_SECONDS,
        packaged_fallback: bool = False,
    ) -> None:
        packaged = resource_path("templates") / "email"
        self._dir = templates_dir or packaged
        # The account mails take a template the operator's directory lacks from the
        # package (an operator who restyles the issue need not copy them); an issue
        # template must be where it was configured.
        self._fallback = packaged if packaged_fallback and self._dir != packaged else None
        self._recheck = recheck_seconds
        self._html_env = jinja2.Environment(
            autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=False
        )
        self._text_env = jinja2.Environment(
            autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
        )
        self._cache: dict[tuple[str, float], jinja2.Template] = {}
        self._fresh: dict[str, tuple[float, jinja2.Template]] = {}
        self._lock = threading.Lock()

    def _path(self, name: str) -> Path:
        path = self._dir / name
        if not path.is_file() and self._fallback is not None:
            path = self._fallback / name
        if not path.is_file():
            raise TemplateError(f"template {path} does not exist")
        return path

    def _compile(self, name: str, *, mjml: bool) -> jinja2.Template:
        # A template file is looked at (stat) at most once a second, not per message.
        now = time.monotonic()
        fresh = self._fresh.get(name)
        if fresh is not None and now - fresh[0] < self._recheck:
            return fresh[1]
        template = self._load(name, mjml=mjml)
        self._fresh[name] = (now, template)
        return template

    def _load(self, name: str, *, mjml: bool) -> jinja2.Template:
        path = self._path(name)
        key = (name, path.stat().st_mtime)
        template = self._cache.get(key)
        if template is not None:
            return template
        with self._lock:
            try:
                source = path.read_text(encoding="utf-8")
                if mjml:
                    # fonts={}: MJML would otherwise link Google Fonts for any font it
                    # knows in a font stack; an issue loads nothing remote by default.
                    source = break_lines(mjml2html(source, fonts={}))
                env = self._html_env if mjml else self._text_env
                check_card_blocks(source, env, str(path))
                template = env.from_string(source)
            except (OSError, UnicodeDecodeError) as exc:
                raise TemplateError(f"template {path} cannot be read: {exc}") from None
            except ValueError as exc:  # mjml-python reports parse errors as ValueError
                raise TemplateError(f"template {path} does not compile: {exc}") from None
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(
                    f"template {path} does not compile: {exc.message} (line {exc.lineno})"
                ) from None
            self._cache[key] = template
            return template

    def check(self, base: str = "issue") -> None:
        """Compile every part of a message template now, as the files are at this moment
        (fail before sending anything)."""
        for name in (f"{base}.mjml", f"{base}.txt", f"{base}.subject.txt"):
            self._fresh.pop(name, None)
            self._compile(name, mjml=name.endswith(".mjml"))

    def _fill(self, template: jinja2.Template, name: str, context: dict[str, Any]) -> str:
        try:
            return template.render(context)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {self._dir / name} failed to render: {exc}") from None

    def render_issue(
        self,
        view: IssueView,
        *,
        cards: CardCache | None = None,
        shared: Sequence[PaperView] = (),
    ) -> RenderedIssue:
        """Subject, HTML and text of one subscriber's issue.

        With ``cards`` and ``shared`` (each paper's shared view, as ``view.paper_base``
        made it, in the order of ``view.papers``), the templates' ``paper_card`` blocks
        are rendered once per paper and reused (``newsletter.mail.cards``).
        """
        # Shallow: the papers stay objects (Jinja reads their attributes); asdict's deep
        # copy costs more than the rest of the fill on the hot path.
        context = {f.name: getattr(view, f.name) for f in fields(view)}
        if cards is not None and len(shared) == len(view.papers):
            return self._render("issue", context, view.locale, cards=(cards, view.papers, shared))
        return self._render("issue", context, view.locale)

    def render_marked(
        self, view: IssueView, *, paper_card: Callable[..., str], subject: str
    ) -> RenderedIssue:
        """The issue with ``paper_card`` standing for every card block and ``subject``
        for the one-line subject in the HTML part (``newsletter.mail.skeleton`` renders
        marker views this way to find where each value lands)."""
        context = {f.name: getattr(view, f.name) for f in fields(view)}
        return self._render("issue", context, view.locale, marked=(paper_card, subject))

    def issue_templates(self) -> tuple[jinja2.Template, jinja2.Template, jinja2.Template]:
        """The issue's compiled subject, text and HTML templates, as a render now uses them."""
        return (
            self._compile("issue.subject.txt", mjml=False),
            self._compile("issue.txt", mjml=False),
            self._compile("issue.mjml", mjml=True),
        )

    def is_packaged(self, base: str = "issue") -> bool:
        """Whether the message template ``base`` is the packaged one, byte for byte."""
        packaged = resource_path("templates") / "email"
        try:
            return all(
                self._path(name).read_bytes() == (packaged / name).read_bytes()
                for name in (f"{base}.mjml", f"{base}.txt", f"{base}.subject.txt")
            )
        except OSError:
            return False

    def render_mail(self, base: str, context: dict[str, Any], *, locale: str) -> RenderedIssue:
        """Subject, HTML and text of the message template ``base`` (an account mail:
        confirm, already, address) filled with ``context``, in ``locale``."""
        return self._render(base, dict(context), locale)

    def _render(
        self,
        base: str,
        context: dict[str, Any],
        locale: str,
        *,
        cards: tuple[CardCache, Sequence[PaperView], Sequence[PaperView]] | None = None,
        marked: tuple[Callable[..., str], str] | None = None,
    ) -> RenderedIssue:
        # ``context`` is the caller's own copy and is filled further here. The gettext
        # callables of the message's language (cached per locale and kind).
        context.update(jinja_callables(locale, autoescape=False))
        context["paper_card"] = uncached_card if marked is None else marked[0]

        def fill(name: str, *, mjml: bool) -> str:
            template = self._compile(name, mjml=mjml)
            if cards is not None:
                cache, papers, shared = cards
                context["paper_card"] = cache.card_call(template, locale, papers, shared)
            return self._fill(template, name, context)

        subject = fill(f"{base}.subject.txt", mjml=False)
        context["subject"] = " ".join(subject.split())
        if marked is not None:
            subject, context["subject"] = context["subject"], marked[1]
        text = fill(f"{base}.txt", mjml=False)
        context.update(jinja_callables(locale, autoescape=True))
        html = fill(f"{base}.mjml", mjml=True)
        if marked is not None:
            return RenderedIssue(subject=subject, html=html, text=text)
        return RenderedIssue(subject=context["subject"], html=html, text=text)
