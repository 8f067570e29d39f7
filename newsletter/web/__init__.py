"""The subscriber web app: sign-up with double opt-in, preferences, feedback,
one-click unsubscribe and issues online, served by FastAPI with Jinja pages.

``create_app(settings)`` builds the app; ``serve`` runs it under uvicorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from newsletter.settings import Settings

if TYPE_CHECKING:
    import uvicorn


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the web app with uvicorn until interrupted (``newsletter serve``)."""
    web_server(settings, host, port).run()


def web_server(settings: Settings, host: str, port: int) -> uvicorn.Server:
    """The uvicorn server ``newsletter serve`` runs, its logs free of link tokens."""
    import logging

    import uvicorn

    from newsletter.logs import configure_logging
    from newsletter.redact import install_redaction
    from newsletter.web.app import create_app

    # The app's own records go through the root logger's handler, redacted.
    configure_logging(json_lines=settings.log_json)
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        # The app resolves X-Forwarded-For itself, from ``trusted_proxies`` only
        # (newsletter.web.proxies), and keeps the peer address it needs for /metrics.
        proxy_headers=False,
        server_header=False,
        log_level="info",
    )
    # uvicorn has set up its loggers now: no signed link reaches its access log.
    # (uvicorn.error has no handler of its own: its records use the "uvicorn" logger's.)
    install_redaction(logging.getLogger("uvicorn.access"), logging.getLogger("uvicorn"))
    return uvicorn.Server(config)
