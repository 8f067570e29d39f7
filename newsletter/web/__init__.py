"""The subscriber web app: sign-up with double opt-in, preferences, feedback,
one-click unsubscribe and issues online, served by FastAPI with Jinja pages.

``create_app(settings)`` builds the app; ``serve`` runs it under uvicorn.
"""

from __future__ import annotations

from newsletter.settings import Settings


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the web app with uvicorn until interrupted (``newsletter serve``)."""
    import uvicorn

    from newsletter.web.app import create_app

    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        # Behind a reverse proxy on the same machine, trust its X-Forwarded-For so the
        # rate limits see the real client address.
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        server_header=False,
        log_level="info",
    )
