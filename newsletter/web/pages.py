"""Server-rendered pages: Jinja templates from ``templates/web``, autoescaped."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from newsletter.resources import resource_path
from newsletter.web.csrf import FIELD, Csrf


def web_templates_dir() -> Path:
    return resource_path("templates") / "web"


class Pages:
    """Renders a page with the context every page needs (site name, CSRF field)."""

    def __init__(
        self,
        csrf: Csrf,
        *,
        site_name: str,
        directory: Path | None = None,
        constants: Mapping[str, Any] | None = None,
    ) -> None:
        self._csrf = csrf
        self._site_name = site_name
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory or web_templates_dir()),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        # Values every page may show (limits), fixed for the app's life.
        self._env.globals.update(constants or {})

    def render(
        self,
        request: Request,
        name: str,
        context: Mapping[str, Any] | None = None,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        def csrf_field() -> str:
            return self._csrf.token_for(request)

        values: dict[str, Any] = {
            "site_name": self._site_name,
            "csrf_field_name": FIELD,
            "csrf_token": csrf_field,
            "noindex": True,
        }
        values.update(context or {})
        html = self._env.get_template(name).render(values)
        response = HTMLResponse(html, status_code=status, headers=dict(headers or {}))
        self._csrf.set_cookie(request, response)
        return response
