"""Subscribe (double opt-in) and confirm.

The form may bring the reader's library (a file, pasted ids or both: "Start from papers
you know"), read by the preferences page's rules (``library_formats``) and stored on the
pending subscriber by ``library_signup``; nothing is fetched in the request.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, File, Form, UploadFile
from starlette.requests import Request
from starlette.responses import Response

from newsletter.i18n import LOCALES, normalise_locale
from newsletter.models import utcnow
from newsletter.papers.catalogue import topic_groups
from newsletter.subscribers import accounts
from newsletter.subscribers.library_formats import (
    MAX_BYTES,
    MAX_ENTRIES,
    LibraryError,
    parse_library,
)
from newsletter.subscribers.library_signup import SignupLibrary
from newsletter.tokens import Purpose
from newsletter.web import actions
from newsletter.web.forms import (
    DEFAULT_SEND_HOUR,
    DEFAULT_WEEKDAY,
    FormError,
    parse_choices,
    parse_email,
    split_keywords,
    timezone_groups,
    timezones,
    weekday_choices,
)
from newsletter.web.guards import FormGuard, State, subscriber_for
from newsletter.web.routes.library import MAX_PASTED, UPLOAD_FORM_SLACK
from newsletter.web.state import WebState, client_ip

router = APIRouter()

# The sign-up may carry a library file: the app gives this path the upload's body limit.
SIGNUP_PATH = "/subscribe"
SIGNUP_FORM_SLACK = UPLOAD_FORM_SLACK

Text = Annotated[str, Form()]
Texts = Annotated[list[str] | None, Form()]
Upload = Annotated[UploadFile | None, File()]


def browser_language(request: Request) -> str:
    """The reader's first language we have mails in (Accept-Language), else English."""
    for part in request.headers.get("accept-language", "")[:200].split(","):
        language = part.split(";", 1)[0].strip().replace("_", "-").split("-", 1)[0].lower()
        if language in LOCALES:
            return language
    return normalise_locale(None)


def form_context(
    state: WebState, values: dict[str, Any], *, error: FormError | None = None
) -> dict[str, Any]:
    """The sign-up page's context: ``values`` typed so far, the error (if any) and its field."""
    defaults: dict[str, Any] = {
        "email": "",
        "topics": [],
        "keywords": "",
        "frequency": "daily",
        "timezone": "UTC",
        "send_hour": str(DEFAULT_SEND_HOUR),
        "weekday": str(DEFAULT_WEEKDAY),
        "language": "en",
        "library_ids": "",
        "library_file": "",
    }
    defaults.update(values)
    return {
        "topic_groups": topic_groups(state.catalogue),
        "timezone_groups": timezone_groups(),
        "known_zones": frozenset(timezones()),
        "weekdays": weekday_choices(),
        "languages": sorted(LOCALES.items()),
        "form": defaults,
        "error": str(error) if error else None,
        "error_field": error.field if error else None,
        "library_max_mb": MAX_BYTES // 1_048_576,
        "library_max_entries": MAX_ENTRIES,
        "library_max_pasted": MAX_PASTED,
    }


def read_libraries(file: UploadFile | None, pasted: str) -> list[SignupLibrary]:
    """The libraries the form brings, parsed: the file, then the pasted list. Raises
    ``FormError`` (on its field) when one is not a library at all or too large;
    lines that are not papers are in each one's problems, as on the preferences page."""
    given: list[tuple[bytes, str, str]] = []
    if file is not None and file.filename:
        given.append((file.file.read(MAX_BYTES + 1), file.filename[:200], "library_file"))
    if pasted.strip():
        # Browsers count a line break as one character for maxlength and send two.
        pasted = pasted.replace("\r\n", "\n")
        if len(pasted) > MAX_PASTED:
            raise FormError(
                f"Your pasted list is longer than {MAX_PASTED:,} characters: paste fewer "
                "ids, or upload them as a file.",
                field="library_ids",
            )
        given.append((pasted.encode(), "pasted list", "library_ids"))
    libraries = []
    for raw, name, field in given:
        try:
            libraries.append(SignupLibrary(name, parse_library(raw, name=name)))
        except LibraryError as exc:
            message = f"Your library ({name}): {exc}."
            if field == "library_file":
                message += " Choose another file, or none: the rest of the form is kept."
            raise FormError(message, field=field) from None
    return libraries


# HEAD too: uptime monitors probe the front page with it.
@router.api_route("/", methods=["GET", "HEAD"])
@router.api_route("/subscribe", methods=["GET", "HEAD"])
def subscribe_page(request: Request, state: State) -> Response:
    context = form_context(state, {"language": browser_language(request)})
    return state.pages.render(request, "subscribe.html", context)


@router.post(SIGNUP_PATH, dependencies=FormGuard)
def subscribe(
    request: Request,
    state: State,
    background: BackgroundTasks,
    email: Text = "",
    topics: Texts = None,
    keywords: Text = "",
    frequency: Text = "daily",
    timezone: Text = "UTC",
    send_hour: Text = str(DEFAULT_SEND_HOUR),
    weekday: Text = str(DEFAULT_WEEKDAY),
    language: Text = "",
    library_ids: Text = "",
    library_file: Upload = None,
) -> Response:
    """Record the sign-up and mail a link; the page is the same for every address.

    A library with the sign-up is stored on the pending subscriber; the page after
    lists its lines that were not papers (the same for every address)."""
    state.limits.require("subscribe", client_ip(request))
    typed = {
        "email": email[:320],
        "topics": (topics or [])[:100],
        "keywords": keywords[:4000],
        "frequency": frequency[:16],
        "timezone": timezone[:64],
        "send_hour": send_hour[:4],
        "weekday": weekday[:4],
        "language": language if language in LOCALES else "en",
        "library_ids": library_ids[:MAX_PASTED],
        # A browser never fills a file input again: the page names the file to choose.
        "library_file": (library_file.filename or "")[:200] if library_file else "",
    }
    try:
        address = parse_email(email)
        choices = parse_choices(
            state.catalogue,
            topics=topics or [],
            keywords=split_keywords(keywords),
            weights=None,
            frequency=frequency,
            timezone=timezone,
            send_hour=send_hour,
            weekday=weekday,
            language=language[:8],
        )
        libraries = read_libraries(library_file, library_ids)
    except FormError as exc:
        context = form_context(state, typed, error=exc)
        big = library_file is not None and (library_file.size or 0) > MAX_BYTES
        status = 413 if exc.field == "library_file" and big else 400
        return state.pages.render(request, "subscribe.html", context, status=status)
    actions.sign_up(state, background, address, choices, libraries=libraries)
    if not libraries:
        return state.pages.render(request, "check_email.html", {"email": address})
    context = {"email": address, "libraries": libraries}
    return state.pages.render(request, "_library_check_email.html", context)


@router.get("/confirm/{token}")
def confirm_page(request: Request, state: State, token: str) -> Response:
    """Show a button: mail scanners open links, so opening one changes nothing."""
    with state.sessions() as session:
        subscriber, data = subscriber_for(session, state, Purpose.CONFIRM, token)
        outcome = accounts.check_signup(subscriber, data.subject, now=utcnow())
        manage_url = state.links.manage_url(subscriber) if outcome == "already" else ""
    actions.refuse_confirmation(outcome)
    return state.pages.render(
        request, "confirm.html", {"outcome": outcome, "manage_url": manage_url}
    )


@router.post("/confirm/{token}", dependencies=FormGuard)
def confirm(request: Request, state: State, token: str) -> Response:
    confirmation = actions.confirm(state, token)
    return state.pages.render(request, "confirmed.html", {"manage_url": confirmation.manage_url})
