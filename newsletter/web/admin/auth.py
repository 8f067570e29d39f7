"""The admin session: a signed, expiring cookie, revocable on the server.

The cookie holds the operator's id, their ``session_version`` and a random nonce, signed
with the service secret under the salt ``admin-session``, so no other signed value of
the app (links, CSRF tokens) can pass for it. A fresh value is issued at every login
(the session is rotated). Every request looks the operator up again and accepts the
cookie only while its version is the operator's current one: logging out and changing
the password bump the version, which ends every session of that operator issued
before, in every browser, even a cookie that was copied (a logout ends the operator's
other sessions too; that is the price of keeping no table of sessions). Deleting an
operator ends their sessions; the version starts random, so a later operator who gets
the same id does not inherit them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from newsletter.models import Operator
from newsletter.web.state import WebState, web_state

COOKIE = "nl_admin"
SALT = "admin-session"
MAX_AGE_SECONDS = 12 * 60 * 60
PATH = "/admin"


class LoginRequired(Exception):
    """Raised by the ``CurrentOperator`` dependency; answered with a redirect to login."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


@dataclass(frozen=True)
class SignedIn:
    id: int
    username: str
    session_version: int


def signed_in_as(operator: Operator) -> SignedIn:
    return SignedIn(operator.id, operator.username, operator.session_version)


def _serializer(state: WebState) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(state.settings.secret_key.get_secret_value(), salt=SALT)


def secure_cookies(state: WebState) -> bool:
    if state.options.secure_cookies is not None:
        return state.options.secure_cookies
    return state.settings.public_url.startswith("https://")


def start_session(state: WebState, response: Response, operator: SignedIn) -> None:
    value = _serializer(state).dumps(
        {"op": operator.id, "v": operator.session_version, "n": secrets.token_urlsafe(16)}
    )
    response.set_cookie(
        COOKIE,
        value,
        max_age=MAX_AGE_SECONDS,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(state),
        path=PATH,
    )


def end_session(state: WebState, response: Response) -> None:
    response.delete_cookie(
        COOKIE, path=PATH, httponly=True, samesite="strict", secure=secure_cookies(state)
    )


def signed_in(request: Request, state: WebState) -> SignedIn | None:
    """The operator of this request's session, if it is valid, not revoked, and they
    still exist."""
    value = request.cookies.get(COOKIE)
    if not value or len(value) > 512:
        return None
    try:
        data: Any = _serializer(state).loads(value, max_age=MAX_AGE_SECONDS)
    except BadSignature:
        return None
    if not (
        isinstance(data, dict)
        and isinstance(data.get("op"), int)
        and isinstance(data.get("v"), int)
    ):
        return None
    with state.sessions() as session:
        operator = session.get(Operator, data["op"])
        if operator is None or operator.session_version != data["v"]:
            return None
        return signed_in_as(operator)


def login_url(next_url: str) -> str:
    return f"{PATH}/login?next={quote(next_url, safe='/')}"


def safe_next(next_url: str) -> str:
    """Only a path inside the admin area (no open redirect)."""
    if next_url.startswith(PATH) and not next_url.startswith("//") and "\\" not in next_url:
        return next_url
    return PATH


def current_operator(request: Request) -> SignedIn:
    state = web_state(request)
    operator = signed_in(request, state)
    if operator is None:
        path = request.url.path
        if request.method == "GET" and request.url.query:
            path += "?" + request.url.query
        raise LoginRequired(path if request.method == "GET" else PATH)
    return operator


CurrentOperator = Annotated[SignedIn, Depends(current_operator)]
