"""``newsletter preview``: a subscriber's issue as the HTML of the mail, written nowhere
but to a file or stdout.

The same issue a test send would mail (see ``newsletter.delivery.testsend``): the delivery
already planned for them in the edition, or their picks ranked in memory; rendered
by the production renderer through the same view. Nothing is written to the
database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

from newsletter.delivery.compose import Composer
from newsletter.delivery.testsend import IssueRequest, build_job
from newsletter.mail.render import RenderedIssue, Renderer
from newsletter.models import utcnow
from newsletter.service import Service
from newsletter.settings import Settings
from newsletter.tokens import Tokens


def render_preview(
    service: Service, request: IssueRequest, *, renderer: Renderer | None = None
) -> RenderedIssue:
    """Subject, HTML and text of the issue ``request`` describes."""
    settings = service.settings
    job = build_job(service, request, recipient=None, now=utcnow())
    # The delivery workers' own rendering (the subscriber's language included).
    composer = Composer(
        settings, renderer or service.renderer, Tokens(settings.secret_key.get_secret_value())
    )
    _view, rendered = composer.render(job)
    return rendered


def preview(
    settings: Settings,
    *,
    as_email: str | None = None,
    topics: Sequence[str] = (),
    keywords: Sequence[str] = (),
    edition: date | None = None,
    out: Path | None = None,
) -> str:
    """The issue's HTML; also written to ``out`` when given."""
    request = IssueRequest(
        as_email=as_email, topics=tuple(topics), keywords=tuple(keywords), edition=edition
    )
    service = Service.open(settings)
    try:
        html = render_preview(service, request).html
    finally:
        service.close()
    if out is not None:
        out.write_text(html, encoding="utf-8")
    return html
