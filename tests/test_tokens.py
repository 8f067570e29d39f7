"""Signed, scoped link tokens: round trips, scoping, tampering, expiry."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta
from types import SimpleNamespace

import itsdangerous.timed
import pytest

from newsletter.errors import NewsletterError
from newsletter.tokens import MAX_AGE, InvalidToken, Purpose, TokenData, Tokens

SECRET = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
SUBSCRIBER_ID = 987_654_321
DATA = TokenData(SUBSCRIBER_ID, 3)
VIEW_DATA = TokenData(SUBSCRIBER_ID, 3, 4_242)
DAY = 24 * 60 * 60
NEVER_EXPIRE = [Purpose.MANAGE, Purpose.UNSUBSCRIBE, Purpose.VIEW]


@pytest.fixture
def tokens() -> Tokens:
    return Tokens(SECRET)


class Clock:
    """Moves the time itsdangerous signs and checks timestamps with."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = time.time()
        monkeypatch.setattr(itsdangerous.timed, "time", SimpleNamespace(time=lambda: self.now))

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def data_for(purpose: Purpose) -> TokenData:
    return VIEW_DATA if purpose in (Purpose.VIEW, Purpose.FEEDBACK) else DATA


def mutate(char: str) -> str:
    return "B" if char == "A" else "A"


def tampered(token: str, segment: int, position: int) -> str:
    """The token with one character of one dot-separated segment changed."""
    parts = token.split(".")
    part = parts[segment]
    parts[segment] = part[:position] + mutate(part[position]) + part[position + 1 :]
    return ".".join(parts)


# --- round trips and scoping ---------------------------------------------------------


@pytest.mark.parametrize("purpose", list(Purpose))
def test_round_trip(tokens: Tokens, purpose: Purpose) -> None:
    for data in (DATA, VIEW_DATA, TokenData(1, 1), TokenData(0, 0, 0)):
        token = tokens.make(purpose, data)
        assert isinstance(token, str)
        assert tokens.read(purpose, token) == data


@pytest.mark.parametrize("purpose", list(Purpose))
def test_token_is_url_safe(tokens: Tokens, purpose: Purpose) -> None:
    token = tokens.make(purpose, VIEW_DATA)
    assert token.isascii()
    assert all(c.isalnum() or c in "-_." for c in token)


def test_view_token_carries_the_delivery_id(tokens: Tokens) -> None:
    token = tokens.make(Purpose.VIEW, TokenData(5, 2, 123_456))
    data = tokens.read(Purpose.VIEW, token)
    assert data.subject == 123_456
    assert (data.subscriber_id, data.version) == (5, 2)


def test_subject_is_none_when_not_given(tokens: Tokens) -> None:
    assert tokens.read(Purpose.MANAGE, tokens.make(Purpose.MANAGE, DATA)).subject is None


def test_tokens_differ_by_subscriber_and_version(tokens: Tokens) -> None:
    made = {
        tokens.make(Purpose.MANAGE, TokenData(subscriber, version))
        for subscriber in (1, 2)
        for version in (1, 2)
    }
    assert len(made) == 4


@pytest.mark.parametrize(
    ("made_for", "read_as"),
    [pair for pair in itertools.permutations(Purpose, 2)],
    ids=lambda p: p.value,
)
def test_token_for_one_purpose_is_rejected_for_another(
    tokens: Tokens, made_for: Purpose, read_as: Purpose
) -> None:
    token = tokens.make(made_for, data_for(made_for))
    with pytest.raises(InvalidToken) as info:
        tokens.read(read_as, token)
    assert str(SUBSCRIBER_ID) not in str(info.value)


@pytest.mark.parametrize("purpose", list(Purpose))
def test_token_made_with_another_secret_is_rejected(tokens: Tokens, purpose: Purpose) -> None:
    token = Tokens("another-secret-key-0123456789-abcdefghijklmnop").make(
        purpose, data_for(purpose)
    )
    with pytest.raises(InvalidToken, match="not valid"):
        tokens.read(purpose, token)


# --- tampering ---------------------------------------------------------------------------


@pytest.mark.parametrize("purpose", [Purpose.CONFIRM, Purpose.UNSUBSCRIBE, Purpose.VIEW])
@pytest.mark.parametrize(("segment", "name"), [(0, "payload"), (1, "timestamp"), (2, "signature")])
def test_tampered_token_is_rejected(
    tokens: Tokens, purpose: Purpose, segment: int, name: str
) -> None:
    token = tokens.make(purpose, data_for(purpose))
    assert token.count(".") == 2  # payload.timestamp.signature
    part = token.split(".")[segment]
    # Every position but the last: its low bits may be base64 padding only.
    for position in range(len(part) - 1):
        forged = tampered(token, segment, position)
        assert forged != token
        with pytest.raises(InvalidToken) as info:
            tokens.read(purpose, forged)
        assert str(SUBSCRIBER_ID) not in str(info.value), (name, position)


def test_forged_payload_for_another_subscriber_is_rejected(tokens: Tokens) -> None:
    mine = tokens.make(Purpose.MANAGE, TokenData(1, 1))
    theirs = tokens.make(Purpose.MANAGE, TokenData(2, 1))
    forged = theirs.split(".")[0] + "." + ".".join(mine.split(".")[1:])
    with pytest.raises(InvalidToken):
        tokens.read(Purpose.MANAGE, forged)


