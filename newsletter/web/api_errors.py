"""The JSON API's errors: one body for every error, and the handlers that answer with it.

Every path under ``/api/`` answers an error as ``{"status", "title", "message",
"errors"}`` (``ApiErrorBody``), whatever raised it: a page error (``WebError``), a bad
token, invalid input or an unknown path. The HTML pages keep their own error pages
(``json_for_api`` hands everything else to them). Kept apart from the operations so
``newsletter.web.api`` reads as the list of what the API does.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from newsletter.tokens import InvalidToken
from newsletter.web.errors import TestLink, WebError

log = logging.getLogger("newsletter.web.api")


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ApiErrorBody(BaseModel):
    """Every error of the API looks like this."""

    status: int
    title: str
    message: str
    errors: list[ErrorItem] = Field(default_factory=list)


def _error(
    status: int,
    title: str,
    message: str,
    errors: Sequence[ErrorItem] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ApiErrorBody(status=status, title=title, message=message, errors=list(errors))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def invalid_input(message: str) -> WebError:
    return WebError(422, "Invalid request", message)


def _validation_items(exc: RequestValidationError) -> list[ErrorItem]:
    # Only the location, message and type: pydantic's ``input`` would echo what was
    # sent, and its ``ctx`` may hold objects JSON cannot carry.
    items = []
    for error in exc.errors():
        loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
        items.append(
            ErrorItem(loc=loc, msg=str(error.get("msg", "")), type=str(error.get("type", "")))
        )
    return items


def _validation_message(items: Sequence[ErrorItem]) -> str:
    parts = [f"{'.'.join(str(p) for p in item.loc) or 'request'}: {item.msg}" for item in items]
    shown = "; ".join(parts[:3])
    more = f" (and {len(parts) - 3} more)" if len(parts) > 3 else ""
    return f"The request is not valid. {shown}{more}." if shown else "The request is not valid."


def error_response(exc: Exception) -> JSONResponse:
    """The JSON answer for an exception raised while serving an API path."""
    if isinstance(exc, TestLink):
        exc = InvalidToken("this link is not valid")
    if isinstance(exc, WebError):
        return _error(exc.status, exc.title, exc.message)
    if isinstance(exc, InvalidToken):
        reason = str(exc).capitalize() + "." if str(exc) else "This link is not valid."
        return _error(
            400, "Invalid token", f"{reason} Use the token from the newest mail, all of it."
        )
    if isinstance(exc, RequestValidationError):
        items = _validation_items(exc)
        return _error(422, "Invalid request", _validation_message(items), items)
    if isinstance(exc, HTTPException):
        try:
            title = HTTPStatus(exc.status_code).phrase
        except ValueError:
            title = "Error"
        message = {
            404: "There is no such operation; see /api/openapi.json.",
            405: "This operation does not take that method; see /api/openapi.json.",
        }.get(exc.status_code)
        if message is None:
            detail = exc.detail if isinstance(exc.detail, str) else ""
            message = (
                f"{detail}." if detail and detail != title else "The request cannot be served."
            )
        return _error(exc.status_code, title, message, headers=exc.headers)
    return _error(
        500,
        "Something went wrong on our side",
        "Nothing was changed. Please try again in a few minutes.",
    )


Handler = Callable[[Request, Exception], Response | Awaitable[Response]]


def json_for_api(page: Handler | None) -> Handler:
    """An exception handler: JSON under ``/api/``, ``page`` (the HTML one) elsewhere."""

    async def handle(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/") or page is None:
            if not isinstance(
                exc, WebError | InvalidToken | RequestValidationError | HTTPException
            ):
                log.error(
                    "unhandled error on %s %s", request.method, request.url.path, exc_info=exc
                )
            return error_response(exc)
        answer = page(request, exc)
        return await answer if inspect.isawaitable(answer) else answer

    return handle


_ERROR_TEXTS = {
    400: "Tampered, expired, revoked or wrong-purpose token.",
    404: "No such paper in that issue.",
    410: "The sign-up expired; subscribe again.",
    415: "Not a JSON body.",
    422: "Invalid input; the message says what to fix.",
    429: "Too many requests from this address.",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of an operation that can fail with these statuses."""
    return {
        status: {"model": ApiErrorBody, "description": _ERROR_TEXTS[status]} for status in statuses
    }
