"""Importing subscribers from an uploaded CSV: the CLI's import, through a form.

The upload goes through ``newsletter.subscribers.roster.import_csv``, the code behind
``newsletter subscribers import FILE``, so both take the same columns and give the
same result: new addresses become active subscribers at once (the operator vouches
for their consent) unless the row says otherwise (the admin export's ``status`` and
``confirmed_at`` import back as they were, so nobody who unsubscribed, bounced or never
confirmed becomes active), existing ones keep their status, bad rows are skipped by line.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, File, UploadFile
from starlette.requests import Request
from starlette.responses import Response

from newsletter.errors import NewsletterError
from newsletter.papers.catalogue import sync_topics
from newsletter.subscribers.roster import CSV_COLUMNS, ImportSummary, import_csv
from newsletter.web.admin.auth import CurrentOperator, SignedIn
from newsletter.web.admin.page import render
from newsletter.web.guards import FormGuard, State
from newsletter.web.state import WebState

log = logging.getLogger(__name__)

router = APIRouter(prefix="/admin")

IMPORT_PATH = "/admin/subscribers/import"
# Room for the multipart envelope and the CSRF field around the file itself.
IMPORT_FORM_SLACK = 64 * 1024
PROBLEMS_SHOWN = 50


class UploadRefused(NewsletterError):
    """The upload is not something the import can read; the message says why."""


@dataclass(frozen=True)
class ImportResult:
    filename: str
    summary: ImportSummary

    @property
    def problems(self) -> list[tuple[str, str]]:
        """(line number, reason) of the first skipped rows."""
        return [
            (problem.location.removeprefix("line "), problem.reason)
            for problem in self.summary.problems[:PROBLEMS_SHOWN]
        ]

    @property
    def more_problems(self) -> int:
        return max(0, len(self.summary.problems) - PROBLEMS_SHOWN)


def size_text(size: int) -> str:
    """``2 MB``, ``64 KB``: a limit as people read it."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):g} MB"
    return f"{size / 1024:g} KB"


def decode_upload(raw: bytes, *, limit: int) -> str:
    """The text of an uploaded CSV (UTF-8, with or without BOM), or ``UploadRefused``."""
    if not raw:
        raise UploadRefused("Choose a CSV file to import: the upload was empty.")
    if len(raw) > limit:
        raise UploadRefused(
            f"The file is larger than {size_text(limit)}. Split it into smaller files "
            "and import them one after the other."
        )
    if b"\x00" in raw:
        raise UploadRefused(
            "This is not a CSV file (it holds binary data). Export the list from your "
            "spreadsheet as “CSV UTF-8”."
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UploadRefused(
            "This file is not UTF-8 text. Export the list from your spreadsheet as "
            "“CSV UTF-8” and import that file."
        ) from None


def form_context(state: WebState) -> dict[str, Any]:
    """What the upload form needs (it is on the subscribers page too)."""
    return {"columns": CSV_COLUMNS, "limit": size_text(state.options.max_import_bytes)}


def _form(
    request: Request,
    state: WebState,
    operator: SignedIn,
    *,
    error: str = "",
    result: ImportResult | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        state,
        "import.html",
        operator,
        {"error": error, "result": result, "path": "/admin/subscribers", **form_context(state)},
        status=status,
    )


@router.get("/subscribers/import")
def import_page(request: Request, state: State, operator: CurrentOperator) -> Response:
    return _form(request, state, operator)


@router.post("/subscribers/import", dependencies=FormGuard)
def import_subscribers(
    request: Request,
    state: State,
    operator: CurrentOperator,
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Import the uploaded CSV in one transaction (bad rows skipped) and show the result."""
    limit = state.options.max_import_bytes
    filename = ((file.filename if file else "") or "the file")[:200]
    raw = file.file.read(limit + 1) if file is not None else b""
    try:
        text = decode_upload(raw, limit=limit)
        with state.sessions.begin() as session:
            # Interests refer to topic rows: make sure the catalogue is there, as the CLI does.
            sync_topics(session, state.catalogue)
            summary = import_csv(session, io.StringIO(text, newline=""), state.catalogue)
    except NewsletterError as exc:
        too_large = isinstance(exc, UploadRefused) and len(raw) > limit
        return _form(request, state, operator, error=str(exc), status=413 if too_large else 400)
    log.info(
        "subscribers imported from %s by %s: %s",
        filename,
        operator.username,
        summary,
        extra={"operator": operator.username, "created": summary.created},
    )
    return _form(request, state, operator, result=ImportResult(filename, summary))
