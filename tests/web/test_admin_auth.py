"""Admin log in under attack, and admin sessions that really end (issue 12, items 3 and 8).

Failed log ins lock out the account and the client address with doubling lock-outs,
answered 429 with Retry-After, the right password included, and unknown usernames
alike; the password checks run in worker threads two at a time, so a flood of log ins
does not hold up the other pages; logging out and changing the password end every
earlier session cookie of the operator. Through the real app, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from starlette.types import ASGIApp, Receive, Scope, Send

from newsletter.db import SessionFactory
from newsletter.models import Operator
from newsletter.operators import create_operator, set_password
from newsletter.settings import Settings
from newsletter.web.admin import auth, logins
from newsletter.web.admin.logins import LoginRules, LoginThrottle
from newsletter.web.app import create_app
from newsletter.web.options import WebOptions
from tests.web import test_ratelimit_shared
from tests.web.helpers import csrf_from, local_listener, uvicorn_serving

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase"
LOCKED = "Too many failed log ins for this account or from this address"

redis_url = test_ratelimit_shared.redis_url  # the module's own redis-server


@pytest.fixture
def operator(sessions: SessionFactory) -> str:
    with sessions.begin() as session:
        create_operator(session, "grace", PASSWORD)
    return "grace"


@pytest.fixture
def app(engine: Engine, web_settings: Settings, options: WebOptions) -> Iterator[FastAPI]:
    app = create_app(web_settings, options=options)
    with TestClient(app):  # runs the lifespan, which closes the service at the end
        yield app


def browser(app: FastAPI, address: str = "192.0.2.1") -> TestClient:
    """A client of ``app`` from ``address`` (the lifespan is the ``app`` fixture's)."""
    return TestClient(app, client=(address, 50000))


def log_in(client: TestClient, username: str = "grace", password: str = PASSWORD) -> Any:
    token = csrf_from(client.get("/admin/login"))
    return client.post(
        "/admin/login",
        data={"username": username, "password": password, "csrf_token": token},
        follow_redirects=False,
    )


def log_out(client: TestClient) -> Any:
    token = csrf_from(client.get("/admin"))
    return client.post("/admin/logout", data={"csrf_token": token}, follow_redirects=False)


def assert_locked_out(response: Any) -> int:
    assert response.status_code == 429
    assert LOCKED in response.text
    assert auth.COOKIE not in response.cookies
    return int(response.headers["retry-after"])


# Throttling failed log ins.


@pytest.mark.parametrize("username", ["grace", "nobody"])
def test_failed_log_ins_lock_the_account_even_for_the_right_password(
    app: FastAPI, operator: str, sessions: SessionFactory, username: str
) -> None:
    rules = LoginRules()
    attacker = browser(app, "198.51.100.7")
    for _ in range(rules.account_failures):
        assert log_in(attacker, username, "wrong password!").status_code == 401
    # The right password, from the operator's own address: the account is locked.
    retry_after = assert_locked_out(log_in(browser(app), username, PASSWORD))
    assert 0 < retry_after <= rules.lockout_seconds
    assert_locked_out(log_in(attacker, username, PASSWORD))
    with sessions() as session:
        assert session.scalars(select(Operator.last_login_at)).one() is None
    # Other accounts are not locked (the address has failures to spare).
    assert log_in(browser(app), "someone", "wrong password!").status_code == 401


def test_an_unknown_username_is_locked_out_exactly_like_a_real_one(
    app: FastAPI, operator: str
) -> None:
    answers = {}
    for username in ("grace", "nobody"):
        client = browser(app)
        for _ in range(LoginRules().account_failures):
            log_in(client, username, "wrong password!")
        response = log_in(client, username, "wrong password!")
        answers[username] = (
            response.status_code,
            response.headers["retry-after"],
            response.text.replace(username, "NAME").replace(csrf_from(response), "TOKEN"),
        )
    assert answers["grace"] == answers["nobody"]
    assert answers["grace"][0] == 429


def test_the_address_is_locked_out_across_accounts(app: FastAPI, operator: str) -> None:
    logins.install(app, LoginThrottle(rules=LoginRules(address_failures=4)))
    attacker = browser(app, "198.51.100.7")
    for name in ("alan", "ada", "edsger", "barbara"):  # one failure each: no account locked
        assert log_in(attacker, name, "wrong password!").status_code == 401
    assert_locked_out(log_in(attacker, "grace", PASSWORD))
    assert_locked_out(log_in(attacker, "linus", "any password"))
    # From another address the same account gets in.
    assert log_in(browser(app, "192.0.2.1"), "grace", PASSWORD).status_code == 303


def test_a_lock_out_ends_after_its_window(app: FastAPI, operator: str) -> None:
    logins.install(app, LoginThrottle(rules=LoginRules(account_failures=2, lockout_seconds=1)))
    client = browser(app)
    for _ in range(2):
        assert log_in(client, "grace", "wrong password!").status_code == 401
    assert assert_locked_out(log_in(client)) == 1
    time.sleep(1.05)  # the storage's own expiry ends it
    response = log_in(client)
    assert response.status_code == 303
    assert client.get("/admin").status_code == 200


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_every_failure_after_a_lock_out_doubles_it(
    storage: str, request: pytest.FixtureRequest
) -> None:
    uri = request.getfixturevalue("redis_url") if storage == "redis" else "memory://"
    rules = LoginRules(account_failures=2, address_failures=100, lockout_seconds=1)
    first = LoginThrottle(uri, rules=rules)
    # With redis, a second throttle on the same storage (another web process) sees the
    # same failures and lock-outs; memory:// is one process's own.
    second = LoginThrottle(uri, rules=rules) if storage == "redis" else first
    who = {"account": f"grace-{uuid.uuid4().hex}", "address": "198.51.100.7"}
    first.failed(**who)
    assert second.locked_for(**who) == 0
    first.failed(**who)
    assert second.locked_for(**who) == 1
    time.sleep(1.05)
    assert first.locked_for(**who) == 0
    second.failed(**who)
    assert first.locked_for(**who) == 2


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(0, 0), (4, 0), (5, 60), (6, 120), (7, 240), (10, 1920), (11, 3600), (10**6, 3600)],
)
def test_lock_outs_double_up_to_a_maximum(failures: int, seconds: int) -> None:
    rules = LoginRules(lockout_seconds=60, max_lockout_seconds=3600)
    assert logins.lockout_seconds(rules, failures=failures, allowed=5) == seconds


