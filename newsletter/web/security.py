"""ASGI middleware: a request body limit and security headers on every response.

Pure ASGI (not ``BaseHTTPMiddleware``) so the body is bounded before any of it is
parsed, and so the headers are added to every response, error pages included.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter.web.api_errors import ApiErrorBody

# Every page is served by the app itself: no inline script or style, no framing,
# forms post only back to us. The one exception (the admin preview, whose frame shows
# an issue's email HTML with inline styles) sets its own policy: see
# newsletter.web.admin.previews.PREVIEW_CSP. The issue online (/view) is a site page.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_STATIC_CACHE = "public, max-age=3600"
_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}


HSTS = "max-age=31536000"


class SecurityHeaders:
    """Adds the security headers; a response may set its own CSP and Cache-Control."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        # With an https public URL, browsers are told to use nothing else (a year; not
        # includeSubDomains, which would bind every other site of the domain too).
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    headers[name] = value
                if self.hsts:
                    headers["Strict-Transport-Security"] = HSTS
                headers.setdefault("Content-Security-Policy", PAGE_CSP)
                # Pages reached by a signed link show personal data: never cache them.
                # The stylesheet and script are the same for everyone.
                static = str(scope.get("path", "")).startswith("/static/")
                headers.setdefault("Cache-Control", _STATIC_CACHE if static else "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with 413, declared or streamed.

    The body is read up front (it is small by definition) and replayed to the app,
    so a chunked upload without Content-Length is bounded too. ``paths`` gives a few
    exact paths (an upload form) a limit of their own.
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, paths: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.paths = dict(paths or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.paths.get(str(scope.get("path", "")), self.max_bytes)
        declared = Headers(scope=scope).get("content-length")
        # ASCII digits only: str.isdigit() also says yes to "²", which int() refuses.
        # (and few: int() refuses more than 4,300 digits).
        if declared is not None and (
            not (declared.isascii() and declared.isdigit())
            or len(declared) > 18
            or int(declared) > max_bytes
        ):
            await _too_large(scope, send, max_bytes)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > max_bytes:
                await _too_large(scope, send, max_bytes)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _size(n: int) -> str:
    """The limit as people read it, never more than it is: 5 MB, 1.5 MB, 64 KB."""
    if n >= 1_048_576:
        return f"{n * 10 // 1_048_576 / 10:g} MB"
    return f"{n // 1024} KB" if n >= 1024 else f"{n} bytes"


_TOO_LARGE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Too large</title>
<link rel="stylesheet" href="/static/site.css"></head>
<body><main class="card"><h1>This is too large</h1>
<p>What you sent is over the limit of {limit} here, so nothing was read and nothing was saved.</p>
<p>Go back to the form (most browsers keep what you typed) and send less: a smaller file, or
the file split in parts.</p></main></body></html>
"""


async def _too_large(scope: Scope, send: Send, max_bytes: int) -> None:
    """413 before the app has seen the request: a page for people, JSON for the API."""
    limit = _size(max_bytes)
    if str(scope.get("path", "")).startswith("/api/"):
        message = f"The request body is over the limit of {limit}; nothing was read."
        error = ApiErrorBody(status=413, title="Too large", message=message)
        body = error.model_dump_json().encode()
        content_type = b"application/json"
    else:
        body = _TOO_LARGE_PAGE.format(limit=limit).encode()
        content_type = b"text/html; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
