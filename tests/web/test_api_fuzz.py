"""Schemathesis fuzzes every operation of the JSON API, in-process: no input gets a 5xx.

The schema is the app's own OpenAPI document, loaded with schemathesis' ASGI loader
from an app on each test database; the cases are schemathesis' valid and invalid
requests for each operation. So that the fuzzing gets past the token check and the
validation into the database, half the requests carry a valid token of the right
purpose (and a rank that exists), and most JSON bodies of subscribe and of the
preferences are swapped for nearly valid ones with arbitrary text in them.
Reproducible: hypothesis is derandomized and keeps no example database.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from sqlalchemy import Engine

from newsletter.db import SessionFactory
from newsletter.models import SubscriberStatus, utcnow
from newsletter.settings import Settings
from newsletter.subscribers.accounts import signup_stamp
from newsletter.tokens import Purpose, TokenData, Tokens
from newsletter.web.api import OPENAPI_URL, router
from newsletter.web.app import create_app
from newsletter.web.options import WebOptions
from tests.conftest import TEST_SECRET
from tests.web.helpers import add_delivery, add_subscriber

pytestmark = pytest.mark.slow  # schemathesis fuzzes every operation

TOKENS = Tokens(TEST_SECRET)
EXAMPLES = 25


@dataclass(frozen=True)
class ValidTokens:
    confirm: str
    manage: str
    feedback: str
    unsubscribe: str

    def for_path(self, path: str) -> str:
        if path.startswith("/api/v1/confirm/"):
            return self.confirm
        if path.startswith("/api/v1/subscribers/"):
            return self.manage
        if path.startswith("/api/v1/feedback/"):
            return self.feedback
        assert path.startswith("/api/v1/unsubscribe/"), path
        return self.unsubscribe


@pytest.fixture
def valid_tokens(sessions: SessionFactory) -> ValidTokens:
    with sessions.begin() as session:
        reader = add_subscriber(session, "reader@example.org")
        delivery = add_delivery(session, reader)
        pending = add_subscriber(session, "pending@example.org", status=SubscriberStatus.PENDING)
        pending.signup_at = utcnow()
        return ValidTokens(
            confirm=TOKENS.make(
                Purpose.CONFIRM, TokenData(pending.id, 1, signup_stamp(pending.signup_at))
            ),
            manage=TOKENS.make(Purpose.MANAGE, TokenData(reader.id, 1)),
            feedback=TOKENS.make(Purpose.FEEDBACK, TokenData(reader.id, 1, delivery.id)),
            unsubscribe=TOKENS.make(Purpose.UNSUBSCRIBE, TokenData(reader.id, 1)),
        )


@pytest.fixture
def options() -> WebOptions:
    """Limits no fuzzing run reaches (the rate limits have tests of their own)."""
    return WebOptions(
        subscribe_per_ip="100000/minute",
        mails_per_address="100000/minute",
        posts_per_ip="100000/minute",
    )


@pytest.fixture
def api_app(engine: Engine, web_settings: Settings, options: WebOptions) -> Iterator[FastAPI]:
    app = create_app(web_settings, options=options)
    try:
        yield app
    finally:
        # Schemathesis keeps an app's lifespan running for the whole process; end it here,
        # so the app closes its database connections before the next test's.
        shutdown_lifespans()


@pytest.fixture
def api_schema(api_app: FastAPI) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi(OPENAPI_URL, api_app)


# Every operation of the API, from the router the document is made of.
OPERATIONS = sorted(
    (method, route.path)
    for route in router.routes
    if isinstance(route, APIRoute)
    for method in route.methods
)
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


# Text a person would not type, beside whatever hypothesis makes up.
ODD_TEXT = st.sampled_from(["", " ", "\x00", "a\ud800b", "<script>x</script>", "x" * 201])
WORDS = st.text(st.characters(categories=["L", "M", "N", "P", "S", "Zs"]), max_size=30)
TEXT = st.one_of(WORDS, st.text(max_size=30), ODD_TEXT)


def plausible_bodies(path: str, method: str, topics: list[str]) -> st.SearchStrategy[Any] | None:
    """Bodies close enough to valid to reach ``forms`` and the database (the generated ones
    rarely name a real topic or a well-formed address)."""
    # Mostly valid, so most of them get through; the free text is where the surprises are.
    common = {
        "topics": st.lists(st.sampled_from(topics), min_size=1, max_size=3),
        "frequency": st.sampled_from(["daily", "weekly"]),
        "timezone": st.sampled_from(["UTC", "Europe/Berlin", "America/Chicago", "Mars/Olympus"]),
        "send_hour": st.integers(0, 23),
    }
    if (method, path) == ("POST", "/api/v1/subscribe"):
        addresses = st.sampled_from(["reader@example.org", "pending@example.org", "n@example.org"])
        return st.fixed_dictionaries(
            {
                **common,
                "email": st.one_of(addresses, addresses, st.emails(), TEXT),
                "keywords": st.lists(st.one_of(WORDS, TEXT), max_size=3),
            }
        )
    if (method, path) == ("PUT", "/api/v1/subscribers/{token}/preferences"):
        keyword = st.fixed_dictionaries({"phrase": TEXT, "weight": st.sampled_from([0.5, 1, 2, 3])})
        return st.fixed_dictionaries(
            {
                **common,
                "keywords": st.lists(keyword, max_size=3),
                "max_papers": st.one_of(st.none(), st.integers(1, 50)),
                "always_send": st.booleans(),
                "language": st.sampled_from([None, None, "en", "de", "xx"]),
            }
        )
    return None


# Schemathesis' own pytest integration (``from_fixture(...).parametrize()``) does not run
# on pytest 9 yet, so each operation gets a plain hypothesis test over schemathesis'
# strategy for it: valid and invalid requests alike.
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_input_gets_a_server_error(
    api_app: FastAPI,
    api_schema: schemathesis.BaseSchema,
    valid_tokens: ValidTokens,
    method: str,
    path: str,
) -> None:
    operation = api_schema[path][method]
    plausible = plausible_bodies(path, method, topics=sorted(api_app.state.web.catalogue))
    cases = st.one_of(*(operation.as_strategy(generation_mode=mode) for mode in MODES))
    seen: set[int] = set()

    @given(case=cases, data=st.data())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def fuzz(case: schemathesis.Case, data: st.DataObject) -> None:
        params = case.path_parameters
        if params is not None and "token" in params and data.draw(st.booleans(), label="valid"):
            params["token"] = valid_tokens.for_path(path)
            if "rank" in params:
                params["rank"] = data.draw(st.integers(1, 3), label="rank")
        if (
            plausible is not None
            and case.media_type == "application/json"
            and data.draw(st.integers(0, 3), label="plausible") > 0
        ):
            case.body = data.draw(plausible, label="body")
        response = case.call()
        case.validate_response(response, checks=[not_a_server_error])
        assert response.status_code < 500
        assert response.headers["content-type"] == ["application/json"]
        seen.add(response.status_code)

    fuzz()
    # The fuzzing got somewhere: past the checks to an answer, or at least to several.
    assert len(seen) >= 2 or seen & {200, 202}, seen


def test_the_fuzzing_covers_every_operation(api_schema: schemathesis.BaseSchema) -> None:
    operations = {
        (result.ok().method.upper(), result.ok().path) for result in api_schema.get_all_operations()
    }
    assert sorted(operations) == OPERATIONS
    assert len(operations) == 9
    assert all(path.startswith("/api/v1/") for _, path in operations)