def test_failures_during_a_lock_out_do_not_extend_it() -> None:
    # Attempts that were already waiting for a password check when the lock-out began.
    throttle = LoginThrottle(rules=LoginRules(account_failures=1, lockout_seconds=60))
    for _ in range(10):
        throttle.failed(account="linus", address="198.51.100.7")
    assert throttle.locked_for(account="linus", address="198.51.100.8") == 60


# The other pages while log ins flood in.


@dataclass
class Arrivals:
    logins: int = 0


class CountArrivals:
    """Counts the log-in requests that have reached the app (test instrumentation)."""

    def __init__(self, app: ASGIApp, *, arrivals: Arrivals) -> None:
        self.app = app
        self.arrivals = arrivals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/admin/login":
            self.arrivals.logins += scope["method"] == "POST"
        await self.app(scope, receive, send)


async def _flood(url: str, arrivals: Arrivals, attempts: int) -> dict[str, Any]:
    """``attempts`` concurrent wrong log ins (other names, other addresses: a spread-out
    attack no lock-out stops), and a normal page asked for once they have all reached
    the app and the first is answered; what was answered in which order."""
    answers: list[tuple[str, int]] = []
    limits = httpx.Limits(max_connections=attempts + 10)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as http:
        token = csrf_from(await http.get("/admin/login"))

        async def attempt(number: int) -> None:
            response = await http.post(
                "/admin/login",
                data={"username": f"mallory{number}", "password": "guess", "csrf_token": token},
                headers={"X-Forwarded-For": f"198.51.100.{number}"},
            )
            answers.append(("login", response.status_code))
            if response.status_code == 503:
                assert int(response.headers["retry-after"]) > 0

        flood = [asyncio.create_task(attempt(n)) for n in range(attempts)]
        while arrivals.logins < attempts or not answers:
            await asyncio.sleep(0.01)
        asked_after = len(answers)
        async with httpx.AsyncClient(base_url=url, timeout=300) as visitor:
            page = await visitor.get("/")
        answers.append(("page", page.status_code))
        await asyncio.gather(*flood)
    return {"answers": answers, "asked_after": asked_after}


