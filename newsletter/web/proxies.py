"""Who the client is, behind a reverse proxy or not.

``trusted_proxies`` (a setting) lists the addresses whose ``X-Forwarded-For`` is
believed; uvicorn's ``ProxyHeadersMiddleware`` then puts the real client address in
``request.client``. The address the connection really came from (the *peer*) is kept
beside it, because two decisions need it:

* ``/metrics`` without a token answers a client on this machine only, and only when
  sure: a request whose peer is a trusted proxy may come from anywhere (a proxy that
  sends no ``X-Forwarded-For`` makes every visitor look like 127.0.0.1), so it is not
  "local";
* the rate limits count per client; a trusted proxy that sends no ``X-Forwarded-For``
  makes every visitor share one bucket, which is logged once as a misconfiguration.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any, cast

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from newsletter.settings import Network

log = logging.getLogger(__name__)

PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


def _address(host: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ProxyAware:
    """Believes ``X-Forwarded-For`` from ``trusted`` peers only, and keeps the peer."""

    def __init__(self, app: ASGIApp, *, trusted: tuple[Network, ...]) -> None:
        self.trusted = trusted
        hosts = [str(network) for network in trusted]
        # uvicorn types its middleware with its own ASGI types; the call is the same.
        self.app: ASGIApp = (
            cast(ASGIApp, ProxyHeadersMiddleware(cast(Any, app), trusted_hosts=hosts))
            if hosts
            else app
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            peer = client[0] if client else None
            state = scope.setdefault("state", {})
            state["peer"] = peer
            state["via_trusted_proxy"] = is_in(peer, self.trusted)
        await self.app(scope, receive, send)


def is_in(host: str | None, networks: tuple[Network, ...]) -> bool:
    address = _address(host)
    return address is not None and any(address in network for network in networks)


def peer(request: Request) -> str | None:
    """The address the connection came from (a proxy's, when there is one)."""
    value = getattr(request.state, "peer", None)
    if isinstance(value, str):
        return value
    return request.client.host if request.client else None


def is_local(request: Request) -> bool:
    """Surely a client on this machine: a loopback peer that is not a trusted proxy and
    sent no proxy headers (an unknown proxy in front would add them)."""
    if getattr(request.state, "via_trusted_proxy", False):
        return False
    if any(header in request.headers for header in PROXY_HEADERS):
        return False
    address = _address(peer(request))
    return address is not None and address.is_loopback


_warned: set[str] = set()


def client_ip(request: Request) -> str:
    """The client's address, as far as it can be known (the rate limits' key)."""
    host = request.client.host if request.client else "unknown"
    if (
        getattr(request.state, "via_trusted_proxy", False)
        and "x-forwarded-for" not in request.headers
        and host not in _warned
    ):
        _warned.add(host)
        log.warning(
            "a request came through the trusted proxy %s without X-Forwarded-For: every "
            "client behind it shares one rate limit; make the proxy send the header",
            host,
        )
    return host
