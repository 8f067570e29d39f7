"""What every request handler needs, built once by the app factory."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from newsletter.db import SessionFactory
from newsletter.mail.render import Renderer
from newsletter.papers.catalogue import CatalogueTopic
from newsletter.settings import Settings
from newsletter.tokens import Tokens
from newsletter.web.csrf import Csrf
from newsletter.web.links import Links
from newsletter.web.mailer import Mailer
from newsletter.web.options import WebOptions
from newsletter.web.pages import Pages
from newsletter.web.proxies import client_ip
from newsletter.web.ratelimit import RateLimits

__all__ = ["WebState", "client_ip", "web_state"]  # client_ip lives in web.proxies


@dataclass(frozen=True, kw_only=True)
class WebState:
    settings: Settings
    options: WebOptions
    sessions: SessionFactory
    catalogue: dict[str, CatalogueTopic]
    tokens: Tokens
    links: Links
    csrf: Csrf
    pages: Pages
    limits: RateLimits
    mailer: Mailer
    renderer: Renderer


def web_state(request: Request) -> WebState:
    """The app's state (a FastAPI dependency)."""
    state = request.app.state.web
    if not isinstance(state, WebState):
        raise RuntimeError("the app was not built by create_app")
    return state