def test_other_pages_are_served_while_log_ins_flood_in(
    engine: Engine, web_settings: Settings, options: WebOptions, operator: str
) -> None:
    app = create_app(web_settings, options=options)
    arrivals = Arrivals()
    app.add_middleware(CountArrivals, arrivals=arrivals)
    listener, url = local_listener()
    with uvicorn_serving(app, listener):
        result = asyncio.run(_flood(url, arrivals, attempts=120))
    answers: list[tuple[str, int]] = result["answers"]
    asked_after: int = result["asked_after"]
    assert ("page", 200) in answers
    assert {status for kind, status in answers if kind == "login"} <= {401, 503}
    # The checked log ins (401) still to come when the page was asked for, and how
    # many of them were answered before it: a page waiting behind the flood (the
    # thread pool full of password checks) sees most of them answered first.
    position = answers.index(("page", 200))
    checked_before = sum(1 for a in answers[asked_after:position] if a == ("login", 401))
    checked_after = sum(1 for a in answers[position:] if a == ("login", 401))
    assert checked_after > 0, answers
    assert checked_before < checked_after, answers


# Sessions end on the server.


def replay(app: FastAPI, cookie: str) -> Any:
    """Ask for the overview with a copy of a session cookie, from another machine."""
    attacker = browser(app, "198.51.100.7")
    attacker.cookies.set(auth.COOKIE, cookie, path="/admin")
    return attacker.get("/admin", follow_redirects=False)


def test_a_cookie_replayed_after_logout_is_refused(app: FastAPI, operator: str) -> None:
    client = browser(app)
    assert log_in(client).status_code == 303
    stolen = client.cookies[auth.COOKIE]
    assert replay(app, stolen).status_code == 200  # a copied cookie works while it lives
    assert log_out(client).status_code == 303
    response = replay(app, stolen)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/admin/login")
    # Logging in again works, with a new cookie.
    assert log_in(client).status_code == 303
    assert client.cookies[auth.COOKIE] != stolen
    assert client.get("/admin").status_code == 200


def test_logout_ends_the_operators_other_sessions_too(app: FastAPI, operator: str) -> None:
    laptop, phone = browser(app, "192.0.2.1"), browser(app, "192.0.2.2")
    for client in (laptop, phone):
        assert log_in(client).status_code == 303
    log_out(laptop)
    assert phone.get("/admin", follow_redirects=False).status_code == 303


def test_a_password_change_ends_every_earlier_session(
    app: FastAPI, operator: str, sessions: SessionFactory
) -> None:
    laptop, phone = browser(app, "192.0.2.1"), browser(app, "192.0.2.2")
    for client in (laptop, phone):
        assert log_in(client).status_code == 303
    stolen = laptop.cookies[auth.COOKIE]
    with sessions.begin() as session:
        grace = session.scalars(select(Operator)).one()
        set_password(session, grace, NEW_PASSWORD)
    for client in (laptop, phone):
        assert client.get("/admin", follow_redirects=False).status_code == 303
    assert log_in(laptop).status_code == 401
    assert log_in(laptop, password=NEW_PASSWORD).status_code == 303
    assert laptop.get("/admin").status_code == 200
    assert replay(app, stolen).status_code == 303
