"""Rendering an admin page: the template under ``admin/`` with the operator and the path."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from newsletter.web.admin.auth import SignedIn
from newsletter.web.state import WebState


def render(
    request: Request,
    state: WebState,
    name: str,
    operator: SignedIn | None,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> Response:
    """The page ``admin/<name>``; the nav marks the current section from ``path``."""
    values = {"operator": operator, "path": request.url.path, **context}
    return state.pages.render(request, f"admin/{name}", values, status=status)
