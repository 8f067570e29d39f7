"""CSRF protection for forms: a signed double-submit token.

A random value lives in an HttpOnly, SameSite=Strict cookie; every form carries an
HMAC of it (keyed with the service secret) in a hidden field. A POST is accepted
only when the field matches the cookie, which a page on another site can neither
read nor set. No server-side state, so it works across several uvicorn workers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

from newsletter.web.errors import WebError

COOKIE = "nl_csrf"
FIELD = "csrf_token"
_VALUE_BYTES = 32


class Csrf:
    """Issues and checks the tokens of one app (one secret)."""

    def __init__(self, secret: str, *, secure: bool) -> None:
        self._key = hashlib.sha256(b"newsletter.csrf:" + secret.encode()).digest()
        self._secure = secure

    def _sign(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()

    def _cookie_value(self, request: Request) -> str | None:
        value = request.cookies.get(COOKIE, "")
        # A well-formed value only: the cookie is attacker-controlled input too.
        if 20 <= len(value) <= 100 and value.replace("-", "").replace("_", "").isalnum():
            return value
        return None

    def token_for(self, request: Request) -> str:
        """The hidden-field value for forms on this page (issues a cookie value if needed)."""
        value = self._cookie_value(request)
        if value is None:
            value = getattr(request.state, "csrf_new", None) or secrets.token_urlsafe(_VALUE_BYTES)
            request.state.csrf_new = value
        return self._sign(value)

    def set_cookie(self, request: Request, response: Response) -> None:
        """Send the cookie a page's forms depend on, if this request created one."""
        value = getattr(request.state, "csrf_new", None)
        if isinstance(value, str):
            response.set_cookie(
                COOKIE,
                value,
                httponly=True,
                samesite="strict",
                secure=self._secure,
                path="/",
            )

    async def check(self, request: Request) -> None:
        """Raise a 403 page unless the posted form carries this browser's token."""
        form = await request.form()
        posted = form.get(FIELD)
        value = self._cookie_value(request)
        if (
            value is None
            or not isinstance(posted, str)
            or not hmac.compare_digest(posted, self._sign(value))
        ):
            raise WebError(
                403,
                "Please try again",
                "This form could not be checked (it may have been open for a long time, or "
                "your browser blocks cookies for this site). Reload the page and send it again.",
            )
