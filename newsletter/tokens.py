"""Signed, scoped tokens for the links in every issue (no passwords anywhere).

A token carries the subscriber id and their ``token_version`` (bump it to revoke
every older link) and is signed with a salt per purpose, so a token made for one
purpose is worthless for another. Unsubscribe and manage links do not expire (a
reader may unsubscribe from a year-old issue); confirmation links do.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from itsdangerous import (
    BadSignature,
    Serializer,
    SignatureExpired,
    Signer,
    TimestampSigner,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import base64_encode, int_to_bytes, want_bytes

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


class _Signer(TimestampSigner):
    """itsdangerous' timestamp signer with its key derived once, not per signature.

    itsdangerous derives the signing key from the secret and the salt (a SHA-1) and
    keys a new HMAC through Python's slow generic path for every signature; here the
    derived key is kept and an HMAC keyed with it (OpenSSL's) is copied per
    signature. The signatures are byte for byte itsdangerous' own (tested).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._derived: dict[bytes, bytes] = {}
        self._keyed: dict[bytes, Any] = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        secret = want_bytes(self.secret_keys[-1] if secret_key is None else secret_key)
        key = self._derived.get(secret)
        if key is None:
            key = self._derived[secret] = super().derive_key(secret)
        return key

    def get_signature(self, value: str | bytes) -> bytes:
        key = self.derive_key()
        keyed = self._keyed.get(key)
        if keyed is None:
            # The default digest (itsdangerous wraps hashlib.sha1 in a function, which
            # hmac can only use through its pure-Python path) by name: OpenSSL's HMAC.
            digest = self.digest_method
            name = "sha1" if getattr(digest, "__name__", "") == "_lazy_sha1" else digest
            keyed = self._keyed[key] = hmac.new(key, digestmod=name)
        mac = keyed.copy()
        mac.update(want_bytes(value))
        return base64_encode(mac.digest())


class _Serializer(URLSafeTimedSerializer):
    """itsdangerous' URL-safe timed serializer without the zlib attempt, with one
    signer per salt made once (itsdangerous makes a new one, and derives its key
    again, for every token).

    The payloads are a few small integers, which never compress; trying costs more
    than the signature itself on the hot path (four links per issue). Tokens made
    this way are ordinary uncompressed itsdangerous tokens.
    """

    default_signer = _Signer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._signers: dict[str | bytes, Signer] = {}

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        key: str | bytes = self.salt if salt is None else salt  # type: ignore[assignment]
        signer = self._signers.get(key)
        if signer is None:
            signer = self._signers[key] = super().make_signer(key)
        return signer

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))


class Tokens:
    """Makes and reads tokens with one secret key."""

    def __init__(self, secret_key: str) -> None:
        self._serializers = {
            purpose: _Serializer(secret_key, salt=f"newsletter.{purpose.value}")
            for purpose in Purpose
        }
        self._stamp: tuple[int, bytes] = (-1, b"")

    def _serializer(self, purpose: Purpose) -> URLSafeTimedSerializer:
        return self._serializers[purpose]

    def make(self, purpose: Purpose, data: TokenData) -> str:
        """A URL-safe signed token for ``purpose``."""
        payload = [data.subscriber_id, data.version]
        if data.subject is not None:
            payload.append(data.subject)
        if all(type(value) is int for value in payload):
            return self._make_ints(purpose, payload)
        token = self._serializer(purpose).dumps(payload)
        return token if isinstance(token, str) else token.decode()

    def _make_ints(self, purpose: Purpose, payload: list[int]) -> str:
        """``dumps`` of a list of ints without its generic plumbing (three tokens per
        issue on the delivery hot path): the compact JSON written directly, the
        timestamp's encoding kept while the second lasts; the same steps, so the same
        bytes (tested against stock itsdangerous)."""
        signer = self._serializers[purpose].make_signer()
        value = base64_encode("[" + ",".join(map(str, payload)) + "]")
        timestamp = signer.get_timestamp()  # type: ignore[attr-defined]
        if timestamp != self._stamp[0]:
            self._stamp = (timestamp, base64_encode(int_to_bytes(timestamp)))
        value += b"." + self._stamp[1]
        return (value + b"." + signer.get_signature(value)).decode("ascii")

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
