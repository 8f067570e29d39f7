"""Rate limits with the ``limits`` package.

The counts live where the setting ``rate_limit_storage`` says: ``memory://`` (the
default) keeps them in the process, which is right for one web process; with several
(``uvicorn --workers N``, or several machines) give every process the same shared
storage, e.g. ``redis://127.0.0.1:6379`` (needs the ``redis`` package), so a limit
holds however many processes answer.
"""

from __future__ import annotations

import logging

from limits import RateLimitItem, parse_many
from limits.errors import ConfigurationError
from limits.storage import MovingWindowSupport, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from newsletter.errors import ConfigError
from newsletter.web.errors import WebError

log = logging.getLogger(__name__)


def open_storage(uri: str) -> Storage:
    """The ``limits`` storage at ``uri``; a ``ConfigError`` naming the setting if it
    cannot be used."""
    try:
        storage = storage_from_string(uri)
    except (ConfigurationError, ValueError) as exc:
        raise ConfigError(
            f"invalid setting rate_limit_storage (NEWSLETTER_RATE_LIMIT_STORAGE): {exc}"
        ) from None
    if not (isinstance(storage, Storage) and isinstance(storage, MovingWindowSupport)):
        raise ConfigError(
            f"invalid setting rate_limit_storage (NEWSLETTER_RATE_LIMIT_STORAGE): {uri!r} "
            "has no moving windows; use memory:// or redis://"
        )
    return storage


class RateLimits:
    """Named limits, each a list of windows that must all have room."""

    def __init__(self, rules: dict[str, str], *, storage: str = "memory://") -> None:
        self._storage = open_storage(storage)
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._rules: dict[str, list[RateLimitItem]] = {
            name: parse_many(spec) for name, spec in rules.items()
        }

    def allow(self, name: str, key: str) -> bool:
        """Count one hit of ``key`` against the limit ``name``; False once over it.

        A shared storage that does not answer lets the request through (logged): the
        pages stay up while the store is down, unlimited until it is back.
        """
        items = self._rules[name]
        try:
            if not all(self._limiter.test(item, name, key) for item in items):
                return False
            for item in items:
                self._limiter.hit(item, name, key)
        except Exception as exc:  # the storage's client errors (redis, ...) have no common base
            log.warning("rate limit %s not counted, the storage failed: %s", name, exc)
        return True

    def require(self, name: str, key: str) -> None:
        """Like ``allow``, but a 429 page when over the limit."""
        if not self.allow(name, key):
            raise WebError(
                429,
                "Too many requests",
                "You have sent this form too often. Please wait a while and try again.",
            )
