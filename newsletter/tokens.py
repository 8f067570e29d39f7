"""Signed, scoped tokens for the links in every issue (no passwords anywhere).

A token carries the subscriber id and their ``token_version`` (bump it to revoke
every older link) and is signed with a salt per purpose, so a token made for one
purpose is worthless for another. Unsubscribe and manage links do not expire (a
reader may unsubscribe from a year-old issue); confirmation links do.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from itsdangerous import BadSignature, Serializer, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode

from newsletter.errors import NewsletterError


class Purpose(enum.StrEnum):
    CONFIRM = "confirm"
    MANAGE = "manage"
    UNSUBSCRIBE = "unsubscribe"
    FEEDBACK = "feedback"
    VIEW = "view"


MAX_AGE: dict[Purpose, timedelta | None] = {
    Purpose.CONFIRM: timedelta(days=7),
    Purpose.MANAGE: None,
    Purpose.UNSUBSCRIBE: None,
    Purpose.FEEDBACK: timedelta(days=180),
    Purpose.VIEW: None,
}


class InvalidToken(NewsletterError):
    """A token is tampered with, expired, or made for another purpose."""


@dataclass(frozen=True)
class TokenData:
    subscriber_id: int
    version: int
    subject: int | None = None  # a delivery id (view, feedback), when the purpose needs one


class _Serializer(URLSafeTimedSerializer):
    """itsdangerous' URL-safe timed serializer without the zlib attempt.

    The payloads are a few small integers, which never compress; trying costs more
    than the signature itself on the hot path (four links per issue). Tokens made
    this way are ordinary uncompressed itsdangerous tokens.
    """

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))


class Tokens:
    """Makes and reads tokens with one secret key."""

    def __init__(self, secret_key: str) -> None:
        self._serializers = {
            purpose: _Serializer(secret_key, salt=f"newsletter.{purpose.value}")
            for purpose in Purpose
        }

    def _serializer(self, purpose: Purpose) -> URLSafeTimedSerializer:
        return self._serializers[purpose]

    def make(self, purpose: Purpose, data: TokenData) -> str:
        """A URL-safe signed token for ``purpose``."""
        payload = [data.subscriber_id, data.version]
        if data.subject is not None:
            payload.append(data.subject)
        token = self._serializer(purpose).dumps(payload)
        return token if isinstance(token, str) else token.decode()

    def read(self, purpose: Purpose, token: str) -> TokenData:
        """Verify and decode; raise ``InvalidToken`` with a reason safe to show."""
        max_age = MAX_AGE[purpose]
        try:
            payload = self._serializer(purpose).loads(
                token, max_age=int(max_age.total_seconds()) if max_age else None
            )
        except SignatureExpired:
            raise InvalidToken("this link has expired") from None
        except BadSignature:
            raise InvalidToken("this link is not valid") from None
        if (
            not isinstance(payload, list)
            or len(payload) not in (2, 3)
            or not all(isinstance(v, int) for v in payload)
        ):
            raise InvalidToken("this link is not valid")
        return TokenData(payload[0], payload[1], payload[2] if len(payload) == 3 else None)
