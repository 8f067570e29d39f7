"""Rate limits with the ``limits`` package (in memory: per process, reset on restart)."""

from __future__ import annotations

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from newsletter.web.errors import WebError


class RateLimits:
    """Named limits, each a list of windows that must all have room."""

    def __init__(self, rules: dict[str, str]) -> None:
        self._storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._rules: dict[str, list[RateLimitItem]] = {
            name: parse_many(spec) for name, spec in rules.items()
        }

    def allow(self, name: str, key: str) -> bool:
        """Count one hit of ``key`` against the limit ``name``; False once over it."""
        items = self._rules[name]
        if not all(self._limiter.test(item, name, key) for item in items):
            return False
        for item in items:
            self._limiter.hit(item, name, key)
        return True

    def require(self, name: str, key: str) -> None:
        """Like ``allow``, but a 429 page when over the limit."""
        if not self.allow(name, key):
            raise WebError(
                429,
                "Too many requests",
                "You have sent this form too often. Please wait a while and try again.",
            )
