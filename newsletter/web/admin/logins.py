"""Admin log-in attempts: failures throttled per account and per address, password checks
bounded.

Throttling. Every failed log in counts against the account (the normalised username,
whether or not such an operator exists, so a refusal tells nothing about who exists)
and against the client address. After ``account_failures`` failures of one account, or
``address_failures`` from one address, that account or address is locked out for
``lockout_seconds``; every further failure after a lock-out ends locks it again for
twice as long as the one before, up to ``max_lockout_seconds``. A locked-out attempt is
answered 429 with ``Retry-After`` before any password is checked, so the right password
does not get in during a lock-out either. Failures are forgotten ``memory_seconds``
after the first; a successful log in forgets its account's failures (not its
address's, or an attacker with one account of their own could reset the address count
between guesses). The cost: someone who knows an operator's name can keep that account
locked (at most ``max_lockout_seconds`` at a time).

The counters live in the ``limits`` storage the rate limits use (the setting
``rate_limit_storage``), so with ``redis://`` every web process sees the same failures
and lock-outs; each lock-out is a key that the storage expires. A storage that does not
answer lets attempts through (logged), as the rate limits do.

Concurrency. A password check (argon2, tens of milliseconds of CPU and 64 MiB) runs in
a worker thread of its own, at most ``concurrency`` at a time; up to ``queue`` further
attempts wait for a turn without holding a thread, and the rest are answered 503 at
once. So a flood of log ins neither blocks the event loop nor takes the thread pool
the other pages are served from.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import anyio
import anyio.to_thread
from fastapi import FastAPI
from starlette.requests import Request

from newsletter.web.ratelimit import open_storage

log = logging.getLogger(__name__)

T = TypeVar("T")

_PREFIX = "admin-login"
_MAX_DOUBLINGS = 30  # 2**30 times the first lock-out is past any sensible maximum


@dataclass(frozen=True, kw_only=True)
class LoginRules:
    """How many failures lock what out, for how long, and how many checks run at once."""

    account_failures: int = 5
    address_failures: int = 20
    lockout_seconds: int = 60
    max_lockout_seconds: int = 60 * 60
    memory_seconds: int = 24 * 60 * 60
    concurrency: int = 2
    queue: int = 30
    busy_retry_seconds: int = 5


class LoginRefused(Exception):
    """An attempt answered without checking its password: locked out (429) or busy (503)."""

    def __init__(self, status: int, retry_after: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.message = message


def lockout_seconds(rules: LoginRules, *, failures: int, allowed: int) -> int:
    """How long ``failures`` failures lock out what allows ``allowed``; 0 for not at all."""
    if failures < allowed:
        return 0
    doublings = min(failures - allowed, _MAX_DOUBLINGS)
    return min(rules.lockout_seconds << doublings, rules.max_lockout_seconds)


def _wait_text(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes"


class LoginThrottle:
    """The failure counts and lock-outs of one app, and its password-check slots."""

    def __init__(self, storage: str = "memory://", *, rules: LoginRules | None = None) -> None:
        self.rules = rules or LoginRules()
        self._storage = open_storage(storage)
        self._limiter = anyio.CapacityLimiter(self.rules.concurrency)
        self._in_flight = 0  # attempts running or waiting; only touched on the event loop

    def _scopes(self, account: str, address: str) -> list[tuple[str, int]]:
        return [
            (f"account/{account}", self.rules.account_failures),
            (f"address/{address}", self.rules.address_failures),
        ]

    def locked_for(self, *, account: str, address: str) -> int:
        """Seconds until this account and address may try again; 0 if they may now."""
        wait = 0.0
        try:
            for scope, _ in self._scopes(account, address):
                key = f"{_PREFIX}/lock/{scope}"
                if self._storage.get(key) > 0:
                    wait = max(wait, self._storage.get_expiry(key) - time.time(), 1.0)
        except Exception as exc:  # the storage's client errors (redis, ...) have no common base
            log.warning("admin log-in lock-outs not checked, the storage failed: %s", exc)
            return 0
        return math.ceil(wait)

    def refuse_if_locked(self, *, account: str, address: str) -> None:
        """Raise ``LoginRefused`` (429) while this account or address is locked out."""
        wait = self.locked_for(account=account, address=address)
        if wait:
            raise LoginRefused(
                429,
                wait,
                "Too many failed log ins for this account or from this address. "
                f"Please wait {_wait_text(wait)} and try again.",
            )

    def failed(self, *, account: str, address: str) -> None:
        """Count a failed attempt; lock out what has now failed too often."""
        rules = self.rules
        try:
            for scope, allowed in self._scopes(account, address):
                failures = self._storage.incr(f"{_PREFIX}/fail/{scope}", rules.memory_seconds)
                seconds = lockout_seconds(rules, failures=failures, allowed=allowed)
                if seconds:
                    # A new key expires after ``seconds``; should concurrent failures race
                    # here, the first one's lock-out stands.
                    self._storage.incr(f"{_PREFIX}/lock/{scope}", seconds)
        except Exception as exc:
            log.warning("admin log-in failure not counted, the storage failed: %s", exc)

    def succeeded(self, *, account: str) -> None:
        """Forget the account's failures (the address's stay counted)."""
        try:
            self._storage.clear(f"{_PREFIX}/fail/account/{account}")
        except Exception as exc:
            log.warning("admin log-in failures not reset, the storage failed: %s", exc)

    def _attempt_now(self, check: Callable[[], T | None], account: str, address: str) -> T | None:
        # Checked again: failures counted while this attempt waited may have locked it out.
        self.refuse_if_locked(account=account, address=address)
        result = check()
        if result is None:
            self.failed(account=account, address=address)
        else:
            self.succeeded(account=account)
        return result

    async def attempt(
        self, check: Callable[[], T | None], *, account: str, address: str
    ) -> T | None:
        """Run ``check`` (the password check: a result, or None for wrong credentials) in
        a worker thread when neither the account nor the address is locked out and a
        turn is free, and count its outcome; ``LoginRefused`` otherwise."""
        self.refuse_if_locked(account=account, address=address)
        if self._in_flight >= self.rules.concurrency + self.rules.queue:
            raise LoginRefused(
                503,
                self.rules.busy_retry_seconds,
                "Too many log ins are being checked right now. "
                f"Please wait {_wait_text(self.rules.busy_retry_seconds)} and try again.",
            )
        self._in_flight += 1
        try:
            return await anyio.to_thread.run_sync(
                partial(self._attempt_now, check, account, address), limiter=self._limiter
            )
        finally:
            self._in_flight -= 1


def install(app: FastAPI, throttle: LoginThrottle) -> None:
    """Make ``throttle`` the one the app's log-in form uses."""
    app.state.admin_logins = throttle


def throttle_of(request: Request) -> LoginThrottle:
    """The app's log-in throttle (set by ``install``)."""
    throttle = getattr(request.app.state, "admin_logins", None)
    if not isinstance(throttle, LoginThrottle):
        raise RuntimeError("the admin routes were not installed by admin.install")
    return throttle
