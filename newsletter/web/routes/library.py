"""A reader's library on their preferences: upload a file or paste ids, see per line what
was imported and why not, follow authors. Same signed-link guard as /manage.

Nothing is fetched here: an upload is parsed and matched against stored papers at
once, and what needs the arXiv API waits for the seeding job (the scheduler, or
``newsletter subscribers seed-pending``); the page says so.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from newsletter.errors import NewsletterError
from newsletter.models import Subscriber
from newsletter.subscribers.library import new_import, recent_imports, seed_count
from newsletter.subscribers.library_follows import (
    follow,
    followed,
    suggested_authors,
    unfollow,
)
from newsletter.subscribers.library_formats import MAX_BYTES, MAX_ENTRIES, parse_library
from newsletter.tokens import Purpose
from newsletter.web.guards import FormGuard, State, subscriber_for
from newsletter.web.state import WebState

router = APIRouter()

# The upload's own path (the token travels in the form), so the body limit can allow a
# library file without raising it for every other page.
UPLOAD_PATH = "/library/upload"
UPLOAD_FORM_SLACK = 64 * 1024
MAX_PASTED = 200_000  # characters of pasted ids

DONE = {
    "imported": "Your library was read: the report below says what was imported.",
    "followed": "Followed. New papers by this author will always be in your issue.",
    "already": "You already follow this author.",
    "unfollowed": "You no longer follow this author.",
}


def _page(
    request: Request,
    state: WebState,
    session: Session,
    subscriber: Subscriber,
    token: str,
    *,
    error: str | None = None,
    done: str = "",
    status: int = 200,
) -> Response:
    imports = recent_imports(session, subscriber.id)
    context: dict[str, Any] = {
        "base": f"/manage/{token}",
        "token": token,
        "upload_path": UPLOAD_PATH,
        "subscriber": subscriber,
        "imports": imports,
        "seeds": seed_count(session, subscriber.id),
        "followed": followed(session, subscriber.id),
        "suggested": suggested_authors(session, subscriber.id),
        "max_mb": MAX_BYTES // 1_048_576,
        "max_entries": MAX_ENTRIES,
        "error": error,
        "done": DONE.get(done),
    }
    return state.pages.render(request, "library.html", context, status=status)


@router.get("/manage/{token}/library")
def library_page(request: Request, state: State, token: str, done: str = "") -> Response:
    with state.sessions() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        return _page(request, state, session, subscriber, token, done=done[:20])


@router.post(UPLOAD_PATH, dependencies=FormGuard)
def upload_library(
    request: Request,
    state: State,
    token: Annotated[str, Form()],
    file: Annotated[UploadFile | None, File()] = None,
    ids: Annotated[str, Form()] = "",
) -> Response:
    """Read an uploaded library or pasted ids into an import; no network here."""
    raw = file.file.read(MAX_BYTES + 1) if file is not None and file.filename else b""
    name = (file.filename or "") if file is not None and raw else ""
    if not raw:
        raw, name = ids[:MAX_PASTED].encode(), "pasted list"
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        if not raw.strip():
            return _page(
                request,
                state,
                session,
                subscriber,
                token,
                error="Choose a file or paste arXiv ids or DOIs, one per line.",
                status=400,
            )
        try:
            parsed = parse_library(raw, name=name)
        except NewsletterError as exc:
            status = 413 if len(raw) > MAX_BYTES else 400
            return _page(request, state, session, subscriber, token, error=str(exc), status=status)
        new_import(session, subscriber, parsed, source=name[:200] or "upload")
    return RedirectResponse(f"/manage/{token}/library?done=imported", status_code=303)


@router.post("/manage/{token}/library/follow", dependencies=FormGuard)
def follow_author(
    request: Request, state: State, token: str, name: Annotated[str, Form()] = ""
) -> Response:
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        try:
            _, new = follow(session, subscriber.id, name[:300])
        except NewsletterError as exc:
            return _page(request, state, session, subscriber, token, error=str(exc), status=400)
    done = "followed" if new else "already"
    return RedirectResponse(f"/manage/{token}/library?done={done}", status_code=303)


@router.post("/manage/{token}/library/unfollow", dependencies=FormGuard)
def unfollow_author(state: State, token: str, author: Annotated[str, Form()] = "") -> Response:
    with state.sessions.begin() as session:
        subscriber, _ = subscriber_for(session, state, Purpose.MANAGE, token)
        if author.isascii() and author.isdigit() and len(author) < 10:
            unfollow(session, subscriber.id, int(author))
    return RedirectResponse(f"/manage/{token}/library?done=unfollowed", status_code=303)