@pytest.mark.parametrize("purpose", list(Purpose))
@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "abc",
        "a.b.c",
        "a.b",
        "...",
        ".",
        "x" * 10_240,
        "x." * 5_000,
        ".eJzLSM3JyVcozy_KSQEAGgQEXQ.aww-yg.6VWQjqhvtW3s92WkgnJsGvMat4s",
        "WzQyLDNd.aww-yg.",
        "WzQyLDNd..6VWQjqhvtW3s92WkgnJsGvMat4s",
        "ä.ö.ü",
        "\x00\r\n",
        "%2E%2E",
        "WzQyLDNd.!!!!.6VWQjqhvtW3s92WkgnJsGvMat4s",
    ],
    ids=lambda g: repr(g[:12]),
)
def test_garbage_raises_invalid_token(tokens: Tokens, purpose: Purpose, garbage: str) -> None:
    with pytest.raises(InvalidToken, match="not valid") as info:
        tokens.read(purpose, garbage)
    assert isinstance(info.value, NewsletterError)


# --- expiry -----------------------------------------------------------------------------


def test_max_ages() -> None:
    assert MAX_AGE[Purpose.CONFIRM] == timedelta(days=7)
    for purpose in NEVER_EXPIRE:
        assert MAX_AGE[purpose] is None
    assert set(MAX_AGE) == set(Purpose)


def test_confirm_token_is_valid_for_seven_days(tokens: Tokens, clock: Clock) -> None:
    token = tokens.make(Purpose.CONFIRM, DATA)
    clock.advance(7 * DAY - 60)
    assert tokens.read(Purpose.CONFIRM, token) == DATA


def test_confirm_token_older_than_seven_days_is_expired(tokens: Tokens, clock: Clock) -> None:
    token = tokens.make(Purpose.CONFIRM, DATA)
    clock.advance(7 * DAY + 60)
    with pytest.raises(InvalidToken, match="expired") as info:
        tokens.read(Purpose.CONFIRM, token)
    assert str(SUBSCRIBER_ID) not in str(info.value)


def test_feedback_token_expires_after_180_days(tokens: Tokens, clock: Clock) -> None:
    token = tokens.make(Purpose.FEEDBACK, VIEW_DATA)
    clock.advance(179 * DAY)
    assert tokens.read(Purpose.FEEDBACK, token) == VIEW_DATA
    clock.advance(2 * DAY)
    with pytest.raises(InvalidToken, match="expired"):
        tokens.read(Purpose.FEEDBACK, token)


@pytest.mark.parametrize("purpose", NEVER_EXPIRE)
@pytest.mark.parametrize("age", [8 * DAY, 400 * DAY, 5 * 366 * DAY])
def test_manage_unsubscribe_and_view_tokens_never_expire(
    tokens: Tokens, clock: Clock, purpose: Purpose, age: int
) -> None:
    token = tokens.make(purpose, data_for(purpose))
    clock.advance(age)
    assert tokens.read(purpose, token) == data_for(purpose)


def test_expired_confirm_token_is_still_tamper_checked(tokens: Tokens, clock: Clock) -> None:
    token = tokens.make(Purpose.CONFIRM, DATA)
    clock.advance(30 * DAY)
    with pytest.raises(InvalidToken, match="not valid"):
        tokens.read(Purpose.CONFIRM, tampered(token, 2, 0))


def test_clock_patch_reaches_itsdangerous(tokens: Tokens, clock: Clock) -> None:
    """Guards the expiry tests: the patched clock must be the one tokens are stamped with."""
    clock.now = 1_000_000_000.0
    old = tokens.make(Purpose.MANAGE, DATA)
    clock.now = 2_000_000_000.0
    new = tokens.make(Purpose.MANAGE, DATA)
    assert old.split(".")[1] != new.split(".")[1]


def test_tokens_are_not_compressed_and_read_back() -> None:
    tokens = Tokens("k" * 40)
    token = tokens.make(Purpose.FEEDBACK, TokenData(123456, 7, 987654))
    assert not token.startswith(".")  # itsdangerous marks compressed payloads with a dot
    assert tokens.read(Purpose.FEEDBACK, token) == TokenData(123456, 7, 987654)


@pytest.mark.parametrize("purpose", list(Purpose))
def test_tokens_are_plain_itsdangerous_tokens_byte_for_byte(purpose: Purpose, clock: Clock) -> None:
    """The signer that derives its key once signs exactly as itsdangerous does, so links
    made before the change still verify and a stock reader verifies ours."""
    secret = "s" * 40
    stock = itsdangerous.URLSafeTimedSerializer(secret, salt=f"newsletter.{purpose.value}")
    tokens = Tokens(secret)
    clock.now = 1_700_000_000.0
    for data in (TokenData(1, 1), TokenData(123456, 7, 987654)):
        token = tokens.make(purpose, data)
        payload, _, _ = token.rpartition(".")  # payload.timestamp | signature
        value = payload.encode()
        signer = stock.make_signer(stock.salt)
        assert token == signer.sign(value.rsplit(b".", 1)[0]).decode()
        assert stock.loads(token) == [v for v in data.__dict__.values() if v is not None]
        # and many tokens in a row (the cached HMAC is copied, never reused dirty)
        assert tokens.make(purpose, data) == token


def test_fast_tokens_are_stock_itsdangerous_dumps_also_when_the_second_changes(
    clock: Clock,
) -> None:
    """Tokens of plain ints are written without itsdangerous' plumbing and the
    timestamp's encoding is kept per second: still exactly stock ``dumps``."""
    secret = "k" * 40
    tokens = Tokens(secret)
    for purpose in Purpose:
        stock = itsdangerous.URLSafeTimedSerializer(secret, salt=f"newsletter.{purpose.value}")
        for now in (1_700_000_000.0, 1_700_000_000.5, 1_700_000_001.0, 1_800_000_000.0):
            clock.now = now
            for data in (TokenData(1, 1), TokenData(2**40, -3, 0), TokenData(99, 0, 2**62)):
                assert tokens.make(purpose, data) == stock.dumps(
                    [v for v in (data.subscriber_id, data.version, data.subject) if v is not None]
                )
