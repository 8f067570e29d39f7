"""The app factory: one ``Settings`` in, a FastAPI app out (``newsletter serve`` runs it)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from newsletter.mail.view import LIST_NAME
from newsletter.service import Service
from newsletter.settings import Settings, check_secret
from newsletter.subscribers.library_formats import MAX_BYTES as MAX_LIBRARY_BYTES
from newsletter.tokens import InvalidToken, Tokens
from newsletter.web import admin, api, observability
from newsletter.web.csrf import Csrf
from newsletter.web.errors import WebError
from newsletter.web.links import Links
from newsletter.web.mailer import Mailer
from newsletter.web.options import WebOptions
from newsletter.web.pages import Pages, web_templates_dir
from newsletter.web.proxies import ProxyAware
from newsletter.web.ratelimit import RateLimits
from newsletter.web.routes import feedback, library, manage, subscribe, unsubscribe
from newsletter.web.security import BodyLimit, SecurityHeaders
from newsletter.web.state import WebState

log = logging.getLogger(__name__)

_TITLES = {404: "Page not found", 405: "Not allowed", 413: "Too large"}


def create_app(settings: Settings, *, options: WebOptions | None = None) -> FastAPI:
    """Connect to the database (migrated to the newest schema) and build the app."""
    check_secret(settings)
    options = options or WebOptions()
    service = Service.open(settings)
    try:
        state = _build_state(settings, options, service)
    except BaseException:
        service.close()
        raise

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title=LIST_NAME,
        lifespan=lifespan,
        # The OpenAPI document describes the JSON API only; no HTML docs pages.
        docs_url=None,
        redoc_url=None,
        openapi_url=api.OPENAPI_URL,
    )
    app.state.web = state
    for module in (subscribe, unsubscribe, manage, feedback, library):
        app.include_router(module.router)
    admin.install(app)
    observability.install(app, state.sessions)
    app.mount("/static", StaticFiles(directory=web_templates_dir() / "static"), name="static")
    install_handlers(app, state)
    api.install(app)  # after install_handlers: JSON errors under /api/, pages elsewhere
    app.add_middleware(
        BodyLimit,
        max_bytes=options.max_body_bytes,
        paths={
            admin.IMPORT_PATH: options.max_import_bytes + admin.IMPORT_FORM_SLACK,
            library.UPLOAD_PATH: MAX_LIBRARY_BYTES + library.UPLOAD_FORM_SLACK,
            subscribe.SIGNUP_PATH: MAX_LIBRARY_BYTES + subscribe.SIGNUP_FORM_SLACK,
        },
    )
    app.add_middleware(SecurityHeaders, hsts=settings.public_url.startswith("https://"))
    # Outermost: every layer sees the client address the trusted proxies name.
    app.add_middleware(ProxyAware, trusted=settings.trusted_proxy_networks)
    return app


def _build_state(settings: Settings, options: WebOptions, service: Service) -> WebState:
    secret = settings.secret_key.get_secret_value()
    tokens = Tokens(secret)
    secure = (
        options.secure_cookies
        if options.secure_cookies is not None
        else settings.public_url.startswith("https://")
    )
    csrf = Csrf(secret, secure=secure)
    mailer = Mailer(settings, list_name=LIST_NAME, sessions=service.sessions)
    mailer.check()
    return WebState(
        settings=settings,
        options=options,
        sessions=service.sessions,
        catalogue=service.catalogue,
        tokens=tokens,
        links=Links(settings, tokens),
        csrf=csrf,
        pages=Pages(csrf, site_name=LIST_NAME, constants={"max_library_bytes": MAX_LIBRARY_BYTES}),
        limits=RateLimits(
            {
                "post": options.posts_per_ip,
                "subscribe": options.subscribe_per_ip,
                "mail": options.mails_per_address,
            },
            storage=settings.rate_limit_storage,
        ),
        mailer=mailer,
        renderer=service.renderer,
    )


def install_handlers(app: FastAPI, state: WebState) -> None:
    """Map every failure to a page: known ones to a 4xx with a reason, the rest to a 500."""

    def page(request: Request, status: int, title: str, message: str) -> Response:
        return state.pages.render(
            request, "error.html", {"title": title, "message": message}, status=status
        )

    @app.exception_handler(WebError)
    async def web_error(request: Request, exc: WebError) -> Response:
        return page(request, exc.status, exc.title, exc.message)

    @app.exception_handler(InvalidToken)
    async def invalid_token(request: Request, exc: InvalidToken) -> Response:
        reason = str(exc).capitalize() + "." if str(exc) else "This link is not valid."
        return page(
            request,
            400,
            "This link does not work",
            f"{reason} Links in our mails are signed; if you copied this one, check that "
            "all of it made it into the address bar, or use the link in a newer mail.",
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        title = _TITLES.get(exc.status_code, "Something is not right")
        message = (
            "There is nothing at this address."
            if exc.status_code == 404
            else "This page cannot do what was asked."
        )
        return page(request, exc.status_code, title, message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return page(
            request,
            400,
            "Something is missing",
            "The request was incomplete or malformed. Please go back and try again.",
        )

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return page(
            request,
            500,
            "Something went wrong on our side",
            "Nothing was changed. Please try again in a few minutes.",
        )
