"""The signed links the web app mails out and reads back.

Confirm, manage, unsubscribe, feedback and view links use ``newsletter.tokens``.
A new address is confirmed with a token of its own (its own salt) that carries the
address, so a link for one address can never confirm another.
"""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from newsletter.models import Subscriber
from newsletter.settings import Settings
from newsletter.subscribers.accounts import SIGNUP_TTL, signup_stamp
from newsletter.tokens import InvalidToken, Purpose, TokenData, Tokens

MAX_TOKEN_LENGTH = 600  # far above any token we make; longer ones are refused unread


@dataclass(frozen=True)
class AddressChange:
    subscriber_id: int
    version: int
    email: str


class Links:
    def __init__(self, settings: Settings, tokens: Tokens) -> None:
        self._base = settings.public_url
        self._tokens = tokens
        self._address = URLSafeTimedSerializer(
            settings.secret_key.get_secret_value(), salt="newsletter.address-change"
        )

    def _data(self, subscriber: Subscriber, subject: int | None = None) -> TokenData:
        return TokenData(subscriber.id, subscriber.token_version, subject)

    def confirm_url(self, subscriber: Subscriber) -> str:
        if subscriber.signup_at is None:
            raise ValueError("no sign-up to confirm")
        data = self._data(subscriber, signup_stamp(subscriber.signup_at))
        return f"{self._base}/confirm/{self._tokens.make(Purpose.CONFIRM, data)}"

    def manage_token(self, subscriber: Subscriber) -> str:
        return self._tokens.make(Purpose.MANAGE, self._data(subscriber))

    def manage_url(self, subscriber: Subscriber) -> str:
        return f"{self._base}/manage/{self.manage_token(subscriber)}"

    def unsubscribe_url(self, subscriber: Subscriber) -> str:
        token = self._tokens.make(Purpose.UNSUBSCRIBE, self._data(subscriber))
        return f"{self._base}/unsubscribe/{token}"

    def feedback_url(self, subscriber: Subscriber, delivery_id: int, rank: int, choice: str) -> str:
        token = self._tokens.make(Purpose.FEEDBACK, self._data(subscriber, delivery_id))
        return f"{self._base}/feedback/{token}/{rank}/{choice}"

    def address_url(self, subscriber: Subscriber, email: str) -> str:
        token = self._address.dumps([subscriber.id, subscriber.token_version, email])
        return f"{self._base}/address/{token}"

    def read(self, purpose: Purpose, token: str) -> TokenData:
        """Verify a token of ``purpose`` (raises ``InvalidToken``)."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("this link is not valid")
        return self._tokens.read(purpose, token)

    def read_address(self, token: str) -> AddressChange:
        """Verify an address-change token (raises ``InvalidToken``)."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("this link is not valid")
        try:
            payload = self._address.loads(token, max_age=int(SIGNUP_TTL.total_seconds()))
        except SignatureExpired:
            raise InvalidToken("this link has expired") from None
        except BadSignature:
            raise InvalidToken("this link is not valid") from None
        if (
            not isinstance(payload, list)
            or len(payload) != 3
            or not isinstance(payload[0], int)
            or not isinstance(payload[1], int)
            or not isinstance(payload[2], str)
        ):
            raise InvalidToken("this link is not valid")
        return AddressChange(payload[0], payload[1], payload[2])
